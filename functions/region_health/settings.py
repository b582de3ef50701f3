"""The region-health sidecar's settings: what the gateway service renders into the sidecar's environment
(components/control_plane/region_health.py) and what the sidecar reads back, through this one dataclass.

Standard library only: it runs in the gateway's image, beside region_health.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

# What the ALB forwards to the sidecar, and what its target group checks.
REGION_HEALTH_PORT = 4001
REGION_HEALTH_PATH = "/fleet/region-health"
REGION_HEALTH_LIVE_PATH = "/fleet/live"

PORT_ENV = "REGION_HEALTH_PORT"
GATEWAY_LIVENESS_URL_ENV = "GATEWAY_LIVENESS_URL"
BACKENDS_ENV = "FLEET_BACKENDS"
REFRESH_SECONDS_ENV = "REFRESH_SECONDS"
CHECK_TIMEOUT_SECONDS_ENV = "CHECK_TIMEOUT_SECONDS"


@dataclass(frozen=True)
class Backend:
    """A model backend the gateway routes to: its deployment's id, its base URL, and the environment
    variables LiteLLM itself reads to override that provider's base URL (empty for an explicit api_base)."""

    name: str
    url: str
    env: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegionHealthSettings:
    gateway_liveness_url: str
    backends: tuple[Backend, ...]
    port: int = REGION_HEALTH_PORT
    # How often every check runs; a snapshot older than three of these counts as failing.
    refresh_seconds: float = 5
    # Each check's own limit.
    check_timeout_seconds: float = 2

    def to_env(self) -> dict[str, str]:
        backends = [{"name": b.name, "url": b.url, "env": list(b.env)} for b in self.backends]
        return {
            PORT_ENV: str(self.port),
            GATEWAY_LIVENESS_URL_ENV: self.gateway_liveness_url,
            BACKENDS_ENV: json.dumps(backends, sort_keys=True),
            REFRESH_SECONDS_ENV: _seconds(self.refresh_seconds),
            CHECK_TIMEOUT_SECONDS_ENV: _seconds(self.check_timeout_seconds),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RegionHealthSettings:
        return cls(
            gateway_liveness_url=env[GATEWAY_LIVENESS_URL_ENV],
            backends=tuple(
                Backend(str(b["name"]), str(b["url"]), tuple(b.get("env", ())))
                for b in json.loads(env[BACKENDS_ENV])
            ),
            port=int(env.get(PORT_ENV, REGION_HEALTH_PORT)),
            refresh_seconds=float(env.get(REFRESH_SECONDS_ENV, cls.refresh_seconds)),
            check_timeout_seconds=float(env.get(CHECK_TIMEOUT_SECONDS_ENV, cls.check_timeout_seconds)),
        )


def _seconds(value: float) -> str:
    """5 -> "5", 0.5 -> "0.5": what a person would write."""
    return f"{value:g}"
