"""What the fleet controller does about each node, pool and stray instance: pure logic, no I/O.

Every tick the controller reduces what it read about a node to four signals:

- push: the agent's heartbeat record in Redis is `live` (within its TTL), `silent` (expired), or
  `unknown` (Redis did not answer);
- pull: the controller's own GET of the agent's /readyz `answers` (any status), is `refused` (the
  host is up, nothing listens: the agent is gone and systemd did not bring it back), `hung` (no
  answer before the timeout: the agent, or the whole host, is stuck), or `unknown` (no address);
- lb: the pool's load balancer calls the target `healthy`, `unhealthy`, `draining`, or has no verdict;
- cloud: Auto Scaling and EC2 say the instance is `running`, `starting` (pending, or younger than the
  boot grace), `leaving` (terminating, standby, or already marked unhealthy: the group is replacing
  it), `gone` (terminated, stopped, not found), or `unknown` (the API did not answer).

`TABLE` maps them to a verdict and an action; the first row that matches wins. A node is replaced
only when every signal that has a verdict says it is dead, and a hung agent is restarted once before
that. A destructive verdict must hold `confirmations` ticks in a row, and `plan` never lets repairs
exceed `max_share` of a pool at once: a controller that misreads the world (its own network broken,
say) cannot take a pool down with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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


class Verdict(StrEnum):
    NO_QUORUM = "no-quorum"
    DRAINING = "draining"
    LEAVING = "leaving"
    BOOTING = "booting"
    GHOST = "ghost"
    CLOUD_LAG = "cloud-lag"
    HEALTHY = "healthy"
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
SUSPECT = frozenset({Verdict.DEAD, Verdict.HUNG, Verdict.RESTARTING, Verdict.HUNG_AFTER_RESTART})
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

    def matches(self, s: Signals, draining: bool, restart: Restart) -> bool:
        return (
            (self.cloud is None or s.cloud in self.cloud)
            and (self.push is None or s.push in self.push)
            and (self.pull is None or s.pull in self.pull)
            and (self.lb is None or s.lb in self.lb)
            and (self.draining is None or draining == self.draining)
            and (self.restart is None or restart in self.restart)
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
    Row(Verdict.HEALTHY, Action.NONE, "heartbeat live and the agent answers",
        cloud=_set(Cloud.RUNNING), push=_set(Push.LIVE), pull=_set(Pull.ANSWERS)),
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

    def is_empty(self) -> bool:
        return self == NodeMemory()


@dataclass(frozen=True)
class Memory:
    nodes: Mapping[str, NodeMemory] = field(default_factory=dict)
    orphans_since: Mapping[str, float] = field(default_factory=dict)
    alerted: Mapping[str, float] = field(default_factory=dict)  # alert key -> when last sent
    reconciled_at: float | None = None


@dataclass(frozen=True)
class Node:
    instance_id: str
    pool: str
    signals: Signals


@dataclass(frozen=True)
class Pool:
    name: str
    group: str
    model: str
    desired: int
    max_size: int
    # Instances in the group that are not on their way out, and those the group is replacing.
    instances: int
    replacing: int = 0


@dataclass(frozen=True)
class Orphan:
    instance_id: str
    launched_at: float
    hold: bool = False  # tagged to be kept (an operator's debugging instance)


@dataclass(frozen=True)
class Fleet:
    """One tick's view of a region: the pools' nodes, and (on reconciliation passes) the strays."""

    now: float
    pools: tuple[Pool, ...]
    nodes: tuple[Node, ...]
    # None: not a reconciliation pass. Instances tagged for the fleet in no group; heartbeat index
    # entries whose instance is gone and whose record has expired.
    orphans: tuple[Orphan, ...] | None = None
    ghosts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class NodeDecision:
    instance_id: str
    pool: str
    verdict: Verdict
    action: Action
    why: str
    signals: Signals
    held: bool = False  # the action was due but the pool's disruption budget is spent

    @property
    def acts(self) -> bool:
        return self.action is not Action.NONE and not self.held

    def describe(self) -> dict[str, object]:
        return {
            "instance": self.instance_id,
            "pool": self.pool,
            "verdict": self.verdict.value,
            "action": self.action.value,
            "held": self.held,
            "why": self.why,
            "signals": self.signals.describe(),
        }


@dataclass(frozen=True)
class CapacityRaise:
    pool: str
    group: str
    model: str
    desired: int
    new_desired: int
    ready: int
    coming: int
    minimum: int


@dataclass(frozen=True)
class Alert:
    key: str  # dedup key: one alert per key per `alert_every_s`
    subject: str
    detail: dict[str, object]


@dataclass(frozen=True)
class Plan:
    nodes: tuple[NodeDecision, ...]
    terminate: tuple[str, ...]  # orphans past their grace
    orphans: tuple[str, ...]  # every orphan seen (reported)
    forget: tuple[str, ...]  # heartbeat entries to remove (ghosts)
    raises: tuple[CapacityRaise, ...]
    alerts: tuple[Alert, ...]
    memory: Memory
    no_quorum: bool

    def actions(self) -> list[NodeDecision]:
        return [d for d in self.nodes if d.acts and d.action is not Action.FORGET]


# --- one node ---------------------------------------------------------------------------------------


def restart_phase(memory: NodeMemory, now: float, settings: Settings) -> Restart:
    if memory.restarted_at is None or now - memory.restarted_at > RESTART_MEMORY_S:
        return Restart.NOT_TRIED
    if now - memory.restarted_at < settings.restart_grace_s:
        return Restart.PENDING
    return Restart.SPENT


def judge(signals: Signals, memory: NodeMemory, now: float, settings: Settings) -> tuple[Row, NodeMemory]:
    """The table's row for this node, and what to remember of it. Actions here are before the
    confirmation count and the pool's disruption budget (`plan` applies both)."""
    draining = signals.draining or (
        memory.draining_since is not None and now - memory.draining_since < settings.leave_alone_s
    )
    restart = restart_phase(memory, now, settings)
    row = next(r for r in TABLE if r.matches(signals, draining, restart))
    remembered = memory
    if signals.draining and memory.draining_since is None:
        remembered = replace(remembered, draining_since=now)
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


