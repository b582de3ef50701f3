"""Running the engine: spawned and supervised by the agent, or attached to a host-managed one."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet_agent.config import EngineConfig, SupervisorConfig
from fleet_agent.engines.base import EngineAdapter

log = logging.getLogger("fleet_agent.engine")


@dataclass(frozen=True)
class EngineExit:
    code: int | None
    detail: str
    restart_in_s: float | None  # None when no restart will follow (stopping)


class EngineRunner:
    """The common face of spawned and attached engines, for the agent and for job mode."""

    mode: str = ""
    pid: int | None = None
    restarts: int = 0

    @property
    def crash_loop(self) -> bool:
        return False

    @property
    def alive(self) -> bool:
        """False only when the agent knows the engine process is gone."""
        return True

    async def start(self) -> None:
        raise NotImplementedError

    async def restart(self, reason: str) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def note_healthy(self) -> None:
        """The engine answered its health check; a long healthy run clears the backoff."""


class SpawnedEngine(EngineRunner):
    """Starts the engine as a child process in its own process group and restarts it when it
    exits, with exponential backoff (reset once it has run healthy for a while). Several exits
    inside a window is a crash loop: reported in the engine check and /status."""

    mode = "spawn"

    def __init__(
        self,
        adapter: EngineAdapter,
        config: SupervisorConfig,
        *,
        on_spawn: Callable[[int], None],
        on_exit: Callable[[EngineExit], None],
    ) -> None:
        self._adapter = adapter
        self._config = config
        self._on_spawn = on_spawn
        self._on_exit = on_exit
        self._process: asyncio.subprocess.Process | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._spawned_at = 0.0
        self._failures = 0  # consecutive exits, for the backoff
        self._exits: collections.deque[float] = collections.deque()
        self._exited = asyncio.Event()

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def crash_loop(self) -> bool:
        self._forget_old_exits()
        return len(self._exits) >= self._config.crash_loop_restarts

    async def start(self) -> None:
        if self._watch_task is None:
            self._watch_task = asyncio.create_task(self._supervise(), name="engine-supervisor")

    async def restart(self, reason: str) -> None:
        """Stop the running engine; the supervise loop starts a new one after the backoff."""
        if not self.alive or self._stopping:
            return
        log.warning("restarting engine pid %s: %s", self.pid, reason)
        await self._terminate(self._config.restart_grace_s)

    async def stop(self) -> None:
        self._stopping = True
        if self.alive:
            log.info("stopping engine pid %s", self.pid)
            await self._terminate(self._config.stop_grace_s)
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None

    def note_healthy(self) -> None:
        if self._failures and time.monotonic() - self._spawned_at >= self._config.backoff_reset_after_s:
            log.info("engine healthy for %.0f s: restart backoff reset", self._config.backoff_reset_after_s)
            self._failures = 0

    def backoff_s(self) -> float:
        if self._failures == 0:
            return 0.0
        delay = self._config.backoff_initial_s * 2 ** (self._failures - 1)
        return min(delay, self._config.backoff_max_s)

    async def _supervise(self) -> None:
        first = True
        while not self._stopping:
            if not first:
                self.restarts += 1
            first = False
            code, detail = await self._run_once()
            if self._stopping:
                return
            self._failures += 1
            self._exits.append(time.monotonic())
            delay = self.backoff_s()
            if self.crash_loop:
                detail += f"; crash loop: {len(self._exits)} exits in {self._config.crash_loop_window_s:g} s"
            log.error("engine %s; restart in %.1f s", detail, delay)
            self._on_exit(EngineExit(code, detail, delay))
            await asyncio.sleep(delay)

    async def _run_once(self) -> tuple[int | None, str]:
        command = self._adapter.command()
        environment = {**os.environ, **self._adapter.environment()}
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                env=environment,
                stdin=asyncio.subprocess.DEVNULL,
                # Its own process group, so a stop reaches the engine's workers too.
                start_new_session=True,
            )
        except OSError as exc:
            self.pid = None
            return None, f"could not start {command[0]!r}: {exc.strerror or exc}"
        self.pid = self._process.pid
        self._spawned_at = time.monotonic()
        self._exited.clear()
        log.info("engine started: pid %s, %s", self.pid, " ".join(command))
        self._on_spawn(self.pid)
        code = await self._process.wait()
        self._exited.set()
        return code, _describe_exit(code)

    async def _terminate(self, grace_s: float) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        # SIGCONT too: a stopped (wedged) process only acts on SIGTERM once it runs again.
        self._signal_group(process.pid, signal.SIGTERM)
        self._signal_group(process.pid, signal.SIGCONT)
        try:
            await asyncio.wait_for(self._exited.wait(), grace_s)
        except TimeoutError:
            log.warning("engine pid %s ignored SIGTERM for %g s: SIGKILL", process.pid, grace_s)
            self._signal_group(process.pid, signal.SIGKILL)
            await self._exited.wait()

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    def _forget_old_exits(self) -> None:
        horizon = time.monotonic() - self._config.crash_loop_window_s
        while self._exits and self._exits[0] < horizon:
            self._exits.popleft()


class AttachedEngine(EngineRunner):
    """A host-managed engine (an Ollama systemd unit). The agent only watches it; a restart runs
    engine.restart_command when one is configured."""

    mode = "attach"

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._restarting = False

    async def start(self) -> None:
        log.info("attached to the host engine at %s", self._config.base_url)

    async def restart(self, reason: str) -> None:
        command = self._config.restart_command
        if not command:
            log.error("engine needs a restart (%s) but engine.restart_command is not set", reason)
            return
        if self._restarting:
            return
        self._restarting = True
        log.warning("restarting host engine: %s: %s", reason, " ".join(command))
        try:
            process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL)
            code = await asyncio.wait_for(process.wait(), 60)
            self.restarts += 1
            if code != 0:
                log.error("engine restart command exited %s", code)
        except (OSError, TimeoutError) as exc:
            log.error("engine restart command failed: %r", exc)
        finally:
            self._restarting = False

    async def stop(self) -> None:
        log.info("engine is host-managed: left running")


def make_runner(
    adapter: EngineAdapter,
    engine: EngineConfig,
    supervisor: SupervisorConfig,
    *,
    on_spawn: Callable[[int], None],
    on_exit: Callable[[EngineExit], None],
) -> EngineRunner:
    if engine.mode == "attach":
        return AttachedEngine(engine)
    return SpawnedEngine(adapter, supervisor, on_spawn=on_spawn, on_exit=on_exit)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
