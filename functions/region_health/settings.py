"""The region-health sidecar's settings: what the gateway service renders into the environment of the
sidecar and of its key's registration (components/control_plane/region_health.py), and what both read
back, through this one dataclass.

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
GATEWAY_URL_ENV = "GATEWAY_URL"
PROBES_ENV = "FLEET_PROBES"
KEY_ALIAS_ENV = "FLEET_REGION_HEALTH_KEY_ALIAS"
SERVERLESS_ONLY_HEALTHY_ENV = "SERVERLESS_ONLY_HEALTHY"
REFRESH_SECONDS_ENV = "REFRESH_SECONDS"
CHECK_TIMEOUT_SECONDS_ENV = "CHECK_TIMEOUT_SECONDS"
# The sidecar's own gateway key: a secret (the task's `secrets`), never among the settings.
REGION_HEALTH_KEY_ENV = "FLEET_REGION_HEALTH_KEY"


@dataclass(frozen=True)
class Probe:
    """A deployment of the gateway's config the sidecar completes through: its id (a request naming it
    reaches exactly that deployment), and whether it is one of the region's own backends (a GPU pool, a
    Kubernetes-served model) rather than a serverless endpoint."""

    deployment: str
    own: bool


@dataclass(frozen=True)
class RegionHealthSettings:
    # The region's own gateway, inside the task.
    gateway_url: str
    probes: tuple[Probe, ...]
    # The alias of the sidecar's gateway key (one per region; the registration replaces older ones).
    key_alias: str
    # When no own backend serves but a serverless endpoint does: 200 (True) or 503 to Route53.
    serverless_only_healthy: bool = False
    port: int = REGION_HEALTH_PORT
    # How often the probes run; the verdict served in between is the last one (a cache).
    refresh_seconds: float = 5
    # Each completion's own limit.
    check_timeout_seconds: float = 8

    @property
    def own(self) -> tuple[Probe, ...]:
        return tuple(p for p in self.probes if p.own)

    @property
    def serverless(self) -> tuple[Probe, ...]:
        return tuple(p for p in self.probes if not p.own)

    def to_env(self) -> dict[str, str]:
        probes = [{"deployment": p.deployment, "own": p.own} for p in self.probes]
        return {
            PORT_ENV: str(self.port),
            GATEWAY_URL_ENV: self.gateway_url,
            PROBES_ENV: json.dumps(probes, sort_keys=True),
            KEY_ALIAS_ENV: self.key_alias,
            SERVERLESS_ONLY_HEALTHY_ENV: "true" if self.serverless_only_healthy else "false",
            REFRESH_SECONDS_ENV: _seconds(self.refresh_seconds),
            CHECK_TIMEOUT_SECONDS_ENV: _seconds(self.check_timeout_seconds),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RegionHealthSettings:
        return cls(
            gateway_url=env[GATEWAY_URL_ENV],
            probes=tuple(Probe(str(p["deployment"]), bool(p["own"])) for p in json.loads(env[PROBES_ENV])),
            key_alias=env[KEY_ALIAS_ENV],
            serverless_only_healthy=env.get(SERVERLESS_ONLY_HEALTHY_ENV, "false") == "true",
            port=int(env.get(PORT_ENV, REGION_HEALTH_PORT)),
            refresh_seconds=float(env.get(REFRESH_SECONDS_ENV, cls.refresh_seconds)),
            check_timeout_seconds=float(env.get(CHECK_TIMEOUT_SECONDS_ENV, cls.check_timeout_seconds)),
        )


def _seconds(value: float) -> str:
    """5 -> "5", 0.5 -> "0.5": what a person would write."""
    return f"{value:g}"