# --- the region ------------------------------------------------------------------------------------


def disruption_budget(pool: Pool, share: float) -> int:
    """How many of the pool's nodes may be under repair at once: a share of its size, at least one."""
    size = max(pool.desired, pool.instances + pool.replacing)
    return max(1, math.floor(share * size))


def plan(fleet: Fleet, memory: Memory, settings: Settings) -> Plan:
    """The tick's decisions, step by step: repair the nodes, keep each model's fewest ready replicas, deal
    with orphans, forget ghosts, and send the alerts that are due."""
    repaired = repairs(fleet, memory.nodes, settings)
    no_quorum = repaired.no_quorum
    raises, short = ((), ()) if no_quorum else capacity(fleet, repaired.decisions, settings)
    strays = orphans(fleet, memory.orphans_since, no_quorum, settings)
    due, alerted = alerts((*repaired.alerts, *short, *strays.alerts), memory.alerted, fleet.now, settings)
    reconciled_at = fleet.now if fleet.orphans is not None else memory.reconciled_at
    return Plan(
        nodes=repaired.decisions,
        terminate=strays.terminate,
        orphans=strays.seen,
        forget=ghosts(fleet, repaired.decisions),
        raises=raises,
        alerts=due,
        memory=Memory(repaired.memory, strays.since, alerted, reconciled_at),
        no_quorum=no_quorum,
    )


@dataclass(frozen=True)
class Repairs:
    decisions: tuple[NodeDecision, ...]
    memory: Mapping[str, NodeMemory]  # of the fleet's nodes only, and only what is worth remembering
    alerts: tuple[Alert, ...]  # pools whose repairs are held back
    no_quorum: bool


