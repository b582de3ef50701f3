"""The fleet controller's own code (functions/fleet_controller) run as the program deploys it: the
function's rendered environment, one run a minute as its EventBridge schedule starts it (each run ticking
for its `run_seconds` within the function's rendered timeout, so runs overlap and claim tick slots in
Redis), against moto for Auto Scaling (through the sandbox's front), EC2, SSM and SNS, and the emulated
load balancers for target health.

What the sandbox changes in CONTROLLER_CONFIG: the Redis address (the region's sandbox Redis, without
TLS). The agents' addresses are the nodes' loopback ports (the controller's `address_for`), where the cloud
would give it the instance's private IP and the rendered agent port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fleet.sandbox.events import Events

SCHEDULE_PERIOD_S = 60.0  # the rendered rule's rate(1 minute)
# Decisions worth an event (the rest stays in the controller's log, one JSON line each).
EVENT_KINDS = frozenset({"action", "orphan", "capacity", "ghosts", "node"})


class _Stopped(Exception):
    pass


class ControllerSchedule:
    def __init__(
        self,
        region: str,
        function_env: Mapping[str, str],
        timeout_s: float,
        redis_port: int,
        redis_password: str,
        clients: Any,  # fleet_controller.handler.Clients
        address_for: Callable[[Any], tuple[str, int] | None],
        events: Events,
        log: Path,
    ) -> None:
        from functions.fleet_controller.settings import CONFIG_VARIABLE, ControllerSettings

        raw = json.loads(function_env[CONFIG_VARIABLE])
        raw.update(redis_host="127.0.0.1", redis_port=redis_port, redis_tls=False)
        # The password is handed over as the function reads it from its secret: not through the settings.
        self.settings = ControllerSettings.from_env({CONFIG_VARIABLE: json.dumps(raw)})
        self.region = region
        self.timeout_s = timeout_s
        self.password = redis_password
        self.clients = clients
        self.address_for = address_for
        self.events = events
        self.log = log
        self.last_tick: dict[str, Any] = {}
        self.decisions: list[dict[str, Any]] = []  # the latest, for status
        self._stop = threading.Event()
        self._runs: list[threading.Thread] = []
        self._scheduler = threading.Thread(target=self._schedule, name=f"controller-{region}", daemon=True)
        self._log_lock = threading.Lock()

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        self._stop.set()
        self._scheduler.join(5)
        for run in self._runs:
            run.join(5)

    def _schedule(self) -> None:
        while not self._stop.is_set():
            run = threading.Thread(target=self._invoke, name=f"controller-run-{self.region}", daemon=True)
            run.start()
            self._runs = [r for r in self._runs if r.is_alive()] + [run]
            if self._stop.wait(SCHEDULE_PERIOD_S):
                return

    def _invoke(self) -> None:
        """One Lambda invocation: a Controller of its own, ticking until its run is over."""
        from functions.fleet_controller.handler import Controller

        started = time.monotonic()

        def sleep(seconds: float) -> None:
            if self._stop.wait(seconds):
                raise _Stopped

        controller = Controller(
            self.settings, self.clients, self.password, address_for=self.address_for, emit=self._emit
        )
        try:
            controller.run(time_left=lambda: self.timeout_s - (time.monotonic() - started), sleep=sleep)
        except _Stopped:
            pass
        except Exception as exc:  # a failed run: the next one starts on schedule, as Lambda's would
            self._emit({"kind": "run-failed", "error": f"{type(exc).__name__}: {exc}"})

    def _emit(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, default=str, separators=(",", ":"))
        with self._log_lock, self.log.open("a") as handle:
            handle.write(line + "\n")
        kind = record.get("kind")
        if kind == "tick":
            self.last_tick = dict(record)
            if record.get("noQuorum"):
                self.events.add(
                    "controller-no-quorum",
                    region=self.region,
                    why=record.get("why") or record.get("redisError"),
                )
        elif kind in EVENT_KINDS or kind == "run-failed":
            self.decisions = [*self.decisions[-19:], dict(record)]
            self.events.add(
                "controller",
                region=self.region,
                **{k: v for k, v in record.items() if k != "kind"},
                decision=kind,
            )
