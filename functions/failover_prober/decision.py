"""When the standby promotes the Aurora global database: pure logic, no I/O, table-tested.

The prober observes the primary region from the standby every few seconds. One observation holds three
independent witnesses:

- `writer_reachable`: the primary region's Aurora writer answered the Postgres protocol over the VPC
  peering, from the standby's own network;
- `primary_status`: the primary region's "can serve" health check as Route53's checkers in several
  regions see it, read through DNS (Route53's data plane, which does not live in the primary region);
- `heartbeat`: a row the primary region writes through the global writer every few seconds, read from the
  standby's own secondary cluster. It reaches the standby by Aurora's replication, not over the peering
  and not through a gateway: no network fault between the regions and no gateway failure can make it
  stop, and while it advances the writer is alive, whatever the other two say.

The region counts as lost only when all three say so: the writer does not answer, the primary's endpoint
fails from Route53's vantage points, and the heartbeat has stopped. They must agree without a break for
`promote_after_seconds`; any observation that does not agree restarts the count, so flapping witnesses
never promote. When the first two agree that long but the heartbeat still advances (the writer is alive:
the peering and the primary's gateway are broken at once) or cannot be read, the prober holds and tells a
person: a lossy failover of a live writer is never the prober's to make.

Before the lossy call the replication lag must be known and within the stack's RPO. The reading that
counts is the one from when the streak's evidence last saw the writer alive: the newest heartbeat the
standby held when the witnesses began to agree. Once the writer is gone the standby's RPO lag keeps rising
with the clock, so the newest reading would say "over the RPO" at the end of every real region loss; and
even a reading from the streak's start carries the rise while Route53 made up its mind (about a minute).
No reading from then (within `lag_max_age_seconds`), or a heartbeat that had stopped long before the other
witnesses agreed, means the data a failover would lose is unknown: the prober holds.

The database itself decides "already done": a failover under way to the standby, or the standby already
the writer, means nothing more to do, except to finish a record that a previous, interrupted attempt
left as only "requested".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from .settings import LAG_MAX_AGE_SECONDS, MAX_EVENT_AGE_SECONDS, ProberSettings

PrimaryStatus = Literal["healthy", "failing", "unknown"]
HeartbeatStatus = Literal["advancing", "stopped", "unknown"]


class Action(StrEnum):
    IGNORE = "ignore"  # a stale event: do nothing at all
    NONE = "none"  # nothing to do (primary healthy, witnesses disagree, or already promoted)
    WATCH = "watch"  # the witnesses agree; not yet for long enough
    HOLD = "hold"  # a promotion is not the prober's to make (writer alive, heartbeat or lag unknown): a person decides
    PROMOTE = "promote"  # fail the global database over to the standby, allowing data loss
    RECORD = "record"  # a failover is under way from an interrupted attempt: finish its record


@dataclass(frozen=True)
class Settings:
    promote_after_seconds: float
    rpo_seconds: float
    lag_max_age_seconds: float = LAG_MAX_AGE_SECONDS
    max_event_age_seconds: float = MAX_EVENT_AGE_SECONDS

    @classmethod
    def of(cls, settings: ProberSettings) -> Settings:
        return cls(promote_after_seconds=settings.promote_after_seconds, rpo_seconds=settings.rpo_seconds)


@dataclass(frozen=True)
class Heartbeat:
    """The writer's heartbeat as the standby's own replica holds it."""

    status: HeartbeatStatus
    # When the writer wrote the newest beat the replica holds (the writer's clock); None when unknown.
    last_beat: datetime | None = None
    # How old that beat is by the replica's clock: replication lag plus the time since the write.
    age_seconds: float | None = None

    @classmethod
    def read(cls, last_beat: datetime | None, age_seconds: float | None, stale_after: float) -> Heartbeat:
        """A reading of the row; no row or no age is unknown, never "stopped"."""
        if last_beat is None or age_seconds is None:
            return cls("unknown")
        status: HeartbeatStatus = "advancing" if age_seconds <= stale_after else "stopped"
        return cls(status, last_beat, age_seconds)

    def describe(self) -> str:
        if self.status == "unknown":
            return "heartbeat unreadable"
        return f"heartbeat {self.status} ({self.age_seconds:.1f} s old)"


UNKNOWN_HEARTBEAT = Heartbeat("unknown")


@dataclass(frozen=True)
class Observation:
    at: datetime
    writer_reachable: bool
    primary_status: PrimaryStatus
    heartbeat: Heartbeat

    @property
    def seems_lost(self) -> bool:
        """The two witnesses outside the database say lost: no writer over the peering, Route53 failing."""
        return not self.writer_reachable and self.primary_status == "failing"

    @property
    def region_lost(self) -> bool:
        """All three witnesses say lost."""
        return self.seems_lost and self.heartbeat.status == "stopped"

    @property
    def degraded(self) -> str | None:
        """Why the witnesses cannot be trusted to agree now (one unknown, or not all alike), or None."""
        unknown = [
            name
            for name, status in (("Route53", self.primary_status), ("heartbeat", self.heartbeat.status))
            if status == "unknown"
        ]
        if unknown:
            return f"{' and '.join(unknown)} unknown ({self.describe()})"
        alive = {self.writer_reachable, self.primary_status == "healthy", self.heartbeat.status == "advancing"}
        if len(alive) > 1:
            return f"witnesses disagree ({self.describe()})"
        return None

    def describe(self) -> str:
        writer = "writer answers" if self.writer_reachable else "writer unreachable"
        return f"{writer}, primary endpoint {self.primary_status}, {self.heartbeat.describe()}"


@dataclass(frozen=True)
class Lag:
    """One reading of the standby's RPO lag (CloudWatch, in the standby region): the worst of the period
    that began `at` and lasted `period_seconds`."""

    seconds: float | None = None
    at: datetime | None = None
    period_seconds: float = 60


@dataclass(frozen=True)
class Cluster:
    """The global database as RDS describes it, from the standby's side."""

    standby_is_writer: bool = False
    # A failover or switchover in progress: its target is the standby (True) or another member (False).
    moving_to_standby: bool | None = None

    @property
    def writer_in_standby(self) -> bool:
        """The writer is (or is about to be) the standby's: DNS follows it there."""
        return self.standby_is_writer or bool(self.moving_to_standby)