def repairs(fleet: Fleet, nodes: Mapping[str, NodeMemory], settings: Settings) -> Repairs:
    """Each node's verdict, and its repair where the verdict has held `confirmations` ticks and its pool's
    disruption budget allows: the dead first, then hung nodes past their restart, then restarts."""
    now = fleet.now
    pools = {p.name: p for p in fleet.pools}
    node_memory = dict(nodes)
    decisions: list[NodeDecision] = []
    held_back: list[Alert] = []
    # Repairs already under way in each pool: the group's own replacements, our restarts still in
    # their grace, our replacements the cloud does not show yet.
    in_flight = {name: pool.replacing for name, pool in pools.items()}
    judged: list[tuple[Node, Row, NodeMemory]] = []
    for node in fleet.nodes:
        before = node_memory.get(node.instance_id, NodeMemory())
        row, after = judge(node.signals, before, now, settings)
        judged.append((node, row, after))
        waiting = before.replaced_at is not None and node.signals.cloud is Cloud.RUNNING
        if row.verdict is Verdict.RESTARTING or waiting:
            in_flight[node.pool] = in_flight.get(node.pool, 0) + 1
    no_quorum = any(row.verdict is Verdict.NO_QUORUM for _, row, _ in judged)
    order = {Verdict.DEAD: 0, Verdict.HUNG_AFTER_RESTART: 1, Verdict.HUNG: 2}
    judged.sort(key=lambda item: (order.get(item[1].verdict, 3), item[0].instance_id))
    for node, row, after in judged:
        action, why, held = row.action, row.why, False
        destructive = action in (Action.REPLACE, Action.RESTART)
        requested = after.replaced_at is not None and action is Action.REPLACE
        if requested and now - (after.replaced_at or now) < REREQUEST_S:
            action = Action.NONE
            why = f"{row.why}; replacement requested, waiting for the group"
        elif requested:
            after = replace(after, replaced_at=now)  # already counted in flight
        elif destructive and after.streak < settings.confirmations:
            action = Action.NONE
            why = f"{row.why} (tick {after.streak} of {settings.confirmations})"
        elif destructive:
            pool = pools.get(node.pool)
            budget = disruption_budget(pool, settings.max_share) if pool else 1
            if in_flight.get(node.pool, 0) >= budget:
                held = True
                why = (
                    f"{row.why}; held: {in_flight.get(node.pool, 0)} of {budget} nodes of pool "
                    f"{node.pool} already under repair (maxShare {settings.max_share:g})"
                )
                held_back.append(
                    Alert(
                        f"held:{node.pool}",
                        f"fleet controller holding back repairs in pool {node.pool}",
                        {"instance": node.instance_id, "verdict": row.verdict.value, "why": why},
                    )
                )
            else:
                in_flight[node.pool] = in_flight.get(node.pool, 0) + 1
                if action is Action.RESTART:
                    after = replace(after, restarted_at=now)
                else:
                    after = replace(after, replaced_at=now)
        node_memory[node.instance_id] = after
        decisions.append(
            NodeDecision(node.instance_id, node.pool, row.verdict, action, why, node.signals, held)
        )
    # Forget what is no longer a node of any pool (its instance left the groups).
    present = {node.instance_id for node in fleet.nodes}
    kept = {k: v for k, v in node_memory.items() if k in present and not v.is_empty()}
    return Repairs(tuple(decisions), kept, tuple(held_back), no_quorum)


def capacity(
    fleet: Fleet, decisions: Iterable[NodeDecision], settings: Settings
) -> tuple[tuple[CapacityRaise, ...], tuple[Alert, ...]]:
    """The raises of desired capacity that bring each model back to its fewest ready replicas, and an
    alert for every model below it (a group already at its maximum gets the alert only)."""
    below = list(_below_minimum(fleet, decisions, settings))
    short = tuple(
        Alert(
            f"minimum:{r.model}",
            f"{r.model}: {r.ready} ready replicas, minimum {r.minimum}",
            {
                "pool": r.pool,
                "group": r.group,
                "desired": r.desired,
                "newDesired": r.new_desired,
                "coming": r.coming,
                "atMax": r.new_desired == r.desired,
            },
        )
        for r in below
    )
    return tuple(r for r in below if r.new_desired > r.desired), short


