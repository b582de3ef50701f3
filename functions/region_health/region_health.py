"""Region health: does this region's gateway serve inference? Answers Route53's health checks.

Runs as a sidecar in every gateway task, from the gateway's own image (its Python, standard library
only), and never touches the database: losing the global writer must not make both regions look dead.

Every `refresh_seconds` it checks, in parallel, with a short timeout each:
- the gateway: LiteLLM's liveness (`/health/liveliness` on 127.0.0.1) answers 200;
- each model backend the gateway routes to (the deployments of its rendered config: an own pool's load
  balancer, or a provider's API): an HTTP answer below 500 from its base URL. No tokens, no credentials:
  only that the path from this region to the backend works and something serves there.

GET /fleet/region-health: 200 when the gateway is up and at least one backend is reachable, else 503;
the body says which checks passed. GET /fleet/live: 200 while the sidecar runs (its own target health).
A snapshot older than three refresh periods counts as failing.

Its settings come from the environment, through RegionHealthSettings (settings.py), which the gateway
service renders them with. It ships as this package's modules (see components/control_plane/region_health.py).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .settings import REGION_HEALTH_LIVE_PATH, REGION_HEALTH_PATH, Backend, RegionHealthSettings


def backend_urls(backends: Sequence[Backend], env: Mapping[str, str]) -> dict[str, str]:
    """Each backend's base URL, as LiteLLM resolves it: an override from the environment wins."""
    resolved: dict[str, str] = {}
    for backend in backends:
        override = next((env[name] for name in backend.env if env.get(name)), None)
        resolved[backend.name] = override or backend.url
    return resolved


def answers(url: str, timeout: float, ok: Callable[[int], bool]) -> bool:
    """GET `url`; True when an HTTP status comes back within `timeout` and `ok` accepts it."""
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"User-Agent": "fleet-region-health"})
        return ok(conn.getresponse().status)
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Checker:
    """Keeps the latest snapshot of every check, refreshed in the background."""

    def __init__(
        self,
        gateway_liveness_url: str,
        backends: Mapping[str, str],
        refresh_seconds: float,
        check_timeout_seconds: float,
    ) -> None:
        self._gateway_liveness_url = gateway_liveness_url
        self._backends = dict(backends)
        self._refresh_seconds = refresh_seconds
        self._check_timeout_seconds = check_timeout_seconds
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {"gateway": False, "backends": {}, "checkedAt": 0.0}
        self._pool = ThreadPoolExecutor(max_workers=min(16, 1 + len(self._backends)))

    def check_once(self) -> dict[str, Any]:
        timeout = self._check_timeout_seconds
        gateway = self._pool.submit(answers, self._gateway_liveness_url, timeout, lambda s: s == 200)
        backends = {
            name: self._pool.submit(answers, url, timeout, lambda s: s < 500)
            for name, url in self._backends.items()
        }
        snapshot = {
            "gateway": gateway.result(),
            "backends": {name: future.result() for name, future in backends.items()},
            "checkedAt": time.time(),
        }
        with self._lock:
            self._snapshot = snapshot
        return snapshot

    def run_forever(self) -> None:
        while True:
            started = time.monotonic()
            self.check_once()
            time.sleep(max(0.0, self._refresh_seconds - (time.monotonic() - started)))

    def verdict(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            snapshot = dict(self._snapshot)
        fresh = time.time() - snapshot["checkedAt"] <= 3 * self._refresh_seconds
        serving = fresh and snapshot["gateway"] and any(snapshot["backends"].values())
        return serving, {**snapshot, "fresh": fresh, "serving": serving}


def make_handler(checker: Checker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if path == REGION_HEALTH_LIVE_PATH:
                self._send(200, {"status": "alive"})
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
    backends = backend_urls(settings.backends, env)
    checker = Checker(
        settings.gateway_liveness_url,
        backends,
        refresh_seconds=settings.refresh_seconds,
        check_timeout_seconds=settings.check_timeout_seconds,
    )
    threading.Thread(target=checker.run_forever, name="checks", daemon=True).start()
    server = ThreadingHTTPServer(("0.0.0.0", settings.port), make_handler(checker))
    print(
        json.dumps({"regionHealth": "listening", "port": server.server_port, "backends": sorted(backends)}),
        flush=True,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
