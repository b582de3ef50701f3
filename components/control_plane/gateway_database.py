"""How the gateway uses its database so that losing it never stops inference, as LiteLLM (the version
the gateway image pins, 1.104.0) behaves:

- `allow_requests_on_db_unavailable` (rendered into the config): requests keep being served while the
  database is unreachable. Keys already verified stay cached; a key LiteLLM cannot verify is given a
  restricted INTERNAL_USER identity (`DB_UNAVAILABLE_FALLBACK_USER_ID`), so during an outage any caller
  with a bearer token is served. `controlPlane.gateway.allowRequestsWithoutDatabase: false` refuses them
  instead.
- The primary region's tasks run LiteLLM's schema migrations at start without making them a condition
  of starting (`--no-enforce_prisma_migration_check`); the standby's never run them at start
  (`DISABLE_SCHEMA_UPDATE`): a standby task scaling up while the writer is unreachable starts at once.
- LiteLLM's database watchdog probes every 10 s and reconnects once the (new) writer answers: the
  standby-recovery term of the region-loss budget.
"""

from __future__ import annotations

WATCHDOG_INTERVAL_SECONDS = 10
WATCHDOG_PROBE_TIMEOUT_SECONDS = 5
WATCHDOG_RECONNECT_TIMEOUT_SECONDS = 30
# How long after a promotion the gateways write again: a watchdog period, its probe, a reconnect.
GATEWAY_DATABASE_RECOVERY_SECONDS = (
    WATCHDOG_INTERVAL_SECONDS + WATCHDOG_PROBE_TIMEOUT_SECONDS + WATCHDOG_RECONNECT_TIMEOUT_SECONDS
)
# Prisma gives up connecting after this (a blackholed writer otherwise hangs a TCP connect for minutes).
CONNECT_TIMEOUT_SECONDS = 5


def database_environment(role: str) -> list[dict[str, str]]:
    """The container's database settings (plain values; the URL itself is a secret)."""
    env = [
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
    if role == "standby":
        env.append({"name": "DISABLE_SCHEMA_UPDATE", "value": "true"})
    return env


def database_url(username: str, password_quoted: str, endpoint: str, port: int, name: str) -> str:
    return (
        f"postgresql://{username}:{password_quoted}@{endpoint}:{port}/{name}"
        f"?sslmode=require&connect_timeout={CONNECT_TIMEOUT_SECONDS}"
    )
