"""When the standby promotes the Aurora global database: pure logic, no I/O, table-tested.

The prober observes the primary region from the standby every few seconds. One observation holds two
independent signals:

- `writer_reachable`: the primary region's Aurora writer answered the Postgres protocol over the VPC
  peering, from the standby's own network;
- `primary_status`: the primary region's "can serve" health check as Route53's checkers in several
  regions see it, read through DNS (Route53's data plane, which does not live in the primary region).

The region counts as lost only when both say so: the writer does not answer *and* the primary's endpoint
fails from Route53's vantage points. A gateway-only failure (writer answers) or a broken peering (the
primary's endpoint healthy) never promotes. The two must agree without a break for `promote_after_seconds`;
any observation that does not agree resets the count, so flapping signals never promote.

Before the lossy call the replication lag must be known: a reading of the standby's RPO lag no older
than `lag_max_age_seconds` before the disagreement began, and within the stack's RPO. Otherwise the
prober holds and alerts a person: promoting with an unknown lag would lose an unknown amount of data.

The database itself decides "already done": a failover under way to the standby, or the standby already
the writer, means nothing more to do, except to finish a record that a previous, interrupted attempt
left as only "requested".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from .settings import MAX_EVENT_AGE_SECONDS, ProberSettings

PrimaryStatus = Literal["healthy", "failing", "unknown"]


class Action(StrEnum):
    IGNORE = "ignore"  # a stale event: do nothing at all
    NONE = "none"  # nothing to do (primary healthy, signals disagree, or already promoted)
    WATCH = "watch"  # the signals agree; not yet for long enough
    HOLD = "hold"  # the signals agree long enough, but the lag is unknown or over the RPO: a person decides
    PROMOTE = "promote"  # fail the global database over to the standby, allowing data loss
    RECORD = "record"  # a failover is under way from an interrupted attempt: finish its record


@dataclass(frozen=True)
class Settings:
    promote_after_seconds: int
    rpo_seconds: int
    lag_max_age_seconds: int = 300
    max_event_age_seconds: int = MAX_EVENT_AGE_SECONDS

    @classmethod
    def of(cls, settings: ProberSettings) -> Settings:
        return cls(promote_after_seconds=settings.promote_after_seconds, rpo_seconds=settings.rpo_seconds)


@dataclass(frozen=True)
class Observation:
    at: datetime
    writer_reachable: bool
    primary_status: PrimaryStatus

    @property
    def region_lost(self) -> bool:
        return not self.writer_reachable and self.primary_status == "failing"

    def describe(self) -> str:
        writer = "writer answers" if self.writer_reachable else "writer unreachable"
        return f"{writer}, primary endpoint {self.primary_status}"


@dataclass(frozen=True)
class Lag:
    """The standby's latest RPO-lag reading (CloudWatch, in the standby region)."""

    seconds: float | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Cluster:
    """The global database as RDS describes it, from the standby's side."""

    standby_is_writer: bool = False
    # A failover or switchover in progress: its target is the standby (True) or another member (False).
    moving_to_standby: bool | None = None


@dataclass(frozen=True)
class Record:
    """The last promotion record (an SSM parameter): `requested` is written just before the lossy call."""

    action: str = "none"
    status: str | None = None


@dataclass(frozen=True)
class Streak:
    """Since when every observation has said "region lost" (None: the last one did not)."""

    since: datetime | None = None

    def observe(self, observation: Observation) -> Streak:
        if not observation.region_lost:
            return Streak(None)
        return self if self.since is not None else Streak(observation.at)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def is_stale(event_time: datetime | None, now: datetime, settings: Settings) -> bool:
    """A delayed or redelivered scheduled event: the next one already covers its minute."""
    return event_time is None or now - event_time > timedelta(seconds=settings.max_event_age_seconds)


def decide(
    now: datetime,
    streak: Streak,
    observation: Observation,
    cluster: Cluster,
    lag: Lag,
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
    if streak.since is None:
        return Decision(Action.NONE, f"primary not lost ({observation.describe()})")
    held = now - streak.since
    if held < timedelta(seconds=settings.promote_after_seconds):
        return Decision(
            Action.WATCH,
            f"region lost for {held.total_seconds():.0f} s of {settings.promote_after_seconds} s "
            f"({observation.describe()})",
        )
    oldest_useful = streak.since - timedelta(seconds=settings.lag_max_age_seconds)
    if lag.seconds is None or lag.at is None or lag.at < oldest_useful:
        return Decision(
            Action.HOLD,
            f"region lost for {held.total_seconds():.0f} s, but no replication-lag reading since "
            f"{oldest_useful.isoformat(timespec='seconds')}: the data a failover would lose is unknown",
        )
    if lag.seconds > settings.rpo_seconds:
        return Decision(
            Action.HOLD,
            f"region lost for {held.total_seconds():.0f} s, but the last RPO lag was {lag.seconds:.1f} s, "
            f"over the {settings.rpo_seconds} s RPO",
        )
    return Decision(
        Action.PROMOTE,
        f"region lost for {held.total_seconds():.0f} s ({observation.describe()}); "
        f"last RPO lag {lag.seconds:.1f} s",
    )


def still_lost(before: Decision, recheck: Observation, cluster: Cluster) -> Decision:
    """The re-check right before the lossy call: a fresh observation and a fresh read of the database."""
    if cluster.standby_is_writer or cluster.moving_to_standby is not None:
        return Decision(Action.NONE, "the global database changed before the failover call: not failing over")
    if not recheck.region_lost:
        return Decision(Action.NONE, f"re-check before the failover: primary not lost ({recheck.describe()})")
    return before


__all__ = [
    "Action",
    "Cluster",
    "Decision",
    "Lag",
    "Observation",
    "Record",
    "Settings",
    "Streak",
    "decide",
    "is_stale",
    "still_lost",
]
