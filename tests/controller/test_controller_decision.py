"""The fleet controller's decision table, row by row, and what `plan` adds to it: confirmations over ticks,
the one restart, the not-ready grace and the warm-up limit, the disruption budget, the fewest ready
replicas (never raised for nodes that are there but not ready), orphans and ghosts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from functions.fleet_controller.decision import (
    TABLE,
    Action,
    Cloud,
    Lb,
    NodeMemory,
    Pull,
    Push,
    Restart,
    Settings,
    Signals,
    Verdict,
    judge,
)
from functions.fleet_controller.steps import Fleet, Memory, Node, Orphan, Plan, Pool, plan

T0 = 1_800_000_000.0
SETTINGS = Settings(
    tick_s=10,
    confirmations=2,
    restart_grace_s=60,
    leave_alone_s=300,
    orphan_grace_s=600,
    max_share=0.34,
    not_ready_grace_s=120,
)
WARM_LIMIT_S = 300.0
RUNNING = Cloud.RUNNING
HEALTHY = Signals(RUNNING, Push.LIVE, Pull.ANSWERS, Lb.HEALTHY, "ready", True)
# What the agent answers after an XID 79: /readyz 503, state degraded; heartbeats go on.
DEGRADED = Signals(RUNNING, Push.LIVE, Pull.ANSWERS, Lb.UNHEALTHY, "degraded", False)
WARMING = Signals(RUNNING, Push.LIVE, Pull.ANSWERS, Lb.UNHEALTHY, "warming", False)
KILLED = Signals(RUNNING, Push.SILENT, Pull.REFUSED, Lb.UNHEALTHY)
SILENT = Signals(RUNNING, Push.SILENT, Pull.HUNG, Lb.UNHEALTHY)
RESTARTED = NodeMemory(restarted_at=T0 - 10)
RESTART_SPENT = NodeMemory(restarted_at=T0 - 120)

# One case per row of the table, in the table's order: the signals, the memory, what follows.
ROWS = [
    ("cloud unknown", Signals(Cloud.UNKNOWN, Push.SILENT, Pull.REFUSED), NodeMemory(), Verdict.NO_QUORUM, Action.NONE),
    ("Redis down", Signals(RUNNING, Push.UNKNOWN, Pull.REFUSED), NodeMemory(), Verdict.NO_QUORUM, Action.NONE),
    ("draining for a spot notice", replace(SILENT, agent_state="draining"), NodeMemory(), Verdict.DRAINING, Action.NONE),
    ("the group replacing it", replace(KILLED, cloud=Cloud.LEAVING), NodeMemory(), Verdict.LEAVING, Action.NONE),
    ("booting", replace(KILLED, cloud=Cloud.STARTING), NodeMemory(), Verdict.BOOTING, Action.NONE),
    ("ghost", replace(KILLED, cloud=Cloud.GONE), NodeMemory(), Verdict.GHOST, Action.FORGET),
    ("cloud says gone, heartbeat live", replace(HEALTHY, cloud=Cloud.GONE), NodeMemory(), Verdict.CLOUD_LAG, Action.NONE),
    ("all agree healthy", HEALTHY, NodeMemory(), Verdict.HEALTHY, Action.NONE),
    ("warming", WARMING, NodeMemory(), Verdict.WARMING, Action.NONE),
    ("degraded, within the grace", DEGRADED, NodeMemory(unready_since=T0 - 60), Verdict.NOT_READY, Action.NONE),
    ("warming past the limit", WARMING, NodeMemory(unready_since=T0 - 300), Verdict.STUCK_WARMING, Action.REPLACE),
    ("degraded past the grace", DEGRADED, NodeMemory(unready_since=T0 - 120), Verdict.NOT_READY_TOO_LONG, Action.REPLACE),
    ("all agree dead", KILLED, NodeMemory(), Verdict.DEAD, Action.REPLACE),
    ("running but silent", SILENT, NodeMemory(), Verdict.HUNG, Action.RESTART),
    ("restart under way", SILENT, RESTARTED, Verdict.RESTARTING, Action.NONE),
    ("silent after its restart", SILENT, RESTART_SPENT, Verdict.HUNG_AFTER_RESTART, Action.REPLACE),
    ("signals disagree", replace(KILLED, lb=Lb.HEALTHY), NodeMemory(), Verdict.DEGRADED, Action.NONE),
]  # fmt: skip


def test_the_cases_cover_every_row_of_the_table() -> None:
    hit = [judge(signals, memory, T0, SETTINGS, WARM_LIMIT_S)[0] for _, signals, memory, _, _ in ROWS]
    assert hit == list(TABLE)


@pytest.mark.parametrize(
    ("signals", "memory", "verdict", "action"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_each_row(signals: Signals, memory: NodeMemory, verdict: Verdict, action: Action) -> None:
    row, _ = judge(signals, memory, T0, SETTINGS, WARM_LIMIT_S)
    assert (row.verdict, row.action) == (verdict, action)


@pytest.mark.parametrize(
    ("signals", "verdict"),
    [
        # Any live signal saves a node from "dead": its heartbeat, its answer, the load balancer's verdict
        # (an answer "not ready" gets the not-ready grace instead).
        (replace(KILLED, push=Push.LIVE), Verdict.DEGRADED),
        (replace(KILLED, pull=Pull.ANSWERS), Verdict.NOT_READY),
        (replace(SILENT, lb=Lb.HEALTHY), Verdict.DEGRADED),
        # Not reachable at all (no address): not enough to act on.
        (replace(KILLED, pull=Pull.UNKNOWN), Verdict.DEGRADED),
        # An agent that answers not ready has its grace; its answer counts, whatever its heartbeat.
        (DEGRADED, Verdict.NOT_READY),
        (replace(DEGRADED, push=Push.SILENT), Verdict.NOT_READY),
        (replace(WARMING, agent_state="starting"), Verdict.WARMING),
        # Ready by its answer, but its heartbeat expired: the signals disagree.
        (replace(HEALTHY, push=Push.SILENT), Verdict.DEGRADED),
        # The load balancer draining it, or its last record saying stopped.
        (replace(KILLED, lb=Lb.DRAINING), Verdict.DRAINING),
        (replace(KILLED, agent_state="stopped"), Verdict.DRAINING),
        # No verdict from the load balancer (no target group) does not stop an agreed death.
        (replace(KILLED, lb=Lb.UNKNOWN), Verdict.DEAD),
    ],
)
def test_disagreement_and_partial_signals(signals: Signals, verdict: Verdict) -> None:
    assert judge(signals, NodeMemory(), T0, SETTINGS)[0].verdict is verdict


# --- plan: over ticks and over a pool -------------------------------------------------------------------


def pool(
    name: str = "a", *, desired: int = 3, max_size: int = 6, replacing: int = 0, model: str = "m"
) -> Pool:
    return Pool(name, f"group-{name}", model, desired, max_size, instances=desired, replacing=replacing)


def tick(
    nodes: dict[str, Signals], memory: Memory, at: float, pools: tuple[Pool, ...] = (), **strays: tuple
) -> Plan:
    """One tick over one pool (three nodes' worth unless given), with orphans/ghosts on reconciliation."""
    pools = pools or (pool(desired=max(3, len(nodes))),)
    fleet = Fleet(at, pools, tuple(Node(i, pools[0].name, s) for i, s in nodes.items()), **strays)
    return plan(fleet, memory, SETTINGS)


def acts(p: Plan) -> dict[str, Action]:
    return {d.instance_id: d.action for d in p.nodes if d.acts}


def test_a_dead_node_is_replaced_on_its_second_tick_once() -> None:
    nodes = {"i-1": KILLED, "i-2": HEALTHY, "i-3": HEALTHY}
    first = tick(nodes, Memory(), T0)
    assert acts(first) == {}  # one tick of two
    second = tick(nodes, first.memory, T0 + 10)
    assert acts(second) == {"i-1": Action.REPLACE}
    # The cloud has not caught up yet: not requested again, and counted as under repair.
    third = tick(nodes, second.memory, T0 + 20)
    assert acts(third) == {}
    assert "replacement requested" in next(d.why for d in third.nodes if d.instance_id == "i-1")


def test_a_node_back_to_health_no_longer_counts_as_under_repair() -> None:
    memory = Memory(
        nodes={"i-1": NodeMemory(replaced_at=T0 - 20), "i-2": NodeMemory(streak=1, last_suspect=T0 - 10)}
    )
    back = tick({"i-1": HEALTHY, "i-2": KILLED, "i-3": HEALTHY}, memory, T0)
    assert acts(back) == {}  # this tick i-1's request still counts
    again = tick({"i-1": HEALTHY, "i-2": KILLED, "i-3": HEALTHY}, back.memory, T0 + 10)
    assert acts(again) == {"i-2": Action.REPLACE}


def test_a_streak_broken_by_a_long_gap_starts_again() -> None:
    first = tick({"i-1": KILLED}, Memory(), T0)
    late = tick({"i-1": KILLED}, first.memory, T0 + 10 * 4)
    assert acts(late) == {}


def test_a_silent_node_is_restarted_once_then_replaced() -> None:
    nodes = {"i-1": SILENT, "i-2": HEALTHY, "i-3": HEALTHY}
    memory, at, seen = Memory(), T0, []
    for _ in range(10):
        p = tick(nodes, memory, at)
        seen += [(at - T0, a) for a in acts(p).values()]
        memory, at = p.memory, at + 10
    # The restart on the second tick; the replacement on the first tick once its 60 s grace is over.
    assert seen == [(10, Action.RESTART), (70, Action.REPLACE)]


def test_a_second_hang_within_the_hour_is_not_restarted_again() -> None:
    memory = Memory(nodes={"i-1": NodeMemory(restarted_at=T0 - 1800, streak=1, last_suspect=T0 - 10)})
    assert acts(tick({"i-1": SILENT}, memory, T0)) == {"i-1": Action.REPLACE}


def test_a_node_that_recovers_resets_its_streak() -> None:
    first = tick({"i-1": KILLED}, Memory(), T0)
    back = tick({"i-1": HEALTHY}, first.memory, T0 + 10)
    again = tick({"i-1": KILLED}, back.memory, T0 + 20)
    assert acts(again) == {}


@pytest.mark.parametrize(("size", "allowed"), [(3, 1), (6, 2), (10, 3), (1, 1)])
def test_repairs_never_exceed_the_share_of_a_pool(size: int, allowed: int) -> None:
    """A controller that sees every node dead (its own network broken, say) repairs a third of the pool."""
    nodes = {f"i-{n}": KILLED for n in range(size)}
    memory = Memory(nodes={i: NodeMemory(streak=1, last_suspect=T0 - 10) for i in nodes})
    p = tick(nodes, memory, T0, (pool(desired=size),))
    assert len(acts(p)) == allowed
    held = [d for d in p.nodes if d.held]
    assert len(held) == size - allowed and all("held" in d.why for d in held)
    assert [a.key for a in p.alerts] == (["held:a"] if held else [])


def test_the_groups_own_replacements_count_against_the_share() -> None:
    nodes = {"i-1": KILLED, "i-2": HEALTHY, "i-3": HEALTHY}
    memory = Memory(nodes={"i-1": NodeMemory(streak=1, last_suspect=T0 - 10)})
    p = tick(nodes, memory, T0, (pool(desired=3, replacing=1),))
    assert acts(p) == {} and p.nodes[0].held


def test_restarts_under_way_count_against_the_share() -> None:
    nodes = {"i-1": SILENT, "i-2": KILLED, "i-3": HEALTHY}
    memory = Memory(
        nodes={"i-1": RESTARTED, "i-2": NodeMemory(streak=1, last_suspect=T0 - 10)},
    )
    assert acts(tick(nodes, memory, T0)) == {}


def test_no_quorum_anywhere_means_no_action_anywhere() -> None:
    nodes = {"i-1": replace(KILLED, push=Push.UNKNOWN), "i-2": replace(SILENT, push=Push.UNKNOWN)}
    memory = Memory(nodes={i: NodeMemory(streak=5, last_suspect=T0 - 10) for i in nodes})
    p = tick(nodes, memory, T0, orphans=(Orphan("i-9", T0 - 7200),), ghosts=())
    assert p.no_quorum and acts(p) == {} and p.terminate == () and p.raises == ()
    assert p.memory.nodes == memory.nodes  # nothing forgotten while blind


def test_a_node_seen_draining_is_left_alone_after_its_agent_goes_quiet() -> None:
    draining = tick({"i-1": replace(HEALTHY, agent_state="draining", ready=False)}, Memory(), T0)
    memory, at = draining.memory, T0
    for _ in range(5):  # the drain ends, the agent exits, the instance still runs: no repair
        at += 10
        p = tick({"i-1": KILLED}, memory, at)
        assert acts(p) == {} and p.nodes[0].verdict is Verdict.DRAINING
        memory = p.memory
    # Long after (the instance should have gone): an ordinary dead node.
    later = tick({"i-1": KILLED}, memory, T0 + SETTINGS.leave_alone_s + 10)
    later = tick({"i-1": KILLED}, later.memory, T0 + SETTINGS.leave_alone_s + 20)
    assert acts(later) == {"i-1": Action.REPLACE}


# --- the fewest ready replicas ------------------------------------------------------------------------------


MIN2 = replace(SETTINGS, min_ready={"m": 2})


def test_a_missing_node_raises_its_group_within_max_and_alerts() -> None:
    """Scaled in below the model's minimum (one node where two are wanted): one more is launched."""
    fleet = Fleet(T0, (pool(desired=1, max_size=4),), (Node("i-1", "a", HEALTHY),))
    p = plan(fleet, Memory(), MIN2)
    (raised,) = p.raises
    assert (raised.group, raised.desired, raised.new_desired, raised.ready) == ("group-a", 1, 2, 1)
    assert [a.key for a in p.alerts] == ["minimum:m"]
    # The next tick sees the launch under way (desired above its instances): no second raise, no alert.
    fleet = replace(fleet, now=T0 + 10, pools=(replace(pool(desired=2, max_size=4), instances=1),))
    assert plan(fleet, p.memory, MIN2).raises == () and plan(fleet, p.memory, MIN2).alerts == ()


def test_a_degraded_node_is_replaced_after_its_grace_and_never_raises_capacity() -> None:
    """XID 79 on one of two nodes of a model that keeps two: the node is replaced once the not-ready grace
    is over (and its verdict confirmed), and desired capacity never moves for it."""
    nodes = {"i-1": HEALTHY, "i-2": DEGRADED}
    memory, at, seen, raises = Memory(), T0, [], []
    for _ in range(16):
        fleet = Fleet(at, (pool(desired=2, max_size=6),), tuple(Node(i, "a", s) for i, s in nodes.items()))
        p = plan(fleet, memory, MIN2)
        seen += [(at - T0, i, a) for i, a in acts(p).items()]
        raises += p.raises
        memory, at = p.memory, at + 10
    # Its clock starts at the first tick (T0); overdue at T0 + 120; the second tick past it replaces it.
    assert seen == [(130, "i-2", Action.REPLACE)]
    assert raises == []
    # The group replaces it (launch before terminate): still no raise, the replacement counts as coming.
    nodes = {
        "i-1": HEALTHY,
        "i-2": replace(DEGRADED, cloud=Cloud.LEAVING),
        "i-3": replace(WARMING, cloud=Cloud.STARTING),
    }
    fleet = Fleet(
        at,
        (replace(pool(desired=2, max_size=6), instances=2, replacing=1),),
        tuple(Node(i, "a", s) for i, s in nodes.items()),
    )
    assert plan(fleet, memory, MIN2).raises == ()


def test_degraded_nodes_held_by_the_share_do_not_ratchet_capacity_up() -> None:
    """A bad image: every node of the model degrades. A third are replaced at a time, the rest wait, and
    desired capacity stays where it is (the alert says the model is short)."""
    nodes = {f"i-{n}": DEGRADED for n in range(3)}
    memory = Memory(
        nodes={i: NodeMemory(unready_since=T0 - 200, streak=1, last_suspect=T0 - 10) for i in nodes}
    )
    fleet = Fleet(T0, (pool(desired=3, max_size=8),), tuple(Node(i, "a", s) for i, s in nodes.items()))
    p = plan(fleet, memory, replace(SETTINGS, min_ready={"m": 3}))
    assert len(acts(p)) == 1 and sum(d.held for d in p.nodes) == 2
    assert p.raises == ()
    (short,) = [a for a in p.alerts if a.key == "minimum:m"]
    assert short.detail["repairing"] == 3 and short.detail["newDesired"] == 3


def test_a_node_stuck_warming_past_its_pools_limit_is_replaced() -> None:
    slow = Pool("a", "group-a", "m", 3, 6, instances=3, warm_limit_s=WARM_LIMIT_S)
    memory, at, seen = Memory(), T0, []
    for _ in range(35):
        fleet = Fleet(at, (slow,), (Node("i-1", "a", WARMING), Node("i-2", "a", HEALTHY)))
        p = plan(fleet, memory, SETTINGS)
        seen += [(at - T0, a) for a in acts(p).values()]
        memory, at = p.memory, at + 10
    assert seen == [(310, Action.REPLACE)]


def test_a_node_ready_again_starts_its_clock_afresh() -> None:
    first = tick({"i-1": DEGRADED}, Memory(), T0)
    assert first.memory.nodes["i-1"].unready_since == T0
    back = tick({"i-1": HEALTHY}, first.memory, T0 + 100)
    assert "i-1" not in back.memory.nodes  # nothing left worth remembering
    again = tick({"i-1": DEGRADED}, back.memory, T0 + 110)
    assert again.nodes[0].verdict is Verdict.NOT_READY and again.memory.nodes["i-1"].unready_since == T0 + 110


def test_nodes_on_their_way_count_and_a_group_at_max_only_alerts() -> None:
    fleet = Fleet(T0, (pool(desired=2),), (Node("i-1", "a", HEALTHY), Node("i-2", "a", WARMING)))
    assert plan(fleet, Memory(), MIN2).raises == ()
    full = Fleet(T0, (pool(desired=2, max_size=2),), (Node("i-1", "a", HEALTHY),))
    p = plan(full, Memory(), MIN2)
    assert p.raises == () and p.alerts[0].detail["atMax"] is True


def test_the_raise_goes_to_a_pool_of_the_model_with_headroom() -> None:
    pools = (pool("a", desired=2, max_size=2), pool("b", desired=1, max_size=3))
    fleet = Fleet(T0, pools, (Node("i-1", "a", HEALTHY),))
    (raised,) = plan(fleet, Memory(), replace(SETTINGS, min_ready={"m": 3})).raises
    assert (raised.pool, raised.new_desired) == ("b", 3)


# --- orphans and ghosts ----------------------------------------------------------------------------------


def test_orphans_are_reported_then_terminated_past_their_grace_a_share_at_a_time() -> None:
    kept = Orphan("i-keep", T0 - 7200, hold=True)
    orphans = (*(Orphan(f"i-o{n}", T0 - 7200) for n in range(4)), kept)
    first = tick({"i-1": HEALTHY}, Memory(), T0, orphans=orphans, ghosts=())
    assert first.terminate == () and set(first.orphans) == {o.instance_id for o in orphans}
    # Between reconciliation passes nothing happens to them.
    between = tick({"i-1": HEALTHY}, first.memory, T0 + 300)
    assert between.terminate == () and between.memory.orphans_since == first.memory.orphans_since
    due = tick({"i-1": HEALTHY}, first.memory, T0 + 600, orphans=orphans, ghosts=())
    # 3 pool nodes + 5 orphans: a third of 8 is 2 at a time, oldest first; the held one never.
    assert len(due.terminate) == 2 and "i-keep" not in due.terminate
    assert due.alerts and due.alerts[0].subject.endswith("2 orphan instance(s)")


def test_an_instance_back_in_a_group_is_no_longer_an_orphan() -> None:
    first = tick({}, Memory(), T0, orphans=(Orphan("i-o1", T0),), ghosts=())
    later = tick({}, first.memory, T0 + 900, orphans=(), ghosts=())
    assert later.terminate == () and later.memory.orphans_since == {}


def test_ghosts_are_forgotten() -> None:
    p = tick({"i-1": replace(KILLED, cloud=Cloud.GONE)}, Memory(), T0, orphans=(), ghosts=("i-old",))
    assert set(p.forget) == {"i-1", "i-old"}


def test_restart_phase_boundaries() -> None:
    from functions.fleet_controller.decision import restart_phase

    assert restart_phase(NodeMemory(), T0, SETTINGS) is Restart.NOT_TRIED
    assert restart_phase(NodeMemory(restarted_at=T0 - 59), T0, SETTINGS) is Restart.PENDING
    assert restart_phase(NodeMemory(restarted_at=T0 - 60), T0, SETTINGS) is Restart.SPENT
    assert restart_phase(NodeMemory(restarted_at=T0 - 3601), T0, SETTINGS) is Restart.NOT_TRIED
