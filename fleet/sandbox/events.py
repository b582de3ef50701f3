"""The sandbox's event log: what happened to the fleet and when (nodes launched, ready, in service,
marked unhealthy, terminated; the controller's decisions; load balancer and DNS changes; faults a drill
injected). Drills measure detection and recovery from it; `fleet sandbox logs` shows it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class Events:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []

    def add(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"at": round(time.time(), 3), "kind": kind, **fields}
        line = json.dumps(event, default=str, separators=(",", ":"))
        with self._lock:
            self._events.append(event)
            with self.path.open("a") as handle:
                handle.write(line + "\n")
        return event

    def since(self, at: float) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._events if e["at"] >= at]

    def last(self, count: int) -> list[dict[str, Any]]:
        with self._lock:
            return self._events[-count:]
