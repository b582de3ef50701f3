"""What the fleet controller does about each node, pool and stray instance: pure logic, no I/O.

Every tick the controller reduces what it read about a node to four signals:

- push: the agent's heartbeat record in Redis is `live` (within its TTL), `silent` (expired), or
  `unknown` (Redis did not answer);
- pull: the controller's own GET of the agent's /readyz `answers` (any status), is `refused` (the
  host is up, nothing listens: the agent is gone and systemd did not bring it back), `hung` (no
  answer before the timeout: the agent, or the whole host, is stuck), or `unknown` (no address);
  an answer says whether the node is ready (200) and its state (starting, warming, degraded, ...);
- lb: the pool's load balancer calls the target `healthy`, `unhealthy`, `draining`, or has no verdict;
- cloud: Auto Scaling and EC2 say the instance is `running`, `starting` (pending, or younger than the
  boot grace), `leaving` (terminating, standby, or already marked unhealthy: the group is replacing
  it), `gone` (terminated, stopped, not found), or `unknown` (the API did not answer).

`TABLE` maps them to a verdict and an action; the first row that matches wins. A node is replaced
when every signal that has a verdict says it is dead (a hung agent is restarted once before that), or
when its agent answers "not ready" for longer than it may: a node on its way (starting, warming) gets
its pool's warm-up limit (from the model's size and the store's throughput: components/gpu_pools), a
node that has served and went not ready (degraded: a GPU condemned by an XID, an engine that does not
recover) gets `not_ready_grace_s`. A destructive verdict must hold `confirmations` ticks in a row, and
the tick's steps (steps.py) never let repairs exceed `max_share` of a pool at once: a controller that
misreads the world (its own network broken, say) cannot take a pool down with it. A node that is not
ready is repaired, never compensated for: desired capacity is raised only for nodes that do not exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Cloud(StrEnum):
    RUNNING = "running"
    STARTING = "starting"
    LEAVING = "leaving"
    GONE = "gone"
    UNKNOWN = "unknown"


class Push(StrEnum):
    LIVE = "live"
    SILENT = "silent"
    UNKNOWN = "unknown"


class Pull(StrEnum):
    ANSWERS = "answers"
    REFUSED = "refused"
    HUNG = "hung"
    UNKNOWN = "unknown"


class Lb(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"
    UNKNOWN = "unknown"


class Restart(StrEnum):
    """Where a node stands with its one agent restart."""

    NOT_TRIED = "not-tried"
    PENDING = "pending"  # sent; the agent has `restart_grace_s` to beat again
    SPENT = "spent"  # sent, the grace is over (or one was sent within the last hour)


class Readiness(StrEnum):
    """An answering agent's readiness, and for how long it has not been ready."""

    READY = "ready"
    WARMING = "warming"  # on its way (starting, warming), within its pool's warm-up limit
    WARMING_OVERDUE = "warming-overdue"  # on its way, past the warm-up limit
    NOT_READY = "not-ready"  # served before (degraded) or says nothing of its state: within the grace
    NOT_READY_OVERDUE = "not-ready-overdue"  # past the grace


class Verdict(StrEnum):
    NO_QUORUM = "no-quorum"
    DRAINING = "draining"
    LEAVING = "leaving"
    BOOTING = "booting"
    GHOST = "ghost"
    CLOUD_LAG = "cloud-lag"
    HEALTHY = "healthy"
    WARMING = "warming"
    NOT_READY = "not-ready"
    STUCK_WARMING = "stuck-warming"
    NOT_READY_TOO_LONG = "not-ready-too-long"
    DEAD = "dead"
    HUNG = "hung"
    RESTARTING = "restarting"
    HUNG_AFTER_RESTART = "hung-after-restart"
    DEGRADED = "degraded"


class Action(StrEnum):
    NONE = "none"
    REPLACE = "replace"  # SetInstanceHealth Unhealthy: the group terminates it and launches another
    RESTART = "restart"  # SSM Run Command: the agent restart document
    FORGET = "forget"  # remove its heartbeat record and index entry