@dataclass(frozen=True)
class Record:
    """The last promotion record (an SSM parameter): `requested` is written just before the lossy call."""

    action: str = "none"
    status: str | None = None


@dataclass(frozen=True)
class Streak:
    """Since when every observation has held one verdict (None: the last one did not)."""

    since: datetime | None = None
    # The writer's newest heartbeat when the streak began: when the writer was last seen alive.
    last_beat: datetime | None = None

    def extend(self, holds: bool, observation: Observation) -> Streak:
        if not holds:
            return Streak()
        return self if self.since is not None else Streak(observation.at, observation.heartbeat.last_beat)

    def held(self, now: datetime) -> timedelta:
        return now - self.since if self.since is not None else timedelta(0)


@dataclass(frozen=True)
class Watch:
    """The two streaks the decision needs: the outside witnesses agreeing (`suspect`), all three (`lost`)."""

    suspect: Streak = Streak()
    lost: Streak = Streak()

    def observe(self, observation: Observation) -> Watch:
        return Watch(
            self.suspect.extend(observation.seems_lost, observation),
            self.lost.extend(observation.region_lost, observation),
        )


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    # The lag reading a promotion relies on (PROMOTE only).
    lag: Lag | None = None


def is_stale(event_time: datetime | None, now: datetime, settings: Settings) -> bool:
    """A delayed or redelivered scheduled event: the next one already covers its minute."""
    return event_time is None or now - event_time > timedelta(seconds=settings.max_event_age_seconds)


def lag_reference(streak: Streak) -> datetime | None:
    """When the writer was last seen alive: the newest heartbeat the standby held when the witnesses began
    to agree (the streak's start where no beat was ever read)."""
    if streak.since is None:
        return None
    return streak.last_beat if streak.last_beat is not None else streak.since


def lag_at(readings: Sequence[Lag], moment: datetime, settings: Settings) -> Lag:
    """The newest reading whose period had ended by `moment`, no older than `lag_max_age_seconds` before it
    (an empty Lag when there is none): what the lag was, not what it became after the writer was gone."""
    oldest = moment - timedelta(seconds=settings.lag_max_age_seconds)
    usable = [
        r
        for r in readings
        if r.seconds is not None
        and r.at is not None
        and oldest <= r.at
        and r.at + timedelta(seconds=r.period_seconds) <= moment
    ]
    return max(usable, key=lambda r: r.at or moment, default=Lag())


