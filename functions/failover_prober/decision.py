"""When the standby promotes the Aurora global database: pure logic, no I/O, table-tested.

The prober observes the primary region from the standby every few seconds. One observation holds three
independent witnesses:

- `writer_reachable`: the primary region's Aurora writer answered the Postgres protocol over the VPC
  peering, from the standby's own network;
- `primary_status`: the primary region's "can serve" health check as Route53's checkers in several
  regions see it, read through DNS (Route53's data plane, which does not live in the primary region);
- `heartbeat`: a row the primary region commits through its writer (the global writer while the primary
  holds it) every few seconds, read from the standby's own secondary cluster. It reaches the standby by
  Aurora's replication, not over the peering and not through a gateway: no network fault between the
  regions and no gateway failure can make it stop, and while it advances the writer is alive, whatever
  the other two say.

The region counts as lost only when all three say so: the writer does not answer, the primary's endpoint
fails from Route53's vantage points, and the heartbeat has stopped. They must agree without a break for
`promote_after_seconds`; any observation that does not agree restarts the count, so flapping witnesses
never promote. When the first two agree that long but the heartbeat still advances (the writer is alive:
the peering and the primary's gateway are broken at once) or cannot be read, the prober holds and tells a
person: a lossy failover of a live writer is never the prober's to make.

Before the lossy call the replication lag must be known and within the stack's RPO, as it was when the
writer was last seen alive by a witness of the writer itself (the probe over the peering answering, or its
newest heartbeat on the replica), which is at the latest when all three witnesses began to agree. Once the
writer is gone the standby's RPO lag keeps rising with the clock, so the newest reading would say "over
the RPO" at the end of every real region loss; and a reading from the streak's start carries the rise while
Route53 made up its mind (about a minute). Two bounds, both within the RPO: the RPO-lag reading whose
period ended by then, and the heartbeat's own gap (from the newest beat the replica holds to the writer's
last sign: a replication cut while the writer still answered shows there, even inside a reading's
minute). No reading (within `lag_max_age_seconds`), or a writer last seen longer before the witnesses
agreed than one region loss takes to detect, means the data a failover would lose is unknown: the prober
holds.

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
    # A promotion is not the prober's to make (the writer alive, the heartbeat or the lag unknown):
    # a person decides.
    HOLD = "hold"
    PROMOTE = "promote"  # fail the global database over to the standby, allowing data loss
    RECORD = "record"  # a failover is under way from an interrupted attempt: finish its record


@dataclass(frozen=True)
class Settings:
    promote_after_seconds: float
    rpo_seconds: float
    # The most the witnesses of one region loss can be apart (Route53's detection is the slowest).
    detection_seconds: float
    lag_max_age_seconds: float = LAG_MAX_AGE_SECONDS
    max_event_age_seconds: float = MAX_EVENT_AGE_SECONDS

    @classmethod
    def of(cls, settings: ProberSettings) -> Settings:
        return cls(
            promote_after_seconds=settings.promote_after_seconds,
            rpo_seconds=settings.rpo_seconds,
            detection_seconds=settings.detection_seconds,
        )


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
        says_alive = (
            self.writer_reachable,
            self.primary_status == "healthy",
            self.heartbeat.status == "advancing",
        )
        if len(set(says_alive)) > 1:
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

    def extend(self, holds: bool, at: datetime) -> Streak:
        if not holds:
            return Streak()
        return self if self.since is not None else Streak(at)

    def held(self, now: datetime) -> timedelta:
        return now - self.since if self.since is not None else timedelta(0)


@dataclass(frozen=True)
class Watch:
    """What the decision remembers: since when the outside witnesses have agreed the primary is lost
    (`suspect`), since when all three have (`lost`), and when the writer was last seen alive."""

    suspect: Streak = Streak()
    lost: Streak = Streak()
    # The newest sign of the writer itself: the writer probe answering, or the newest heartbeat the
    # replica held (the writer's clock). Route53 speaks for the gateway, not the writer: it does not count.
    writer_seen: datetime | None = None
    # The newest heartbeat the replica held: every commit before it reached the standby.
    last_beat: datetime | None = None

    def observe(self, observation: Observation) -> Watch:
        at, beat = observation.at, observation.heartbeat.last_beat
        return Watch(
            self.suspect.extend(observation.seems_lost, at),
            self.lost.extend(observation.region_lost, at),
            _newest(self.writer_seen, at if observation.writer_reachable else None, beat),
            _newest(self.last_beat, beat),
        )


def _newest(*moments: datetime | None) -> datetime | None:
    return max((m for m in moments if m is not None), default=None)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    # What a promotion relies on (PROMOTE only): the RPO-lag reading, and how far the replica's newest
    # heartbeat was behind the writer's last sign (each bounds what the failover loses).
    lag: Lag | None = None
    heartbeat_gap_seconds: float | None = None


def is_stale(event_time: datetime | None, now: datetime, settings: Settings) -> bool:
    """A delayed or redelivered scheduled event: the next one already covers its minute."""
    return event_time is None or now - event_time > timedelta(seconds=settings.max_event_age_seconds)


def lag_reference(watch: Watch) -> datetime | None:
    """When the lost writer was last seen alive, for the lag reading: by its own witnesses where they saw it,
    else when all three began to agree (None: they do not agree)."""
    if watch.lost.since is None:
        return None
    if watch.writer_seen is None:
        return watch.lost.since
    return min(watch.writer_seen, watch.lost.since)


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
    seen = observation.describe()
    outside = (
        f"for {suspected.total_seconds():.0f} s the standby cannot reach the writer "
        "and Route53 sees the primary failing"
    )
    if watch.lost.since is None or held < window:
        if suspected < window or observation.heartbeat.status == "stopped":
            agreed = f"{held.total_seconds():.0f} s of {settings.promote_after_seconds:g} s"
            return Decision(Action.WATCH, f"{outside}; all three witnesses agree for {agreed} ({seen})")
        if observation.heartbeat.status == "advancing":
            return Decision(
                Action.HOLD,
                f"the writer is alive, its heartbeat still advances, yet {outside} ({seen}). The path to "
                "the writer and the primary's gateway are broken at once: a lossy failover would throw away "
                "a live writer's data; repair the path, or move the writer without loss "
                "(promotion.switchoverCommand)",
            )
        return Decision(
            Action.HOLD,
            f"{outside}, but the writer's heartbeat cannot be read from the standby's replica: whether the "
            f"writer is alive is unknown ({seen})",
        )
    reference = lag_reference(watch)
    assert reference is not None and watch.lost.since is not None
    spread = (watch.lost.since - reference).total_seconds()
    if spread > settings.detection_seconds:
        return Decision(
            Action.HOLD,
            f"region lost for {held.total_seconds():.0f} s, but the writer was last seen {spread:.0f} s "
            "before the witnesses agreed, more than one region loss takes "
            f"({settings.detection_seconds:g} s): its heartbeat and the path to it broke before the region "
            "was lost, so when the writer died, and what a failover would lose, is unknown",
        )
    lag = lag_at(lags, reference, settings)
    if lag.seconds is None:
        return Decision(
            Action.HOLD,
            f"region lost for {held.total_seconds():.0f} s, but no replication-lag reading from before "
            f"{reference.isoformat(timespec='seconds')} (when the writer was last seen) within "
            f"{settings.lag_max_age_seconds:g} s: the data a failover would lose is unknown",
        )
    # Every commit up to the newest beat reached the standby: the writer's commits after it, up to its last
    # sign, are what the heartbeat says a failover loses (a replication cut while the writer lived shows
    # here first: the reading may end up to a period before the writer's last sign).
    last_beat = watch.last_beat or reference
    gap = max(0.0, (reference - last_beat).total_seconds())
    behind = max(lag.seconds, gap)
    if behind > settings.rpo_seconds:
        return Decision(
            Action.HOLD,
            f"region lost for {held.total_seconds():.0f} s, but when the writer was last seen the standby "
            f"was {behind:.1f} s behind (RPO lag {lag.seconds:.1f} s, heartbeat {gap:.1f} s behind), over "
            f"the {settings.rpo_seconds:g} s RPO",
        )
    return Decision(
        Action.PROMOTE,
        f"region lost for {held.total_seconds():.0f} s ({observation.describe()}); when the writer was last "
        f"seen, RPO lag {lag.seconds:.1f} s, heartbeat {gap:.1f} s behind",
        lag,
        gap,
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
