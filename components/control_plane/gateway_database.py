"""How the gateway uses its database so that losing the writer's region never stops inference nor opens
the API, as LiteLLM (the version the gateway image pins, 1.104.0) behaves:

- Each region's gateway reads from its own region's Aurora reader (`DATABASE_URL_READ_REPLICA`: the
  primary cluster's reader endpoint, the standby's secondary cluster's) and writes through the global
  writer (`DATABASE_URL`). LiteLLM then routes every read, virtual-key lookups included, to the reader
  (proxy/utils.py builds a RoutingPrismaWrapper), and probes the reader for its health: with the writer's
  region gone, keys are still checked, and an unknown key is refused.
- `allow_requests_on_db_unavailable` (rendered from `controlPlane.gateway.allowRequestsWithoutDatabase`,
  false in prod): when true, a key LiteLLM cannot look up is given a restricted INTERNAL_USER identity
  (`DB_UNAVAILABLE_FALLBACK_USER_ID`) and served, so while no database answers any caller with an `sk-`
  bearer token is served. False refuses such keys; a task then needs its reader to answer at start.
- Migrations never keep a task from serving. LiteLLM run as the server with an unreachable writer
  stops (its migration resolver gives up with "cannot be auto-recovered", whatever
  `--no-enforce_prisma_migration_check` says), so the serving container skips them
  (`DISABLE_SCHEMA_UPDATE`) and a `migrate` container in the same task runs them first
  (`--skip_server_startup`). The server waits for it to *complete*, successfully or not: with the writer
  unreachable that is a few seconds (Prisma's 5 s connect timeout), and the task serves.
- LiteLLM's database watchdog probes every 10 s and reconnects once the (new) writer answers: the
  standby-recovery term of the region-loss budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WATCHDOG_INTERVAL_SECONDS = 10
WATCHDOG_PROBE_TIMEOUT_SECONDS = 5
WATCHDOG_RECONNECT_TIMEOUT_SECONDS = 30
# How long after a promotion the gateways write again: a watchdog period, its probe, a reconnect.
GATEWAY_DATABASE_RECOVERY_SECONDS = (
    WATCHDOG_INTERVAL_SECONDS + WATCHDOG_PROBE_TIMEOUT_SECONDS + WATCHDOG_RECONNECT_TIMEOUT_SECONDS
)
# Prisma gives up connecting after this (a blackholed writer otherwise hangs a TCP connect for minutes).
CONNECT_TIMEOUT_SECONDS = 5


MIGRATE_CONTAINER = "migrate"


def database_environment() -> list[dict[str, str]]:
    """The serving container's database settings (plain values; the URL itself is a secret)."""
    return [
        {"name": "DISABLE_SCHEMA_UPDATE", "value": "true"},
        {"name": "PRISMA_HEALTH_WATCHDOG_INTERVAL_SECONDS", "value": str(WATCHDOG_INTERVAL_SECONDS)},
        {
            "name": "PRISMA_HEALTH_WATCHDOG_PROBE_TIMEOUT_SECONDS",
            "value": str(WATCHDOG_PROBE_TIMEOUT_SECONDS),
        },
        {
            "name": "PRISMA_WATCHDOG_RECONNECT_TIMEOUT_SECONDS",
            "value": str(WATCHDOG_RECONNECT_TIMEOUT_SECONDS),
        },
    ]


def migrate_container(gateway: Mapping[str, Any]) -> dict[str, Any]:
    """LiteLLM's migrations, run to completion before the server starts (not essential: it may fail)."""
    serving_only = {e["name"] for e in database_environment()}
    log = gateway["logConfiguration"]
    return {
        "name": MIGRATE_CONTAINER,
        "image": gateway["image"],
        "essential": False,
        "command": ["--skip_server_startup"],
        "environment": [e for e in gateway["environment"] if e["name"] not in serving_only],
        "secrets": gateway["secrets"],
        "logConfiguration": {
            **log,
            "options": {**log["options"], "awslogs-stream-prefix": MIGRATE_CONTAINER},
        },
    }


def database_url(username: str, password_quoted: str, endpoint: str, port: int, name: str) -> str:
    return (
        f"postgresql://{username}:{password_quoted}@{endpoint}:{port}/{name}"
        f"?sslmode=require&connect_timeout={CONNECT_TIMEOUT_SECONDS}"
    )
