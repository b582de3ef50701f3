"""What the failover budgets read of the control plane, as it declares it (the budgets live in
components/failover/budget.py, which cannot import this package's internals)."""

from __future__ import annotations

from dataclasses import dataclass

from components.control_plane.alarms import TAKEOVER_PERIOD_SECONDS
from components.control_plane.edge import CLIENT_KEEP_ALIVE_SECONDS
from components.control_plane.gateway_database import (
    GATEWAY_DATABASE_RECOVERY_SECONDS,
    WATCHDOG_INTERVAL_SECONDS,
)
from components.control_plane.gateway_service import HEALTH_CHECK_GRACE_SECONDS
from components.core.load_balancing import HEALTH_CHECK_INTERVAL_SECONDS, HEALTHY_THRESHOLD

# A gateway task's start (best, typical, worst). AWS publishes no Fargate start time; the image pull is most
# of it ("76%", AWS Containers blog on SOCI). A third party measured 57 s from creation to running for a
# 413 MB image; LiteLLM itself was live 9-34 s after its start on a loaded 2-core machine here
# (bench/gateway_keys.py, `gatewayStartSeconds`). The worst case is the service's health-check grace.
TASK_START_SECONDS = (30, 60, HEALTH_CHECK_GRACE_SECONDS)


@dataclass(frozen=True)
class GatewayTimings:
    # The ALB closes a client's connection after this: a client pools it to a failing region this long.
    client_keep_alive_seconds: int
    # The standby's takeover alarm's period: it grows to the primary's size after one.
    takeover_alarm_seconds: int
    # A new gateway task starts (best, typical, worst), then takes traffic once its target passes this
    # many seconds of health checks.
    task_start_seconds: tuple[int, int, int]
    task_start_source: str
    registration_seconds: int
    # LiteLLM's database watchdog: how often it probes, and how long until it writes to a new writer.
    watchdog_interval_seconds: int
    database_recovery_seconds: int


GATEWAY_TIMINGS = GatewayTimings(
    client_keep_alive_seconds=CLIENT_KEEP_ALIVE_SECONDS,
    takeover_alarm_seconds=TAKEOVER_PERIOD_SECONDS,
    task_start_seconds=TASK_START_SECONDS,
    task_start_source="no AWS figure: a third party measured 57 s for a 413 MB image; LiteLLM's own start "
    f"measured 9-34 s here (bench/gateway_keys.py); worst: the service's {HEALTH_CHECK_GRACE_SECONDS} s "
    "health-check grace",
    registration_seconds=HEALTH_CHECK_INTERVAL_SECONDS * HEALTHY_THRESHOLD,
    watchdog_interval_seconds=WATCHDOG_INTERVAL_SECONDS,
    database_recovery_seconds=GATEWAY_DATABASE_RECOVERY_SECONDS,
)
