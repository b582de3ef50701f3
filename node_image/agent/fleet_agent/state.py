"""The node's state, derived from the latest check results.

    starting -> warming -> ready <-> degraded -> draining -> stopped

Readiness is true only in `ready`. Until the node has been ready once it is `starting` (engine not
up) or `warming` (engine up, model/canary/GPU not yet passing); after that any failing check makes it
`degraded`. Draining and stopped are one-way: only a drain leads there.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("fleet_agent.state")


class State(enum.StrEnum):
    STARTING = "starting"
    WARMING = "warming"
    READY = "ready"
    DEGRADED = "degraded"
    DRAINING = "draining"
    STOPPED = "stopped"


class Check(enum.StrEnum):
    ENGINE = "engine"  # the engine answers its health endpoint
    MODEL = "model"  # the model is loaded (in GPU memory, on a GPU node)
    CANARY = "canary"  # a one-token request succeeds
    GPU = "gpu"  # NVML says the GPU is fit
    PROGRESS = "progress"  # waiting requests are getting tokens
    STORE = "store"  # the model store is mounted and the model warm in the local cache


@dataclass
class CheckResult:
    ok: bool | None  # None: not known yet
    detail: str
    changed_at: float  # monotonic, when `ok` last changed

    def as_dict(self, now: float) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail, "for_s": round(now - self.changed_at, 3)}


class CheckBoard:
    """The latest result of every check, and when each last changed."""

    def __init__(self, checks: Iterable[Check]) -> None:
        now = time.monotonic()
        self.results = {check: CheckResult(None, "not checked yet", now) for check in checks}

    def set(self, check: Check, ok: bool | None, detail: str) -> bool:
        """Record a result; True when `ok` changed."""
        result = self.results[check]
        changed = result.ok is not ok
        if changed:
            result.changed_at = time.monotonic()
        result.ok = ok
        result.detail = detail
        return changed

    def ok(self, check: Check) -> bool:
        return self.results[check].ok is True

    def problems(self) -> list[str]:
        return [
            f"{check}: {result.detail}" for check, result in self.results.items() if result.ok is not True
        ]


@dataclass(frozen=True)
class Transition:
    at: float  # wall clock
    old: State
    new: State
    reasons: tuple[str, ...]


class StateMachine:
    def __init__(self, board: CheckBoard, on_change: Callable[[Transition], None] | None = None) -> None:
        self.board = board
        self.state = State.STARTING
        self.reasons: list[str] = ["engine: not checked yet"]
        self.since = time.time()
        self.started = False  # has been ready once; /startupz
        self.history: list[Transition] = []
        self._on_change = on_change

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    def evaluate(self) -> State:
        if self.state in (State.DRAINING, State.STOPPED):
            return self.state
        problems = self.board.problems()
        if self.started:
            new = State.DEGRADED if problems else State.READY
        elif not self.board.ok(Check.ENGINE):
            new = State.STARTING
        else:
            new = State.WARMING if problems else State.READY
        if new is State.READY:
            self.started = True
        self._move(new, problems)
        return self.state

    def drain(self, reason: str) -> None:
        if self.state not in (State.DRAINING, State.STOPPED):
            self._move(State.DRAINING, [reason])

    def stop(self, reason: str) -> None:
        self._move(State.STOPPED, [reason])

    def _move(self, new: State, reasons: list[str]) -> None:
        old = self.state
        self.reasons = reasons
        if new is old:
            return
        self.state = new
        self.since = time.time()
        transition = Transition(self.since, old, new, tuple(reasons))
        self.history = [*self.history[-49:], transition]
        log.log(
            logging.WARNING if new in (State.DEGRADED, State.DRAINING) else logging.INFO,
            "state %s -> %s%s",
            old,
            new,
            f": {'; '.join(reasons)}" if reasons else "",
        )
        if self._on_change is not None:
            self._on_change(transition)
