"""The prober's decision as a table: each row is what the standby observes, minute by minute, and what it
must do. Observations are (writer answers over the peering?, the primary's endpoint as Route53 sees it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from functions.failover_prober.decision import (
    Action,
    Cluster,
    Lag,
    Observation,
    Record,
    Settings,
    Streak,
    decide,
    is_stale,
    still_lost,
)

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
SETTINGS = Settings(promote_after_seconds=60, rpo_seconds=20)
STEP = 10  # seconds between observations, as the prober probes
FRESH_LAG = Lag(seconds=0.4, at=T0 - timedelta(seconds=30))

LOST = (False, "failing")
GATEWAY_DOWN = (True, "failing")
PEERING_DOWN = (False, "healthy")
HEALTHY = (True, "healthy")


@dataclass
class Run:
    """Feeds observations to the decision as the prober does, with the database reacting to a failover."""

    lag: Lag = FRESH_LAG
    record: Record = field(default_factory=Record)
    cluster: Cluster = field(default_factory=Cluster)
    actions: list[Action] = field(default_factory=list)

    def feed(self, signals: list[tuple[bool, str]]) -> list[Action]:
        streak = Streak()
        for i, (writer, status) in enumerate(signals):
            now = T0 + timedelta(seconds=i * STEP)
            observation = Observation(now, writer, status)  # type: ignore[arg-type]
            streak = streak.observe(observation)
            decision = decide(now, streak, observation, self.cluster, self.lag, self.record, SETTINGS)
            self.actions.append(decision.action)
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
    ("region lost: promotes once, then sees the failover under way", [LOST] * 20, 1, Action.NONE),
    ("region lost, shorter than the agreement window", [LOST] * 6, 0, Action.WATCH),
    ("flapping: lost and back every other probe", [LOST, HEALTHY] * 15, 0, Action.NONE),
    ("flapping: the writer answers now and then", ([LOST] * 5 + [GATEWAY_DOWN]) * 5, 0, Action.NONE),
    (
        "Route53's answer unknown (DNS down) never counts as failing",
        [(False, "unknown")] * 30,
        0,
        Action.NONE,
    ),
]


@pytest.mark.parametrize(("signals", "count", "last"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_the_prober_promotes_only_when_both_signals_agree_long_enough(signals, count, last):
    actions = Run().feed(signals)
    assert promotions(actions) == count
    assert actions[-1] is last


def test_region_lost_promotes_exactly_when_the_agreement_window_is_full():
    actions = Run().feed([LOST] * 8)
    # Observations at 0, 10, ... 70 s: 60 s of agreement is reached at the seventh.
    assert actions == [Action.WATCH] * 6 + [Action.PROMOTE, Action.NONE]


def test_an_unknown_replication_lag_holds_the_promotion_for_a_person():
    for lag in (Lag(), Lag(seconds=0.2, at=T0 - timedelta(hours=1))):
        actions = Run(lag=lag).feed([LOST] * 10)
        assert promotions(actions) == 0
        assert actions[-1] is Action.HOLD


def test_a_lag_over_the_rpo_holds_the_promotion():
    actions = Run(lag=Lag(seconds=45.0, at=T0)).feed([LOST] * 10)
    assert promotions(actions) == 0 and actions[-1] is Action.HOLD


def test_a_stale_event_is_ignored():
    assert is_stale(T0 - timedelta(seconds=61), T0, SETTINGS)
    assert is_stale(None, T0, SETTINGS)
    assert not is_stale(T0 - timedelta(seconds=5), T0, SETTINGS)


def test_a_retry_after_a_half_done_promotion_finishes_the_record():
    half_done = Run(record=Record("failover", "requested"), cluster=Cluster(moving_to_standby=True))
    assert half_done.feed([LOST]) == [Action.RECORD]
    finished = Run(record=Record("failover", "requested"), cluster=Cluster(standby_is_writer=True))
    assert finished.feed([HEALTHY]) == [Action.RECORD]
    # Already recorded: nothing more, whatever the signals say.
    done = Run(record=Record("failover", "accepted"), cluster=Cluster(standby_is_writer=True))
    assert done.feed([LOST] * 10) == [Action.NONE] * 10


def test_a_failover_to_another_member_is_left_alone():
    assert Run(cluster=Cluster(moving_to_standby=False)).feed([LOST] * 10) == [Action.NONE] * 10


def test_the_recheck_before_the_lossy_call_can_still_say_no():
    promote = Run().feed([LOST] * 7)[-1]
    assert promote is Action.PROMOTE
    lost = Observation(T0, False, "failing")
    back = Observation(T0, True, "failing")
    before = decide(T0 + timedelta(seconds=60), Streak(T0), lost, Cluster(), FRESH_LAG, Record(), SETTINGS)
    assert still_lost(before, lost, Cluster()).action is Action.PROMOTE
    assert still_lost(before, back, Cluster()).action is Action.NONE
    assert still_lost(before, lost, Cluster(moving_to_standby=True)).action is Action.NONE
