"""Requests in flight through the proxy, and the bytes the engine has produced for them."""

from __future__ import annotations

import asyncio


class Traffic:
    def __init__(self) -> None:
        self.inflight = 0
        self.upstream_bytes = 0  # only grows; the progress check compares samples
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def end(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True when no request is in flight before `timeout` seconds pass."""
        try:
            await asyncio.wait_for(self._idle.wait(), max(timeout, 0.0))
        except TimeoutError:
            return self.inflight == 0
        return True
