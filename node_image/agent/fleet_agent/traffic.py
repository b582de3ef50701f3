"""Requests in flight through the proxy, and the bytes the engine has produced for them."""

from __future__ import annotations

import asyncio


class Traffic:
    def __init__(self) -> None:
        self.inflight = 0
        self.upstream_bytes = 0  # only grows; the progress check compares samples
        # The most in flight since the load sampler last took it: a request shorter than the sampling
        # period is still counted.
        self.peak = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.busy = asyncio.Event()  # set while a request is in flight (scale-in protection waits on it)

    def begin(self) -> None:
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        self._idle.clear()
        self.busy.set()

    def end(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()
            self.busy.clear()

    def take_peak(self) -> int:
        """The most in flight since the last call; the count starts again from what is in flight now."""
        peak, self.peak = self.peak, self.inflight
        return peak

    async def wait_busy(self) -> None:
        await self.busy.wait()

    async def wait_idle(self, timeout: float) -> bool:
        """True when no request is in flight before `timeout` seconds pass."""
        try:
            await asyncio.wait_for(self._idle.wait(), max(timeout, 0.0))
        except TimeoutError:
            return self.inflight == 0
        return True