# Agent states in which the node is on its way out: never repaired, never replaced early.
LEAVING_AGENT_STATES = frozenset({"draining", "stopped"})
# Agent states in which a node that answers is expected to become ready.
COMING_AGENT_STATES = frozenset({"starting", "warming"})
# Verdicts on the way to a repair: consecutive ticks with any of them count towards `confirmations`.
SUSPECT = frozenset(
    {
        Verdict.DEAD,
        Verdict.HUNG,
        Verdict.RESTARTING,
        Verdict.HUNG_AFTER_RESTART,
        Verdict.STUCK_WARMING,
        Verdict.NOT_READY_TOO_LONG,
    }
)
# Verdicts of a running node whose agent answers not ready: its not-ready clock runs.
UNREADY_VERDICTS = frozenset(
    {Verdict.WARMING, Verdict.NOT_READY, Verdict.STUCK_WARMING, Verdict.NOT_READY_TOO_LONG}
)
# Repairs first where they are most sure: the dead, the hung past their restart, then the rest.
REPAIR_ORDER = {
    Verdict.DEAD: 0,
    Verdict.HUNG_AFTER_RESTART: 1,
    Verdict.NOT_READY_TOO_LONG: 2,
    Verdict.STUCK_WARMING: 3,
    Verdict.HUNG: 4,
}
# A pool without a warm-up limit of its own: the agent's own start timeout (fleet_agent.constants.
# STARTUP_TIMEOUT_S, SkyServe's initial grace), past which it calls the start failed.
DEFAULT_WARM_LIMIT_S = 1200.0
# A second hang this soon after a restart is not restarted again: the node is replaced.
RESTART_MEMORY_S = 3600.0
# A streak survives a missed tick or two (a slow tick, a run boundary), not a long break.
STREAK_BREAK_TICKS = 3
# A replacement the cloud still does not show after this long is requested again.
REREQUEST_S = 300.0

_ANY = None


@dataclass(frozen=True)
class Row:
    """One line of the decision table: the signal values it matches (None: any) and what follows."""

    verdict: Verdict
    action: Action
    why: str
    cloud: frozenset[Cloud] | None = _ANY
    push: frozenset[Push] | None = _ANY
    pull: frozenset[Pull] | None = _ANY
    lb: frozenset[Lb] | None = _ANY
    draining: bool | None = _ANY
    restart: frozenset[Restart] | None = _ANY
    readiness: frozenset[Readiness] | None = _ANY

    def matches(self, s: Signals, draining: bool, restart: Restart, readiness: Readiness | None) -> bool:
        return (
            (self.cloud is None or s.cloud in self.cloud)
            and (self.push is None or s.push in self.push)
            and (self.pull is None or s.pull in self.pull)
            and (self.lb is None or s.lb in self.lb)
            and (self.draining is None or draining == self.draining)
            and (self.restart is None or restart in self.restart)
            and (self.readiness is None or readiness in self.readiness)
        )


def _set(*values: StrEnum) -> frozenset:  # type: ignore[type-arg]
    return frozenset(values)


