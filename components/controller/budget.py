"""How long from a node's death to its replacement being requested, from the configured periods.

Killed node (the agent's process gone, systemd not bringing it back; or the whole host down):

    heartbeatTtl     the last record expires at most the heartbeat TTL after death
    firstTick        the first tick after the expiry comes at most one tick later
    confirmations    (confirmations - 1) more ticks must agree
    runHandover      one gap between two scheduled runs (see below)
    tickWork         within its tick the poll times out, then the call is made

Silent node (running, the agent hung): the same up to its restart (SSM Run Command), then

    restartGrace     the restarted agent has this long to beat again
    recheckTick      the first tick after the grace replaces it if still silent
    runHandover      and one more run boundary
    tickWork         the replacement call

runHandover: each run ticks for `RUN_SECONDS` and a new run starts every minute, somewhere in its minute
(EventBridge documents no finer precision), so two runs are always alive except for at most
2 x 60 - RUN_SECONDS seconds, plus a cold start.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.controller.config import ControllerConfig
from functions.fleet_controller.settings import RUN_SECONDS

SCHEDULE_PERIOD_S = 60
COLD_START_S = 2
# The cloud reads and the repair call of one tick: each is well under a second; this bounds them all.
TICK_API_S = 2


@dataclass(frozen=True)
class DetectionBudget:
    heartbeat_ttl_s: float
    first_tick_s: float
    confirmations_s: float
    run_handover_s: float
    tick_work_s: float
    restart_grace_s: float
    recheck_tick_s: float

    @property
    def killed_s(self) -> float:
        detect = self.heartbeat_ttl_s + self.first_tick_s + self.confirmations_s
        return detect + self.run_handover_s + self.tick_work_s

    @property
    def silent_s(self) -> float:
        after_restart = self.restart_grace_s + self.recheck_tick_s + self.run_handover_s + self.tick_work_s
        return self.killed_s + after_restart

    def figures(self) -> dict[str, object]:
        terms = {
            "heartbeatTtl": self.heartbeat_ttl_s,
            "firstTick": self.first_tick_s,
            "confirmations": self.confirmations_s,
            "runHandover": self.run_handover_s,
            "tickWork": self.tick_work_s,
            "restartGrace": self.restart_grace_s,
            "recheckTick": self.recheck_tick_s,
        }
        return {
            "killedNodeToReplacementSeconds": round(self.killed_s, 1),
            "silentNodeToReplacementSeconds": round(self.silent_s, 1),
            "termsSeconds": {k: round(v, 1) for k, v in terms.items()},
        }


def run_handover_s(run_seconds: float = RUN_SECONDS) -> float:
    return max(0.0, 2 * SCHEDULE_PERIOD_S - run_seconds) + COLD_START_S


def budget_for(
    *,
    tick_s: float,
    confirmations: int,
    poll_timeout_s: float,
    restart_grace_s: float,
    heartbeat_ttl_s: float,
    handover_s: float,
) -> DetectionBudget:
    """The worst case from the periods themselves (the tests and the bench run the controller as one
    continuous loop: `handover_s` 0)."""
    return DetectionBudget(
        heartbeat_ttl_s=heartbeat_ttl_s,
        first_tick_s=tick_s,
        confirmations_s=(confirmations - 1) * tick_s,
        run_handover_s=handover_s,
        tick_work_s=poll_timeout_s + TICK_API_S,
        restart_grace_s=restart_grace_s,
        recheck_tick_s=tick_s,
    )


def detection_budget(config: ControllerConfig, heartbeat_ttl_s: float) -> DetectionBudget:
    """The worst case for the deployed controller, scheduled runs and all."""
    return budget_for(
        tick_s=config.tick_seconds,
        confirmations=config.confirmations,
        poll_timeout_s=config.poll_timeout_seconds,
        restart_grace_s=config.restart_grace_seconds,
        heartbeat_ttl_s=heartbeat_ttl_s,
        handover_s=run_handover_s(),
    )
