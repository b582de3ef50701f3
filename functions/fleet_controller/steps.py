"""The tick's steps over a region, after each node's row of the table (decision.py): repairs (held to
each pool's disruption share), capacity (each model's fewest ready nodes: missing nodes only), orphans,
ghosts, and the alerts that are due; `plan` runs them. Pure logic, no I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from .decision import (
    DEFAULT_WARM_LIMIT_S,
    REPAIR_ORDER,
    REREQUEST_S,
    Action,
    Cloud,
    NodeMemory,
    Row,
    Settings,
    Signals,
    Verdict,
    judge,
)


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
    # How long a node may be on its way to ready (starting, warming) once it answers.
    warm_limit_s: float = DEFAULT_WARM_LIMIT_S


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
    # Nodes there but not ready (not ready, dead, hung: repaired, not compensated for).
    repairing: int = 0
    # Nodes that do not exist and would bring the model to its minimum.
    missing: int = 0


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
        pool = pools.get(node.pool)
        warm_limit_s = pool.warm_limit_s if pool else DEFAULT_WARM_LIMIT_S
        row, after = judge(node.signals, before, now, settings, warm_limit_s)
        judged.append((node, row, after))
        waiting = before.replaced_at is not None and node.signals.cloud is Cloud.RUNNING
        if row.verdict is Verdict.RESTARTING or waiting:
            in_flight[node.pool] = in_flight.get(node.pool, 0) + 1
    no_quorum = any(row.verdict is Verdict.NO_QUORUM for _, row, _ in judged)
    judged.sort(key=lambda item: (REPAIR_ORDER.get(item[1].verdict, len(REPAIR_ORDER)), item[0].instance_id))
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
    alert for every model below it even counting the nodes on their way. Only missing nodes raise
    desired capacity: a node that is there but not ready (not ready, dead, hung) is repaired, so it never
    ratchets the group up to its maximum. A group already at its maximum gets the alert only."""
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
                "repairing": r.repairing,
                "missing": r.missing,
                "atMax": r.new_desired < r.desired + r.missing,
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
    """A model whose ready nodes and nodes on their way fall short of its minimum: the raise that adds
    the nodes it lacks (to the first of its pools with headroom), none for nodes under repair."""
    by_pool: dict[str, list[NodeDecision]] = {}
    for d in decisions:
        by_pool.setdefault(d.pool, []).append(d)
    for model, minimum in sorted(settings.min_ready.items()):
        pools = [p for p in fleet.pools if p.model == model]
        if not pools:
            continue
        ready = coming = repairing = 0
        for pool in pools:
            for d in by_pool.get(pool.name, []):
                s = d.signals
                if s.serving:
                    ready += 1
                elif d.verdict in (Verdict.BOOTING, Verdict.WARMING):
                    coming += 1
                elif s.cloud is Cloud.RUNNING and d.verdict is not Verdict.DRAINING:
                    repairing += 1  # there, not ready: repaired where it stays so, never compensated for
            # Capacity the group is already launching (replacements of what it terminates included).
            coming += max(0, pool.desired - pool.instances)
        if ready + coming >= minimum:
            continue
        missing = max(0, minimum - ready - coming - repairing)
        target = next((p for p in pools if p.desired < p.max_size), pools[0])
        yield CapacityRaise(
            pool=target.name,
            group=target.group,
            model=model,
            desired=target.desired,
            new_desired=min(target.max_size, target.desired + missing),
            ready=ready,
            coming=coming,
            minimum=minimum,
            repairing=repairing,
            missing=missing,
        )
