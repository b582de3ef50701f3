"""Region health: can this region serve inference? Answers Route53's health checks.

Runs as a sidecar in every gateway task, from the gateway's own image (its Python, standard library
only). "Can serve" is measured by serving: every `refresh_seconds` it asks the region's own gateway (on
127.0.0.1) for a real completion of one token through each of the region's own backends (GPU pools,
Kubernetes-served models), each request naming one deployment so that it reaches exactly that one, with
a gateway key of its own. Only when none of them serves does it try the serverless endpoints, one at a
time until one serves (they bill per call). A request travels as a client's does: the key is checked
against the region's own database reader, the gateway routes, the backend generates. A pool whose nodes
are all unready (its load balancer answers 503, or the agents 404), a revoked provider key (401), a
gateway that cannot reach its reader: each fails as it fails for clients. Which base URL a deployment
was called at is LiteLLM's own answer (its `x-litellm-model-api-base` header), never a table of ours.

GET /fleet/region-health: the last verdict, cached between rounds:
- "pools": an own backend served: 200;
- "serverless": only a serverless endpoint served: 200 where the config says so
  (`failover.serverlessOnly: healthy`) or where the region has no own backends, else 503;
- "none": nothing served, or the last round is stale: 503.
The body names each deployment's outcome. GET /fleet/live: 200 once a first round has ended (the ALB sends
Route53's probes only to a sidecar that has a verdict).

Its settings come from the environment, through RegionHealthSettings (settings.py), which the gateway
service renders them with; the key from the task's secrets. It ships as this package's modules (see
components/control_plane/region_health.py).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .settings import (
    REGION_HEALTH_KEY_ENV,
    REGION_HEALTH_LIVE_PATH,
    REGION_HEALTH_PATH,
    Probe,
    RegionHealthSettings,
)

PROMPT = "Reply with one word."
POOLS, SERVERLESS, NONE = "pools", "serverless", "none"


@dataclass(frozen=True)
class Outcome:
    """One completion through the gateway: whether it served, and what the gateway said."""

    served: bool
    status: int | None
    api_base: str | None
    detail: str
    seconds: float


def complete(gateway_url: str, key: str, deployment: str, timeout: float) -> Outcome:
    """A one-token chat completion through the gateway, pinned to `deployment` (no retries: the verdict is
    about this deployment now)."""
    started = time.monotonic()
    outcome = _complete(gateway_url, key, deployment, timeout)
    return Outcome(*outcome, seconds=round(time.monotonic() - started, 3))


def _complete(
    gateway_url: str, key: str, deployment: str, timeout: float
) -> tuple[bool, int | None, str | None, str]:
    parts = urllib.parse.urlsplit(gateway_url)
    body = json.dumps(
        {
            "model": deployment,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 1,
            "num_retries": 0,
            "timeout": timeout,
        }
    )
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout + 2)
    try:
        conn.request(
            "POST",
            f"{parts.path.rstrip('/')}/v1/chat/completions",
            body=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        answer = conn.getresponse()
        text = answer.read().decode(errors="replace")
        api_base = answer.getheader("x-litellm-model-api-base")
        served_by = answer.getheader("x-litellm-model-id")
        if answer.status != 200:
            return False, answer.status, api_base, _error(text)
        choices = json.loads(text).get("choices") or []
        if not choices:
            return False, answer.status, api_base, "an answer without choices"
        if served_by not in (None, deployment):
            return False, answer.status, api_base, f"served by {served_by}, not {deployment}"
        return True, answer.status, api_base, "served"
    except (OSError, http.client.HTTPException, ValueError) as failed:
        return False, None, None, f"{type(failed).__name__}: {failed}"
    finally:
        conn.close()


def _error(text: str) -> str:
    try:
        error = json.loads(text).get("error") or {}
        return str(error.get("message") or error)[:300]
    except (ValueError, AttributeError):
        return text[:300]


class Checker:
    """Keeps the latest verdict, refreshed in the background."""

    def __init__(self, settings: RegionHealthSettings, key: str) -> None:
        self._settings = settings
        self._key = key
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {"verdict": NONE, "deployments": {}, "checkedAt": None}
        self._rounds = 0
        self._pool = ThreadPoolExecutor(max_workers=min(16, 1 + len(settings.own)))
        # A round may take each serverless attempt's timeout in turn, after the own backends'.
        self._round_limit = settings.check_timeout_seconds * (2 + len(settings.serverless))

    def _complete(self, probe: Probe) -> Outcome:
        s = self._settings
        return complete(s.gateway_url, self._key, probe.deployment, s.check_timeout_seconds)

    def check_once(self) -> dict[str, Any]:
        s = self._settings
        outcomes = dict(zip(s.own, self._pool.map(self._complete, s.own), strict=True))
        if not any(o.served for o in outcomes.values()):
            for probe in s.serverless:  # one at a time: each call is billed
                outcomes[probe] = self._complete(probe)
                if outcomes[probe].served:
                    break
        served = {p for p, o in outcomes.items() if o.served}
        verdict = POOLS if any(p.own for p in served) else SERVERLESS if served else NONE
        snapshot = {
            "verdict": verdict,
            "deployments": {p.deployment: {"own": p.own, **asdict(o)} for p, o in outcomes.items()},
            "checkedAt": time.time(),
        }
        with self._lock:
            self._snapshot = snapshot
            self._rounds += 1
        return snapshot

    def run_forever(self) -> None:
        while True:
            started = time.monotonic()
            self.check_once()
            time.sleep(max(0.0, self._settings.refresh_seconds - (time.monotonic() - started)))

    @property
    def has_verdict(self) -> bool:
        with self._lock:
            return self._rounds > 0

    def verdict(self) -> tuple[bool, dict[str, Any]]:
        s = self._settings
        with self._lock:
            snapshot = dict(self._snapshot)
        checked = snapshot["checkedAt"]
        fresh = checked is not None and time.time() - checked <= 3 * s.refresh_seconds + self._round_limit
        verdict = snapshot["verdict"] if fresh else NONE
        serverless_counts = s.serverless_only_healthy or not s.own
        serving = verdict == POOLS or (verdict == SERVERLESS and serverless_counts)
        return serving, {**snapshot, "verdict": verdict, "fresh": fresh, "serving": serving}


def make_handler(checker: Checker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if path == REGION_HEALTH_LIVE_PATH:
                alive = checker.has_verdict
                self._send(200 if alive else 503, {"status": "alive" if alive else "first round running"})
            elif path == REGION_HEALTH_PATH:
                serving, body = checker.verdict()
                self._send(200 if serving else 503, body)
            else:
                self._send(404, {"error": "not found"})

        def _send(self, status: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # Route53 probes many times a minute: no access log

    return Handler


def main(env: Mapping[str, str] = os.environ) -> None:
    settings = RegionHealthSettings.from_env(env)
    checker = Checker(settings, env[REGION_HEALTH_KEY_ENV])
    threading.Thread(target=checker.run_forever, name="checks", daemon=True).start()
    server = ThreadingHTTPServer(("0.0.0.0", settings.port), make_handler(checker))
    print(
        json.dumps(
            {
                "regionHealth": "listening",
                "port": server.server_port,
                "probes": [asdict(p) for p in settings.probes],
            }
        ),
        flush=True,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
