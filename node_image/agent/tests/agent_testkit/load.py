"""Steady streaming load from client threads, each answer judged as a client would: whole (a finish_reason,
then `[DONE]`), an error the client sees (a status other than 200, an error event, a broken connection),
or a silent truncation (200, no error, ended early: the worst there is)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Tally:
    whole: int = 0
    errors: list[str] = field(default_factory=list)
    truncated: int = 0
    by_node: Counter[str] = field(default_factory=Counter)  # X-Fleet-Node of whole answers
    statuses: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.whole + len(self.errors) + self.truncated,
            "whole": self.whole,
            "client_errors": len(self.errors),
            "silent_truncations": self.truncated,
            "error_samples": self.errors[:5],
            "by_node": dict(self.by_node),
            "statuses": {str(k): v for k, v in self.statuses.items()},
        }


def judge_stream(text: str) -> str:
    """'whole', 'error' (an error event) or 'truncated'."""
    events = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    finished = False
    for event in events:
        if event == "[DONE]":
            return "whole" if finished else "truncated"
        document = json.loads(event)
        if document.get("error"):
            return "error"
        finished = finished or any(c.get("finish_reason") for c in document.get("choices", []))
    return "truncated"


class StreamingLoad:
    def __init__(
        self, url: str, body: dict[str, Any], headers: dict[str, str], clients: int = 2, pause_s: float = 0.0
    ) -> None:
        self.url = url
        self.body = {**body, "stream": True}
        self.headers = headers
        self.tally = Tally()
        self.pause_s = pause_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> StreamingLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Tally:
        """Let the requests in flight end, then no more; the tally."""
        self._stop.set()
        for thread in self._threads:
            thread.join(120)
        return self.tally

    def _run(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(120, connect=5)) as client:
            while not self._stop.is_set():
                self._one(client)
                if self.pause_s:
                    time.sleep(self.pause_s)

    def _one(self, client: httpx.Client) -> None:
        status, node, verdict, detail = 0, "", "error", ""
        try:
            with client.stream("POST", self.url, json=self.body, headers=self.headers) as response:
                status, node = response.status_code, response.headers.get("x-fleet-node", "")
                text = response.read().decode("utf-8", "replace")
            if status != 200:
                detail = f"HTTP {status}: {text[:160]}"
            else:
                verdict = judge_stream(text)
                detail = "error event" if verdict == "error" else ""
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.tally.statuses[status] += 1
            if verdict == "whole":
                self.tally.whole += 1
                self.tally.by_node[node] += 1
            elif verdict == "truncated":
                self.tally.truncated += 1
            else:
                self.tally.errors.append(detail)