@dataclass(frozen=True)
class Orphans:
    seen: tuple[str, ...]  # every orphan of this pass (reported)
    terminate: tuple[str, ...]  # those past their grace, a share of the fleet at a time
    since: Mapping[str, float]  # when each was first seen
    alerts: tuple[Alert, ...]


def orphans(fleet: Fleet, since: Mapping[str, float], no_quorum: bool, settings: Settings) -> Orphans:
    """Instances tagged for the fleet in no group: reported, then terminated past `orphan_grace_s`
    (never one on hold, never without quorum). Only reconciliation passes see them."""
    if fleet.orphans is None:
        return Orphans((), (), since, ())
    now = fleet.now
    seen = tuple(o.instance_id for o in fleet.orphans)
    first_seen = {o.instance_id: since.get(o.instance_id, now) for o in fleet.orphans}
    size = sum(max(p.desired, p.instances) for p in fleet.pools) + len(fleet.orphans)
    allowed = max(1, math.floor(settings.max_share * size))
    terminate: list[str] = []
    for orphan in sorted(fleet.orphans, key=lambda o: o.launched_at):
        due = now - first_seen[orphan.instance_id] >= settings.orphan_grace_s
        if due and not orphan.hold and not no_quorum and len(terminate) < allowed:
            terminate.append(orphan.instance_id)
    notices: list[Alert] = []
    if terminate:
        text = f"fleet controller terminating {len(terminate)} orphan instance(s)"
        notices.append(
            Alert(f"orphans:{','.join(terminate)}", text, {"terminate": terminate, "orphans": list(seen)})
        )
    return Orphans(seen, tuple(terminate), first_seen, tuple(notices))


def ghosts(fleet: Fleet, decisions: Iterable[NodeDecision]) -> tuple[str, ...]:
    """Heartbeat entries to remove: nodes judged ghosts, and (on reconciliation passes) index entries
    whose instance is gone and whose record has expired."""
    forget = [d.instance_id for d in decisions if d.action is Action.FORGET]
    if fleet.ghosts is not None:
        forget += [g for g in fleet.ghosts if g not in forget]
    return tuple(forget)


def alerts(
    candidates: Iterable[Alert], sent: Mapping[str, float], now: float, settings: Settings
) -> tuple[tuple[Alert, ...], dict[str, float]]:
    """The alerts due (one per key per `alert_every_s`), and when each key was last sent."""
    last_sent = dict(sent)
    due: list[Alert] = []
    for alert in candidates:
        last = last_sent.get(alert.key)
        if last is None or now - last >= settings.alert_every_s:
            due.append(alert)
            last_sent[alert.key] = now
    return tuple(due), {k: t for k, t in last_sent.items() if now - t < settings.alert_every_s}


def _below_minimum(
    fleet: Fleet, decisions: Iterable[NodeDecision], settings: Settings
) -> Iterable[CapacityRaise]:
    """A model below its minimum of ready nodes: raise the first of its pools with headroom."""
    by_pool: dict[str, list[NodeDecision]] = {}
    for d in decisions:
        by_pool.setdefault(d.pool, []).append(d)
    for model, minimum in sorted(settings.min_ready.items()):
        pools = [p for p in fleet.pools if p.model == model]
        if not pools:
            continue
        ready = coming = 0
        for pool in pools:
            for d in by_pool.get(pool.name, []):
                s = d.signals
                if d.verdict is Verdict.HEALTHY and s.ready:
                    ready += 1
                elif d.verdict is Verdict.BOOTING or (
                    d.verdict is Verdict.HEALTHY and s.agent_state in COMING_AGENT_STATES
                ):
                    coming += 1
            # Capacity the group is already launching.
            coming += max(0, pool.desired - pool.instances)
        deficit = minimum - ready - coming
        if deficit <= 0:
            continue
        target = next((p for p in pools if p.desired < p.max_size), pools[0])
        yield CapacityRaise(
            pool=target.name,
            group=target.group,
            model=model,
            desired=target.desired,
            new_desired=min(target.max_size, target.desired + deficit),
            ready=ready,
            coming=coming,
            minimum=minimum,
        )
