"""The prober's decision as a table: each row is what the standby observes, every 10 s, and what it must do.
Observations are (writer answers over the peering?, the primary's endpoint as Route53 sees it, the writer's
heartbeat on the standby's own replica)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from functions.failover_prober.decision import (
    Action,
    Cluster,
    Heartbeat,
    Lag,
    Observation,
    Record,
    Settings,
    Streak,
    Watch,
    decide,
    is_stale,
    lag_at,
    still_lost,
)

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
SETTINGS = Settings(promote_after_seconds=60, rpo_seconds=20, detection_seconds=76)
STEP = 10  # seconds between observations, as the prober probes
STALE_AFTER = 30
# The writer's last beat in a region loss: just before the first observation.
LAST_BEAT = T0 - timedelta(seconds=35)
# Readings of the standby's RPO lag, one a minute, from well before the loss.
STEADY_LAG = [Lag(0.4, T0 - timedelta(minutes=m)) for m in range(2, 6)]

LOST = (False, "failing", "stopped")
GATEWAY_DOWN = (True, "failing", "advancing")
PEERING_DOWN = (False, "healthy", "advancing")
# The case: a standing break of the peering plus an unrelated Route53 failure, the writer alive.
PEERING_AND_GATEWAY_DOWN = (False, "failing", "advancing")
HEALTHY = (True, "healthy", "advancing")


def heartbeat(status: str, now: datetime) -> Heartbeat:
    if status == "unknown":
        return Heartbeat("unknown")
    last_beat = now - timedelta(seconds=2) if status == "advancing" else LAST_BEAT
    return Heartbeat.read(last_beat, (now - last_beat).total_seconds(), STALE_AFTER)


def observation(now: datetime, signals: tuple[bool, str, str]) -> Observation:
    writer, status, beat = signals
    return Observation(now, writer, status, heartbeat(beat, now))  # type: ignore[arg-type]


@dataclass
class Run:
    """Feeds observations to the decision as the prober does, with the database reacting to a failover."""

    lags: list[Lag] = field(default_factory=lambda: list(STEADY_LAG))
    record: Record = field(default_factory=Record)
    cluster: Cluster = field(default_factory=Cluster)
    actions: list[Action] = field(default_factory=list)
    decisions: list = field(default_factory=list)

    def feed(self, signals: Sequence[tuple[bool, str, str]]) -> list[Action]:
        watch = Watch()
        for i, seen in enumerate(signals):
            now = T0 + timedelta(seconds=i * STEP)
            observed = observation(now, seen)
            watch = watch.observe(observed)
            decision = decide(now, watch, observed, self.cluster, self.lags, self.record, SETTINGS)
            self.actions.append(decision.action)
            self.decisions.append(decision)
            if decision.action is Action.PROMOTE:
                # What RDS answers once the failover call is accepted.
                self.cluster = Cluster(moving_to_standby=True)
                self.record = Record("failover", "accepted")
        return self.actions


def promotions(actions: list[Action]) -> int:
    return actions.count(Action.PROMOTE)


ROWS = [
    # (name, observations, promotions, last action)
    ("healthy primary", [HEALTHY] * 20, 0, Action.NONE),
    ("gateway-only failure: the writer still answers", [GATEWAY_DOWN] * 30, 0, Action.NONE),
    ("writer lost from the standby, primary endpoint healthy", [PEERING_DOWN] * 30, 0, Action.NONE),
    ("peering broken and Route53 failing, the heartbeat advancing", [PEERING_AND_GATEWAY_DOWN] * 30, 0, Action.HOLD),
    ("region lost: promotes once, then sees the failover under way", [LOST] * 20, 1, Action.NONE),
    ("region lost, shorter than the agreement window", [LOST] * 6, 0, Action.WATCH),
    ("flapping: lost and back every other probe", [LOST, HEALTHY] * 15, 0, Action.NONE),
    ("flapping: the writer answers now and then", ([LOST] * 5 + [GATEWAY_DOWN]) * 5, 0, Action.NONE),
    ("the heartbeat advances now and then", ([LOST] * 5 + [PEERING_AND_GATEWAY_DOWN]) * 5, 0, Action.HOLD),
    ("Route53's answer unknown (DNS down) never counts as failing", [(False, "unknown", "stopped")] * 30, 0, Action.NONE),
    ("the heartbeat unreadable never counts as stopped", [(False, "failing", "unknown")] * 30, 0, Action.HOLD),
    ("the heartbeat stopped alone: its writer or replication broken", [(True, "healthy", "stopped")] * 30, 0, Action.NONE),
]  # fmt: skip


@pytest.mark.parametrize(("signals", "count", "last"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_the_prober_promotes_only_when_all_three_witnesses_agree_long_enough(signals, count, last):
    actions = Run().feed(signals)
    assert promotions(actions) == count
    assert actions[-1] is last


def test_region_lost_promotes_exactly_when_the_agreement_window_is_full():
    actions = Run().feed([LOST] * 8)
    # Observations at 0, 10, ... 70 s: 60 s of agreement is reached at the seventh.
    assert actions == [Action.WATCH] * 6 + [Action.PROMOTE, Action.NONE]


def test_peering_broken_and_route53_failing_holds_for_a_person_and_says_the_writer_lives():
    run = Run()
    actions = run.feed([PEERING_AND_GATEWAY_DOWN] * 10)
    # Watched for the agreement window, then held (the handler tells a person once: tests/functions/
    # test_prober_handler.py), never promoted.
    assert actions == [Action.WATCH] * 6 + [Action.HOLD] * 4
    assert "the writer is alive, its heartbeat still advances" in run.decisions[-1].reason


@pytest.mark.parametrize("every", [2, 3, 6, 7])
def test_a_heartbeat_that_advances_at_all_never_lets_the_region_count_as_lost(every):
    # Whatever else the witnesses say, one advancing beat in each window restarts the agreement.
    signals = [PEERING_AND_GATEWAY_DOWN if i % every == 0 else LOST for i in range(60)]
    assert promotions(Run().feed(signals)) == 0
    # And the re-check right before the lossy call sees it too.
    before = decide(
        T0 + timedelta(seconds=60),
        Watch(Streak(T0), Streak(T0), LAST_BEAT),
        observation(T0, LOST),
        Cluster(),
        STEADY_LAG,
        Record(),
        SETTINGS,
    )
    assert before.action is Action.PROMOTE
    advancing = observation(T0 + timedelta(seconds=60), PEERING_AND_GATEWAY_DOWN)
    assert still_lost(before, advancing, Cluster()).action is Action.NONE


def test_the_lag_that_counts_is_from_when_the_writer_was_last_seen_not_the_newest():
    # Once the writer is gone the RPO lag rises with the clock; only the readings from before its last beat
    # say what a failover loses.
    rising = [
        Lag(0.4, LAST_BEAT - timedelta(seconds=90)),  # the minute before the last beat: within the RPO
        Lag(12.0, LAST_BEAT - timedelta(seconds=30)),  # its minute ends after the last beat: not counted
        Lag(45.0, T0),
        Lag(105.0, T0 + timedelta(minutes=1)),
    ]
    run = Run(lags=rising)
    actions = run.feed([LOST] * 8)
    assert promotions(actions) == 1
    promoted = run.decisions[actions.index(Action.PROMOTE)]
    assert promoted.lag == rising[0]
    # The newest reading, or even the one from the streak's start, would have held every real region loss.
    assert lag_at(rising, T0 + timedelta(seconds=60), SETTINGS).seconds == 45.0
    assert lag_at(rising, T0, SETTINGS).seconds == 12.0


@pytest.mark.parametrize("reading_shows_it", [True, False])
def test_replication_cut_while_the_writer_lives_counts_what_it_committed_since(reading_shows_it):
    # Replication to the standby stops (its heartbeat with it) while the probe over the peering still
    # reaches the writer; later the region goes. The writer's commits since the cut are what a failover
    # loses: the lag when it last answered, not when its last beat arrived. The heartbeat shows it even
    # before a lag reading covers the cut.
    cut = LAST_BEAT
    lags = [Lag(0.3, cut - timedelta(seconds=70))]
    if reading_shows_it:
        lags.append(Lag(45.0, cut + timedelta(seconds=50)))  # rising since the cut
    replication_cut = (True, "healthy", "stopped")
    run = Run(lags=lags)
    actions = run.feed([replication_cut] * 13 + [LOST] * 10)
    assert promotions(actions) == 0 and actions[-1] is Action.HOLD
    reason = run.decisions[-1].reason
    # Last answer at 120 s, last beat at -35 s: 155 s of commits the standby never got.
    assert "155.0 s behind" in reason and "over the 20 s RPO" in reason
    assert f"RPO lag {45.0 if reading_shows_it else 0.3:.1f} s" in reason


def test_a_lag_over_the_rpo_when_the_writer_was_last_seen_holds_the_promotion():
    over = [Lag(25.0, LAST_BEAT - timedelta(seconds=70)), Lag(0.3, T0 + timedelta(minutes=2))]
    run = Run(lags=over)
    actions = run.feed([LOST] * 10)
    assert promotions(actions) == 0 and actions[-1] is Action.HOLD
    assert (
        "25.0 s behind (RPO lag 25.0 s, heartbeat 0.0 s behind), over the 20 s RPO"
        in run.decisions[-1].reason
    )


def test_an_unknown_replication_lag_holds_the_promotion_for_a_person():
    for lags in ([], [Lag(0.2, T0 - timedelta(hours=1))], [Lag(None, T0 - timedelta(minutes=2))]):
        actions = Run(lags=lags).feed([LOST] * 10)
        assert promotions(actions) == 0
        assert actions[-1] is Action.HOLD


def test_a_writer_last_seen_long_before_the_witnesses_agreed_holds():
    # The heartbeat and the peering both broke an hour ago (the failover-safety alarm has said so since):
    # when the writer itself died, and the lag then, is unknown.
    watch = Watch(Streak(T0), Streak(T0), T0 - timedelta(hours=1))
    old = [Lag(0.1, T0 - timedelta(hours=1, minutes=2))]
    now = T0 + timedelta(seconds=70)
    decision = decide(now, watch, observation(now, LOST), Cluster(), old, Record(), SETTINGS)
    assert decision.action is Action.HOLD
    assert "the writer was last seen 3600 s before the witnesses agreed" in decision.reason
    # Within one region loss's detection, the same is an ordinary loss.
    recent = Watch(Streak(T0), Streak(T0), T0 - timedelta(seconds=70), T0 - timedelta(seconds=70))
    fresh = [Lag(0.1, T0 - timedelta(minutes=3))]
    assert (
        decide(now, recent, observation(now, LOST), Cluster(), fresh, Record(), SETTINGS).action
        is Action.PROMOTE
    )


@pytest.mark.parametrize(
    ("signals", "degraded"),
    [
        (HEALTHY, None),
        (LOST, None),
        (GATEWAY_DOWN, "witnesses disagree"),
        (PEERING_DOWN, "witnesses disagree"),
        (PEERING_AND_GATEWAY_DOWN, "witnesses disagree"),
        ((True, "healthy", "stopped"), "witnesses disagree"),
        ((True, "unknown", "advancing"), "Route53 unknown"),
        ((True, "healthy", "unknown"), "heartbeat unknown"),
        ((False, "unknown", "unknown"), "Route53 and heartbeat unknown"),
    ],
)
def test_failover_safety_is_degraded_when_a_witness_is_unknown_or_they_disagree(signals, degraded):
    found = observation(T0, signals).degraded
    assert (found or "").split(" (")[0] == (degraded or "")


def test_a_stale_event_is_ignored():
    assert is_stale(T0 - timedelta(seconds=61), T0, SETTINGS)
    assert is_stale(None, T0, SETTINGS)
    assert not is_stale(T0 - timedelta(seconds=5), T0, SETTINGS)


def test_a_retry_after_a_half_done_promotion_finishes_the_record():
    half_done = Run(record=Record("failover", "requested"), cluster=Cluster(moving_to_standby=True))
    assert half_done.feed([LOST]) == [Action.RECORD]
    finished = Run(record=Record("failover", "requested"), cluster=Cluster(standby_is_writer=True))
    assert finished.feed([HEALTHY]) == [Action.RECORD]
    # Already recorded: nothing more, whatever the witnesses say.
    done = Run(record=Record("failover", "accepted"), cluster=Cluster(standby_is_writer=True))
    assert done.feed([LOST] * 10) == [Action.NONE] * 10


def test_a_failover_to_another_member_is_left_alone():
    assert Run(cluster=Cluster(moving_to_standby=False)).feed([LOST] * 10) == [Action.NONE] * 10


def test_the_recheck_before_the_lossy_call_can_still_say_no():
    promote = Run().feed([LOST] * 7)[-1]
    assert promote is Action.PROMOTE
    lost = observation(T0, LOST)
    back = observation(T0, GATEWAY_DOWN)
    watch = Watch(Streak(T0), Streak(T0), LAST_BEAT)
    before = decide(T0 + timedelta(seconds=60), watch, lost, Cluster(), STEADY_LAG, Record(), SETTINGS)
    assert still_lost(before, lost, Cluster()).action is Action.PROMOTE
    assert still_lost(before, back, Cluster()).action is Action.NONE
    assert still_lost(before, lost, Cluster(moving_to_standby=True)).action is Action.NONE
