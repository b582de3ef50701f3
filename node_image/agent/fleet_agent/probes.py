"""The periodic checks behind the node's state. Each probe is a small class with a period and a
`run` that records one result on the check board; `ProbeRunner` runs them, one task each so a slow
probe never delays another, and can `kick` one to run at once (a new engine, a passed check)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import httpx

from fleet_agent.aio import cancel_and_wait
from fleet_agent.engines.base import EngineError, EngineHealth
from fleet_agent.state import Check

if TYPE_CHECKING:
    from fleet_agent.agent import Agent

log = logging.getLogger("fleet_agent.probes")


class Probe(ABC):
    check: Check

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.board = agent.board
        self.config = agent.config.probes

    @property
    @abstractmethod
    def period(self) -> float: ...

    @abstractmethod
    async def run(self) -> None: ...

    def record(self, ok: bool | None, detail: str) -> None:
        if self.board.set(self.check, ok, detail):
            level = logging.INFO if ok else logging.WARNING
            verdict = "unknown" if ok is None else ("passes" if ok else "fails")
            log.log(level, "check %s %s: %s", self.check, verdict, detail)
        self.agent.metrics.probe_ok.set(1.0 if ok else 0.0, (self.check.value,))
        self.agent.refresh()


class EngineHealthProbe(Probe):
    """Connection refused while starting is expected; after the engine has been up, failures count
    toward the threshold. An engine that says it is dead, or stays unresponsive, is restarted."""

    check = Check.ENGINE

    def __init__(self, agent: Agent) -> None:
        super().__init__(agent)
        self._failures = 0

    @property
    def period(self) -> float:
        return self.config.health_period_s

    async def run(self) -> None:
        agent = self.agent
        if not agent.runner.alive:
            return  # the supervisor has recorded the exit and owns the restart
        generation = agent.engine_generation
        reading = await agent.adapter.health(agent.probe_client, self.config.health_timeout_s)
        if generation != agent.engine_generation:
            return  # the engine changed under this probe; its reading is stale
        now = time.monotonic()
        if reading.status is EngineHealth.UP:
            self._failures = 0
            if not self.board.ok(Check.ENGINE):
                agent.engine_up_at = now
                agent.probes.kick(Check.MODEL, Check.CANARY)
            agent.runner.note_healthy()
            self.record(True, reading.detail)
            return
        if reading.status is EngineHealth.DEAD:
            self.record(False, f"engine dead: {reading.detail}")
            await agent.restart_engine("dead", f"engine reports itself dead ({reading.detail})")
            return
        if agent.engine_up_at is None:  # still starting up
            waited = now - agent.engine_started_at
            self.record(False, f"starting for {waited:.0f} s: {reading.detail}")
            if waited > self.config.startup_timeout_s:
                await agent.restart_engine(
                    "startup_timeout", f"not healthy {self.config.startup_timeout_s:g} s after start"
                )
            return
        self._failures += 1
        if self._failures < self.config.health_failure_threshold:
            return
        self.record(False, f"not responding ({self._failures} probes): {reading.detail}")
        failing_for = now - self.board.results[Check.ENGINE].changed_at
        if failing_for >= self.config.wedge_restart_after_s:
            await agent.restart_engine("unresponsive", f"unresponsive for {failing_for:.0f} s")


class ModelProbe(Probe):
    """The model must be loaded (Ollama: in /api/ps after a preload) and, on a GPU node, wholly in
    GPU memory."""

    check = Check.MODEL

    @property
    def period(self) -> float:
        return self.config.model_period_s

    async def run(self) -> None:
        agent = self.agent
        if not self.board.ok(Check.ENGINE):
            return
        if agent.store is not None and not agent.store.warmed.is_set():
            return  # an attached engine would load from the object store: wait for the warm cache
        generation = agent.engine_generation
        try:
            reading = await agent.adapter.model_status(agent.probe_client, self.config.model_timeout_s)
            if not reading.loaded:
                self.record(False, f"preloading: {reading.detail}")
                await agent.adapter.preload(agent.probe_client, self.config.preload_timeout_s)
                reading = await agent.adapter.model_status(agent.probe_client, self.config.model_timeout_s)
        except (httpx.HTTPError, EngineError, ValueError) as exc:
            if generation == agent.engine_generation:
                self.record(False, f"model check failed: {exc!r}"[:300])
            return
        if reading.loaded and agent.gpu is not None and agent.adapter.gpu_residency_from_nvml:
            reading = await agent.check_gpu_residency(reading)
        if generation != agent.engine_generation:
            return
        agent.model_reading = reading
        if not reading.loaded:
            self.record(False, reading.detail)
        elif agent.config.gpu_required and reading.on_gpu is False:
            self.record(False, f"not in GPU memory: {reading.detail}")
        else:
            if not self.board.ok(Check.MODEL):
                agent.probes.kick(Check.CANARY)
                agent.note_model_loaded()
            self.record(True, reading.detail)


class CanaryProbe(Probe):
    """A one-token request straight to the engine. The first pass after an engine start is needed
    for ready; after that, `canary_failure_threshold` failures in a row mark the node degraded."""

    check = Check.CANARY

    def __init__(self, agent: Agent) -> None:
        super().__init__(agent)
        self._failures = 0

    @property
    def period(self) -> float:
        return self.config.canary_period_s

    async def run(self) -> None:
        agent = self.agent
        if not (self.board.ok(Check.ENGINE) and self.board.ok(Check.MODEL)):
            return
        generation = agent.engine_generation
        started = time.monotonic()
        try:
            response = await agent.probe_client.post(
                agent.adapter.base_url + agent.adapter.canary_path,
                json=agent.adapter.canary_request(),
                timeout=self.config.canary_timeout_s,
            )
            problem = agent.adapter.canary_problem(response)
        except httpx.TimeoutException:
            problem = f"no answer within {self.config.canary_timeout_s:g} s"
        except httpx.HTTPError as exc:
            problem = f"request failed: {exc!r}"
        if generation != agent.engine_generation:
            return
        elapsed = time.monotonic() - started
        agent.metrics.canary_seconds.observe(elapsed)
        if problem is None:
            self._failures = 0
            self.record(True, f"one token in {elapsed * 1000:.0f} ms")
            return
        self._failures += 1
        if (
            self.board.results[Check.CANARY].ok is not True
            or self._failures >= self.config.canary_failure_threshold
        ):
            self.record(False, f"{problem} ({self._failures} in a row)")


class GpuProbe(Probe):
    check = Check.GPU

    @property
    def period(self) -> float:
        return self.config.gpu_period_s

    async def run(self) -> None:
        monitor = self.agent.gpu
        if monitor is None:
            return
        problems = await monitor.check()
        count = len(monitor.readings)
        self.record(not problems, "; ".join(problems) if problems else f"{count} GPU(s) healthy")


class ProgressProbe(Probe):
    """Requests waiting while no token comes for a window means wedged: degrade, then restart.

    Waiting and produced come from the engine's metrics (requests running or waiting; generated
    tokens) when it has them and answers, else from the proxy (requests in flight; bytes the engine
    sent back). Without engine metrics (Ollama) a non-streaming generation longer than the window
    looks wedged, so set progress_window_s above the longest one there."""

    check = Check.PROGRESS

    def __init__(self, agent: Agent) -> None:
        super().__init__(agent)
        self._last_tokens: float | None = None
        self._last_bytes = 0
        self._stalled_since: float | None = None

    @property
    def period(self) -> float:
        return self.config.progress_period_s

    def reset(self) -> None:
        self._last_tokens = None
        self._stalled_since = None

    async def run(self) -> None:
        agent = self.agent
        load = await agent.read_engine_load() if self.board.ok(Check.ENGINE) else None
        tokens = load.generated_tokens if load is not None else None
        pending = load.pending if load is not None else None
        upstream_bytes = agent.traffic.upstream_bytes
        if tokens is not None and pending is not None:
            waiting = pending
            produced = self._last_tokens is not None and tokens > self._last_tokens
        else:
            waiting = float(agent.traffic.inflight)
            produced = upstream_bytes > self._last_bytes
        if tokens is not None:
            self._last_tokens = tokens
        self._last_bytes = upstream_bytes
        now = time.monotonic()
        if waiting <= 0 or produced:
            self._stalled_since = None
            self.record(True, "tokens flowing" if produced else "idle")
            return
        if self._stalled_since is None:
            self._stalled_since = now
        stalled = now - self._stalled_since
        if stalled < self.config.progress_window_s:
            return
        self.record(False, f"wedged: {waiting:g} request(s) waiting, no token for {stalled:.0f} s")
        if stalled - self.config.progress_window_s >= self.config.wedge_restart_after_s:
            await agent.restart_engine("wedged", f"no token for {stalled:.0f} s with requests waiting")


class ProbeRunner:
    def __init__(self, probes: list[Probe]) -> None:
        self.probes = {probe.check: probe for probe in probes}
        self._kicks = {probe.check: asyncio.Event() for probe in probes}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for probe in self.probes.values():
            self._tasks.append(asyncio.create_task(self._loop(probe), name=f"probe-{probe.check}"))

    def kick(self, *checks: Check) -> None:
        for check in checks:
            if check in self._kicks:
                self._kicks[check].set()

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []

    async def _loop(self, probe: Probe) -> None:
        kick = self._kicks[probe.check]
        while True:
            kick.clear()
            started = time.monotonic()
            try:
                await probe.run()
            except Exception as exc:  # a probe bug must not end the probing
                log.exception("probe %s crashed", probe.check)
                probe.record(False, f"probe error: {exc!r}"[:300])
            # The period runs from start to start, as Kubernetes' periodSeconds does: a probe that
            # times out does not stretch the interval by its timeout.
            idle = max(probe.period - (time.monotonic() - started), 0.0)
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns a wait that ends in the same turn
            # as a cancellation and drops the cancellation, and this loop would then outlive stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle):
                    await kick.wait()