def decide(
    now: datetime,
    watch: Watch,
    observation: Observation,
    cluster: Cluster,
    lags: Sequence[Lag],
    record: Record,
    settings: Settings,
) -> Decision:
    if cluster.standby_is_writer or cluster.moving_to_standby:
        if record.action == "failover" and record.status == "requested":
            return Decision(
                Action.RECORD, "a failover to the standby is under way; its record says only requested"
            )
        if cluster.standby_is_writer:
            return Decision(Action.NONE, "the standby is already the writer")
        return Decision(Action.NONE, "a failover to the standby is already under way")
    if cluster.moving_to_standby is False:
        return Decision(Action.NONE, "the global database is moving to another member: leave it to finish")
    if watch.suspect.since is None:
        return Decision(Action.NONE, f"primary not lost ({observation.describe()})")
    window = timedelta(seconds=settings.promote_after_seconds)
    suspected, held = watch.suspect.held(now), watch.lost.held(now)
    if watch.lost.since is None or held < window:
        if suspected < window or observation.heartbeat.status == "stopped":
            return Decision(
                Action.WATCH,
                f"unreachable and failing for {suspected.total_seconds():.0f} s, all three witnesses agree for "
                f"{held.total_seconds():.0f} s of {settings.promote_after_seconds:g} s ({observation.describe()})",
            )
        if observation.heartbeat.status == "advancing":
            return Decision(
                Action.HOLD,
                f"the writer is alive: its heartbeat still advances, yet for {suspected.total_seconds():.0f} s "
                f"the standby cannot reach it and Route53 sees the primary failing ({observation.describe()}). "
                "The path to the writer and the primary's gateway are broken at once: a lossy failover would "
                "throw away a live writer's data; repair the path, or move the writer without loss "
                "(promotion.switchoverCommand)",
            )
        return Decision(
            Action.HOLD,
            f"for {suspected.total_seconds():.0f} s the standby cannot reach the writer and Route53 sees the "
            "primary failing, but the writer's heartbeat cannot be read from the standby's replica: whether "
            f"the writer is alive is unknown ({observation.describe()})",
        )
    reference = lag_reference(watch.lost)
    assert reference is not None and watch.lost.since is not None
    before = (watch.lost.since - reference).total_seconds()
    if before > settings.lag_max_age_seconds:
        return Decision(
            Action.HOLD,
            f"region lost for {held.total_seconds():.0f} s, but the writer's heartbeat had stopped {before:.0f} s "
            "before the other witnesses agreed: when the writer died, and what a failover would lose, is unknown",
        )
    lag = lag_at(lags, reference, settings)
    if lag.seconds is None:
        return Decision(
            Action.HOLD,
            f"region lost for {held.total_seconds():.0f} s, but no replication-lag reading from before "
            f"{reference.isoformat(timespec='seconds')} (when the writer was last seen) within "
            f"{settings.lag_max_age_seconds:g} s: the data a failover would lose is unknown",
        )
    if lag.seconds > settings.rpo_seconds:
        return Decision(
            Action.HOLD,
            f"region lost for {held.total_seconds():.0f} s, but the RPO lag when the writer was last seen was "
            f"{lag.seconds:.1f} s, over the {settings.rpo_seconds:g} s RPO",
        )
    return Decision(
        Action.PROMOTE,
        f"region lost for {held.total_seconds():.0f} s ({observation.describe()}); "
        f"RPO lag {lag.seconds:.1f} s when the writer was last seen",
        lag,
    )


def still_lost(before: Decision, recheck: Observation, cluster: Cluster) -> Decision:
    """The re-check right before the lossy call: a fresh observation and a fresh read of the database."""
    if cluster.standby_is_writer or cluster.moving_to_standby is not None:
        return Decision(Action.NONE, "the global database changed before the failover call: not failing over")
    if not recheck.region_lost:
        return Decision(Action.NONE, f"re-check before the failover: primary not lost ({recheck.describe()})")
    return before


__all__ = [
    "UNKNOWN_HEARTBEAT",
    "Action",
    "Cluster",
    "Decision",
    "Heartbeat",
    "Lag",
    "Observation",
    "Record",
    "Settings",
    "Streak",
    "Watch",
    "decide",
    "is_stale",
    "lag_at",
    "lag_reference",
    "still_lost",
]
