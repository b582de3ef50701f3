"""Stand-in for the generated Prisma client (the gateway image ships it; PyPI's LiteLLM does not, and
generating it downloads engines), as it behaves when its database cannot be reached: the client starts,
and every query fails with the transport error the real query engine surfaces (LiteLLM classes exactly
these, httpx.ConnectError among them, as "database unreachable": litellm/proxy/_types.py
DB_CONNECTION_ERROR_TYPES)."""

from typing import Any

import httpx


def _unreachable(*_: Any, **__: Any) -> Any:
    raise httpx.ConnectError("All connection attempts failed")


class _Table:
    def __getattr__(self, name: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            _unreachable()

        return call


class Prisma:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connected = False

    async def connect(self, *args: Any, **kwargs: Any) -> None:
        self._connected = True  # the engine starts; the database behind it does not answer

    async def disconnect(self, *args: Any, **kwargs: Any) -> None:
        self._connected = False

    def is_connected(self) -> bool:
        return self._connected

    async def query_raw(self, *args: Any, **kwargs: Any) -> Any:
        _unreachable()

    async def query_first(self, *args: Any, **kwargs: Any) -> Any:
        _unreachable()

    async def execute_raw(self, *args: Any, **kwargs: Any) -> Any:
        _unreachable()

    def tx(self, *args: Any, **kwargs: Any) -> Any:
        _unreachable()

    def batch_(self, *args: Any, **kwargs: Any) -> Any:
        _unreachable()

    def __getattr__(self, name: str) -> Any:
        return _Table()


class Json(dict):
    def __init__(self, value: Any = None) -> None:
        super().__init__()
