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

Not-ready node (the agent answers, /readyz 503: a GPU condemned by an XID 79/48/94/95/119, an engine that
does not recover):

    agentDetection   the agent turns readiness off: at once on an XID event (NVML's event wait returns
                     with it), within one GPU check period for a reading (fleet_agent.constants)
    firstTick        the first tick that sees it starts its not-ready clock
    notReadyGrace    the grace (controller.notReadyGraceSeconds)
    graceRounding    the first tick at or past the grace comes at most one tick later
    confirmations    (confirmations - 1) more ticks must agree
    runHandover, tickWork as above

A node on its way (starting, warming) gets its pool's warm-up limit in place of the grace (its pool's
`readiness` budget); after the boot grace, which the controller waits first.

runHandover: each run ticks for `RUN_SECONDS` and a new run starts every minute, somewhere in its minute
(EventBridge documents no finer precision), so two runs are always alive except for at most
2 x 60 - RUN_SECONDS seconds, plus a cold start.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.controller.config import ControllerConfig
from fleet_agent import constants as agent_constants
from functions.fleet_controller.settings import RUN_SECONDS

SCHEDULE_PERIOD_S = 60
COLD_START_S = 2
# The agent's GPU check period: the longest a reading-based GPU fault takes to turn readiness off.
AGENT_GPU_CHECK_S = agent_constants.GPU_CHECK_PERIOD_S
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
    agent_detection_s: float = 0.0
    not_ready_grace_s: float = 0.0

    @property
    def killed_s(self) -> float:
        detect = self.heartbeat_ttl_s + self.first_tick_s + self.confirmations_s
        return detect + self.run_handover_s + self.tick_work_s

    @property
    def silent_s(self) -> float:
        after_restart = self.restart_grace_s + self.recheck_tick_s + self.run_handover_s + self.tick_work_s
        return self.killed_s + after_restart

    @property
    def not_ready_s(self) -> float:
        detect = self.agent_detection_s + self.first_tick_s + self.not_ready_grace_s + self.first_tick_s
        return detect + self.confirmations_s + self.run_handover_s + self.tick_work_s

    def figures(self) -> dict[str, object]:
        terms = {
            "heartbeatTtl": self.heartbeat_ttl_s,
            "firstTick": self.first_tick_s,
            "confirmations": self.confirmations_s,
            "runHandover": self.run_handover_s,
            "tickWork": self.tick_work_s,
            "restartGrace": self.restart_grace_s,
            "recheckTick": self.recheck_tick_s,
            "agentDetection": self.agent_detection_s,
            "notReadyGrace": self.not_ready_grace_s,
            "graceRounding": self.first_tick_s,
        }
        return {
            "killedNodeToReplacementSeconds": round(self.killed_s, 1),
            "silentNodeToReplacementSeconds": round(self.silent_s, 1),
            "notReadyNodeToReplacementSeconds": round(self.not_ready_s, 1),
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
    not_ready_grace_s: float = 0.0,
    agent_detection_s: float = AGENT_GPU_CHECK_S,
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
        agent_detection_s=agent_detection_s,
        not_ready_grace_s=not_ready_grace_s,
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
        not_ready_grace_s=config.not_ready_grace_seconds,
    )