NOT_HEALTHY_LB = _set(Lb.UNHEALTHY, Lb.UNKNOWN)
# The decision table (seed 004's, made total): first match wins.
TABLE: tuple[Row, ...] = (
    Row(Verdict.NO_QUORUM, Action.NONE, "the cloud API did not answer", cloud=_set(Cloud.UNKNOWN)),
    Row(Verdict.NO_QUORUM, Action.NONE, "Redis did not answer: heartbeats unknown", push=_set(Push.UNKNOWN)),
    Row(Verdict.DRAINING, Action.NONE, "draining (spot notice, scale-in): left alone", draining=True),
    Row(Verdict.LEAVING, Action.NONE, "the group is terminating or replacing it", cloud=_set(Cloud.LEAVING)),
    Row(Verdict.BOOTING, Action.NONE, "pending, or within the boot grace", cloud=_set(Cloud.STARTING)),
    Row(
        Verdict.GHOST, Action.FORGET, "the instance is gone and so are its signals",
        cloud=_set(Cloud.GONE), push=_set(Push.SILENT), pull=_set(Pull.REFUSED, Pull.HUNG, Pull.UNKNOWN),
    ),
    Row(Verdict.CLOUD_LAG, Action.NONE, "the cloud says gone but the node still signals: look again later",
        cloud=_set(Cloud.GONE)),
    Row(Verdict.HEALTHY, Action.NONE, "heartbeat live and the agent answers ready",
        cloud=_set(Cloud.RUNNING), push=_set(Push.LIVE), pull=_set(Pull.ANSWERS),
        readiness=_set(Readiness.READY)),
    # The agent's own answer (not ready) is the signal here; its heartbeat may be live or not.
    Row(Verdict.WARMING, Action.NONE, "on its way to ready (starting, warming): within its warm-up limit",
        cloud=_set(Cloud.RUNNING), pull=_set(Pull.ANSWERS), readiness=_set(Readiness.WARMING)),
    Row(Verdict.NOT_READY, Action.NONE, "the agent answers not ready (degraded): within the not-ready grace",
        cloud=_set(Cloud.RUNNING), pull=_set(Pull.ANSWERS), readiness=_set(Readiness.NOT_READY)),
    Row(Verdict.STUCK_WARMING, Action.REPLACE, "on its way to ready past its pool's warm-up limit",
        cloud=_set(Cloud.RUNNING), pull=_set(Pull.ANSWERS), readiness=_set(Readiness.WARMING_OVERDUE)),
    Row(Verdict.NOT_READY_TOO_LONG, Action.REPLACE, "the agent answers not ready past the not-ready grace",
        cloud=_set(Cloud.RUNNING), pull=_set(Pull.ANSWERS), readiness=_set(Readiness.NOT_READY_OVERDUE)),
    Row(
        Verdict.DEAD, Action.REPLACE,
        "running, heartbeat expired, its port refuses (systemd did not bring the agent back), "
        "the load balancer does not call it healthy",
        cloud=_set(Cloud.RUNNING), push=_set(Push.SILENT), pull=_set(Pull.REFUSED), lb=NOT_HEALTHY_LB,
    ),
    Row(
        Verdict.HUNG, Action.RESTART,
        "running, heartbeat expired, the agent does not answer: restart it once",
        cloud=_set(Cloud.RUNNING), push=_set(Push.SILENT), pull=_set(Pull.HUNG), lb=NOT_HEALTHY_LB,
        restart=_set(Restart.NOT_TRIED),
    ),
    Row(
        Verdict.RESTARTING, Action.NONE, "the agent restart is under way",
        cloud=_set(Cloud.RUNNING), push=_set(Push.SILENT), pull=_set(Pull.HUNG, Pull.REFUSED),
        lb=NOT_HEALTHY_LB, restart=_set(Restart.PENDING),
    ),
    Row(
        Verdict.HUNG_AFTER_RESTART, Action.REPLACE, "still silent after its agent restart",
        cloud=_set(Cloud.RUNNING), push=_set(Push.SILENT), pull=_set(Pull.HUNG), lb=NOT_HEALTHY_LB,
        restart=_set(Restart.SPENT),
    ),
    Row(Verdict.DEGRADED, Action.NONE, "the signals disagree: reported, not acted on"),
)  # fmt: skip


@dataclass(frozen=True)
class Signals:
    cloud: Cloud
    push: Push
    pull: Pull
    lb: Lb = Lb.UNKNOWN
    # What the agent says of itself (heartbeat record or /readyz body): ready, draining, ...
    agent_state: str | None = None
    ready: bool = False

    @property
    def draining(self) -> bool:
        return self.agent_state in LEAVING_AGENT_STATES or self.lb is Lb.DRAINING

    @property
    def serving(self) -> bool:
        """Ready to serve by the agent's own answer to the controller, on an instance still in its
        group: what `ReadyNodes` counts (a node the group still calls starting may already be ready: the
        launch hook lets it in service once it is)."""
        return self.pull is Pull.ANSWERS and self.ready and self.cloud in (Cloud.RUNNING, Cloud.STARTING)

    @property
    def coming(self) -> bool:
        return self.agent_state in COMING_AGENT_STATES

    def describe(self) -> dict[str, object]:
        return {
            "cloud": self.cloud.value,
            "push": self.push.value,
            "pull": self.pull.value,
            "lb": self.lb.value,
            "agentState": self.agent_state,
            "ready": self.ready,
        }


