"""Stand-in for the generated Prisma client (the gateway image ships it; PyPI's LiteLLM does not, and
generating it downloads engines), over a real PostgreSQL connection.

Like Prisma: the writer's client reads DATABASE_URL when it connects, a reader's comes as
`Prisma(datasource={"url": ...})`; `connect()` starts the client (the connection is made by the first
query, and made again after one failed); raw queries (`query_raw`, `query_first`, `execute_raw`) take
`$1`-style parameters and return rows as JSON-shaped dicts. Model actions (`db.<table>.find_first(...)`)
handle the simple `where` LiteLLM's reads use (equality, gt/gte/lt/lte, in) and nothing else; anything
more raises. A database that cannot be reached fails every query with the transport error the real query
engine surfaces, which LiteLLM classes as "database unreachable" (httpx.ConnectError, one of
litellm/proxy/_types.py DB_CONNECTION_ERROR_TYPES).

Its queries run through functions/db_bootstrap/pgwire.py (TLS, SCRAM, the simple query protocol): the
parameters are written into the statement as literals, which is safe for the test data it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import re
import threading
import urllib.parse
from typing import Any

import httpx

from functions.db_bootstrap.pgwire import Connection, Endpoint, PostgresError, quote_ident, quote_literal

from . import errors

_PARAMETER = re.compile(r"\$(\d+)")
_OPERATORS = {"equals": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "not": "<>"}


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime.datetime):
        return quote_literal(value.isoformat())
    if isinstance(value, (list, tuple)):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]" if value else "'{}'"
    if isinstance(value, dict):
        return quote_literal(json.dumps(value))
    return quote_literal(str(value))


def _bind(query: str, args: tuple[Any, ...]) -> str:
    return _PARAMETER.sub(lambda m: _literal(args[int(m.group(1)) - 1]), query)


class _Database:
    """One connection to the URL, made on first use and again after a failure; one statement at a time."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        self._endpoint = Endpoint(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            database=parts.path.lstrip("/"),
            user=urllib.parse.unquote(parts.username or ""),
            password=urllib.parse.unquote(parts.password or ""),
        )
        self._timeout = float(query.get("connect_timeout", 5))
        self._connection: Connection | None = None
        self._lock = threading.Lock()
        self.statements = 0

    def execute(self, sql: str) -> list[tuple[str | None, ...]]:
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = Connection(self._endpoint, timeout=self._timeout)
                self.statements += 1
                return self._connection.execute(sql)
            except PostgresError as failed:
                raise errors.RawQueryError(str(failed)) from None
            except OSError as failed:
                self.close()
                raise httpx.ConnectError(f"All connection attempts failed: {failed}") from None

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.close()


class _Table:
    """`db.<model>`: the few reads LiteLLM makes through model actions."""

    def __init__(self, client: Prisma, model: str) -> None:
        self._client, self._model = client, model

    async def find_first(self, where: dict[str, Any] | None = None, **_: Any) -> Any:
        rows = await self._select(where, limit=1)
        return rows[0] if rows else None

    async def find_unique(self, where: dict[str, Any] | None = None, **_: Any) -> Any:
        return await self.find_first(where)

    async def find_many(self, where: dict[str, Any] | None = None, take: int | None = None, **_: Any) -> Any:
        return await self._select(where, limit=take)

    async def count(self, where: dict[str, Any] | None = None, **_: Any) -> int:
        table = await self._client._table(self._model)
        (row,) = await self._client._rows(f"SELECT count(*) AS n FROM {table}{_where(where)}")
        return int(row["n"])

    async def _select(self, where: dict[str, Any] | None, limit: int | None) -> list[Any]:
        table = await self._client._table(self._model)
        limit_clause = f" LIMIT {int(limit)}" if limit else ""
        rows = await self._client._rows(f"SELECT * FROM {table}{_where(where)}{limit_clause}")
        return [_Row(row) for row in rows]

    def __getattr__(self, name: str) -> Any:
        async def unsupported(*args: Any, **kwargs: Any) -> Any:
            await self._client._rows("SELECT 1")  # an unreachable database fails as such first
            raise errors.RawQueryError(f"stand-in: {self._model}.{name} is not supported")

        return unsupported


class _Row(dict[str, Any]):
    """A model instance: its columns as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _where(where: dict[str, Any] | None) -> str:
    terms: list[str] = []
    for column, condition in (where or {}).items():
        if not isinstance(condition, dict):
            condition = {"equals": condition}
        for operator, value in condition.items():
            if operator == "in":
                terms.append(f"{quote_ident(column)} = ANY({_literal(list(value))})")
            elif operator in _OPERATORS:
                terms.append(f"{quote_ident(column)} {_OPERATORS[operator]} {_literal(value)}")
            else:
                raise errors.RawQueryError(f"stand-in: where operator {operator!r} is not supported")
    return " WHERE " + " AND ".join(terms) if terms else ""


class Prisma:
    def __init__(self, *args: Any, datasource: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._url: str | None = (datasource or {}).get("url")
        self._database: _Database | None = None
        self._tables: dict[str, str] = {}

    async def connect(self, *args: Any, **kwargs: Any) -> None:
        # The engine starts; the database is reached by the first query.
        self._database = _Database(self._url or os.environ["DATABASE_URL"])

    async def disconnect(self, *args: Any, **kwargs: Any) -> None:
        if self._database is not None:
            self._database.close()
        self._database = None

    def is_connected(self) -> bool:
        return self._database is not None

    async def query_raw(self, query: str, *args: Any) -> list[dict[str, Any]]:
        return await self._rows(_bind(query, args))

    async def query_first(self, query: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.query_raw(query, *args)
        return rows[0] if rows else None

    async def execute_raw(self, query: str, *args: Any) -> int:
        return len(await self._run(_bind(query, args)))

    def tx(self, *args: Any, **kwargs: Any) -> Any:
        raise errors.RawQueryError("stand-in: transactions are not supported")

    def batch_(self, *args: Any, **kwargs: Any) -> Any:
        raise errors.RawQueryError("stand-in: batches are not supported")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)  # no query engine process to watch
        return _Table(self, name)

    async def _rows(self, sql: str) -> list[dict[str, Any]]:
        """A query's rows as JSON-shaped dicts (as Prisma's raw queries return them)."""
        statement = sql.strip().rstrip(";")
        if not re.match(r"(?is)^\s*(select|with)\b", statement):
            await self._run(statement)
            return []
        rows = await self._run(f"SELECT row_to_json(q)::text FROM ({statement}) AS q")
        return [json.loads(text) for (text,) in rows if text is not None]

    async def _run(self, sql: str) -> list[tuple[str | None, ...]]:
        database = self._database
        if database is None:
            raise errors.ClientNotConnectedError("not connected")
        return await asyncio.to_thread(database.execute, sql)

    async def _table(self, model: str) -> str:
        """LiteLLM names a model in lower case (`litellm_verificationtoken`); the table keeps its case."""
        if model not in self._tables:
            rows = await self._rows(
                "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' "
                f"AND lower(table_name) = {quote_literal(model)}"
            )
            if not rows:
                raise errors.RawQueryError(f'relation "{model}" does not exist')
            self._tables[model] = quote_ident(rows[0]["name"])
        return self._tables[model]


class Json(dict[str, Any]):
    def __init__(self, value: Any = None) -> None:
        super().__init__()