@dataclass(frozen=True)
class Settings:
    tick_s: float
    confirmations: int
    restart_grace_s: float
    leave_alone_s: float
    orphan_grace_s: float
    max_share: float
    # A node that has served and answers not ready this long is replaced.
    not_ready_grace_s: float = 180.0
    # The fewest ready nodes per model in this region (models without an entry: no minimum).
    min_ready: Mapping[str, int] = field(default_factory=dict)
    alert_every_s: float = 3600.0


@dataclass(frozen=True)
class NodeMemory:
    """What the controller remembers of a node between ticks (and runs)."""

    streak: int = 0  # consecutive ticks with a suspect verdict
    last_suspect: float | None = None
    restarted_at: float | None = None
    replaced_at: float | None = None
    draining_since: float | None = None
    lag_since: float | None = None
    # The first tick its agent answered not ready (after the boot grace); cleared when it is ready.
    unready_since: float | None = None

    def is_empty(self) -> bool:
        return self == NodeMemory()


# --- one node ---------------------------------------------------------------------------------------


def restart_phase(memory: NodeMemory, now: float, settings: Settings) -> Restart:
    if memory.restarted_at is None or now - memory.restarted_at > RESTART_MEMORY_S:
        return Restart.NOT_TRIED
    if now - memory.restarted_at < settings.restart_grace_s:
        return Restart.PENDING
    return Restart.SPENT


def readiness(
    signals: Signals, memory: NodeMemory, now: float, settings: Settings, warm_limit_s: float
) -> Readiness | None:
    """An answering agent's readiness against its allowance (None: it did not answer)."""
    if signals.pull is not Pull.ANSWERS:
        return None
    if signals.ready:
        return Readiness.READY
    waited = now - (memory.unready_since if memory.unready_since is not None else now)
    if signals.coming:
        return Readiness.WARMING if waited < warm_limit_s else Readiness.WARMING_OVERDUE
    return Readiness.NOT_READY if waited < settings.not_ready_grace_s else Readiness.NOT_READY_OVERDUE


def judge(
    signals: Signals,
    memory: NodeMemory,
    now: float,
    settings: Settings,
    warm_limit_s: float = DEFAULT_WARM_LIMIT_S,
) -> tuple[Row, NodeMemory]:
    """The table's row for this node, and what to remember of it. Actions here are before the
    confirmation count and the pool's disruption budget (steps.repairs applies both)."""
    draining = signals.draining or (
        memory.draining_since is not None and now - memory.draining_since < settings.leave_alone_s
    )
    restart = restart_phase(memory, now, settings)
    ready = readiness(signals, memory, now, settings, warm_limit_s)
    row = next(r for r in TABLE if r.matches(signals, draining, restart, ready))
    remembered = memory
    if signals.draining and memory.draining_since is None:
        remembered = replace(remembered, draining_since=now)
    # The not-ready clock runs from the first answer "not ready" of a running node (not in its boot grace,
    # not leaving), and stops when it answers ready.
    if ready is Readiness.READY:
        remembered = replace(remembered, unready_since=None)
    elif ready is not None and row.verdict in UNREADY_VERDICTS and memory.unready_since is None:
        remembered = replace(remembered, unready_since=now)
    if row.verdict is Verdict.CLOUD_LAG:
        remembered = replace(remembered, lag_since=memory.lag_since or now)
    elif memory.lag_since is not None:
        remembered = replace(remembered, lag_since=None)
    if row.verdict in SUSPECT:
        fresh = memory.last_suspect is not None and now - memory.last_suspect <= settings.tick_s * (
            STREAK_BREAK_TICKS
        )
        remembered = replace(remembered, streak=memory.streak + 1 if fresh else 1, last_suspect=now)
    elif row.verdict is not Verdict.NO_QUORUM:
        remembered = replace(remembered, streak=0, last_suspect=None)
    if row.verdict is Verdict.HEALTHY:
        # Back to health: a drain called off, or a replacement the group did not carry out.
        remembered = replace(remembered, draining_since=None, replaced_at=None)
    return row, remembered
