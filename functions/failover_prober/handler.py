"""The prober's Lambda: runs every minute in the standby region, observes the primary for most of that
minute, and promotes the Aurora global database when `decision.decide` says so.

Everything it calls lives in the standby region or in no region: RDS, SSM, CloudWatch and SNS in the
standby region, the primary writer over the VPC peering, and Route53's DNS answers through the VPC's
resolver. None of it is a service of the primary region, so losing that region cannot take the
promotion with it.

Safe to run twice and to retry:
- a stale event (delivered late or again) does nothing;
- the database is read again, and the primary probed once more, right before the lossy call;
- the record says "requested" before `FailoverGlobalCluster` and "accepted" after; a run that finds a
  failover under way while the record still says "requested" finishes the record;
- a failover call refused because another run's failover is already under way is not an error.

State kept between runs (SSM parameter, written only while the signals agree or when that ends): since
when the region has looked lost, and whether a person was told that the prober is holding back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import probes
from .decision import (
    Action,
    Cluster,
    Decision,
    Lag,
    Observation,
    PrimaryStatus,
    Record,
    Settings,
    Streak,
    decide,
    is_stale,
    still_lost,
)
from .settings import RUN_SECONDS, STATUS_FAILING, STATUS_HEALTHY, ProberSettings

log = logging.getLogger("failover_prober")
log.setLevel(logging.INFO)

# A state saved longer ago than this belongs to an earlier incident, not to the current streak.
STATE_CONTINUITY_SECONDS = 150
# Time kept free before the Lambda's timeout for the record and the state (seconds).
END_MARGIN_SECONDS = 8


class PromotionError(RuntimeError):
    """The global database is not in a state the prober can promote from; a person must look."""


class NetworkProbes:
    """One observation: the primary writer over the peering, and Route53's view of the primary via DNS."""

    def __init__(
        self, settings: ProberSettings, resolver: str | None = None, dns_port: int = probes.DNS_PORT
    ):
        self._settings = settings
        self._resolver = resolver
        self._dns_port = dns_port

    def observe(self, at: datetime) -> Observation:
        s = self._settings
        writer = probes.postgres_answers(s.primary_writer_host, s.database_port, s.probe_timeout_seconds)
        return Observation(at=at, writer_reachable=writer, primary_status=self._primary_status())

    def _primary_status(self) -> PrimaryStatus:
        try:
            resolver = self._resolver or probes.resolver_address()
            values = probes.txt_records(
                self._settings.status_record, resolver, self._settings.probe_timeout_seconds, self._dns_port
            )
        except (probes.DnsError, OSError, ValueError):
            return "unknown"
        if values == [STATUS_HEALTHY]:
            return "healthy"
        if values == [STATUS_FAILING]:
            return "failing"
        return "unknown"


@dataclass
class Clients:
    rds: Any
    ssm: Any
    cloudwatch: Any
    sns: Any


def handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (EventBridge schedule, every minute)."""
    import boto3  # the Lambda runtime provides it; imported here so tests need no AWS session

    settings = ProberSettings.from_env()
    clients = Clients(
        rds=boto3.client("rds"),
        ssm=boto3.client("ssm"),
        cloudwatch=boto3.client("cloudwatch"),
        sns=boto3.client("sns"),
    )
    return run(
        event,
        settings,
        clients,
        NetworkProbes(settings),
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )


def run(
    event: Mapping[str, Any],
    settings: ProberSettings,
    clients: Clients,
    observer: Any,
    time_left: Callable[[], float],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """One scheduled run: observe until the time is nearly up, act at most once, keep the state."""
    base = {"globalCluster": settings.global_cluster_id, "target": settings.target_cluster_arn}
    policy = Settings.of(settings)
    now = started = clock()
    if is_stale(_event_time(event), now, policy):
        return _report(
            {**base, "action": Action.IGNORE.value, "reason": f"stale event from {event.get('time')}"}
        )

    loaded = _load_state(clients.ssm, settings, now)
    streak, notified = loaded
    record = _load_record(clients.ssm, settings)
    cluster = describe(clients.rds, settings)
    lag = read_lag(clients.cloudwatch, settings, now)
    outcome: dict[str, Any] = {}
    while True:
        observation = observer.observe(clock())
        streak = streak.observe(observation)
        decision = decide(clock(), streak, observation, cluster, lag, record, policy)
        outcome = {**base, "action": decision.action.value, "reason": decision.reason}
        if decision.action is Action.RECORD:
            outcome = _finish_record(clients, settings, base, cluster, decision)
            streak = Streak(None)
            break
        if decision.action is Action.PROMOTE:
            outcome = _promote(clients, settings, base, observer, clock, decision, lag)
            streak = Streak(None)
            break
        if decision.action is Action.HOLD and not notified:
            _notify(clients.sns, settings, "Failover held: a person decides", outcome)
            notified = True
        if decision.action is Action.NONE:
            notified = False
        interval = settings.probe_interval_seconds
        elapsed = (clock() - started).total_seconds()
        if elapsed + interval > RUN_SECONDS or time_left() < interval + END_MARGIN_SECONDS:
            break
        sleep(settings.probe_interval_seconds)
    _save_state(clients.ssm, settings, loaded, (streak, notified), clock())
    return _report(outcome)


# --- reading the world ------------------------------------------------------------------------------------


def describe(rds: Any, settings: ProberSettings) -> Cluster:
    described = rds.describe_global_clusters(GlobalClusterIdentifier=settings.global_cluster_id)
    (cluster,) = described["GlobalClusters"]
    members = {m["DBClusterArn"]: m for m in cluster.get("GlobalClusterMembers", [])}
    if settings.target_cluster_arn not in members:
        raise PromotionError(
            f"{settings.target_cluster_arn} is not a member of {settings.global_cluster_id}; "
            f"members: {', '.join(members) or 'none'}"
        )
    state = cluster.get("FailoverState") or {}
    moving = (state.get("ToDbClusterArn") == settings.target_cluster_arn) if state.get("Status") else None
    return Cluster(
        standby_is_writer=bool(members[settings.target_cluster_arn].get("IsWriter")), moving_to_standby=moving
    )


def read_lag(cloudwatch: Any, settings: ProberSettings, now: datetime) -> Lag:
    """The standby's latest AuroraGlobalDBRPOLag (milliseconds in CloudWatch) in the look-back window."""
    policy = Settings.of(settings)
    window = policy.lag_max_age_seconds + policy.promote_after_seconds + 300
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "rpolag",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/RDS",
                        "MetricName": "AuroraGlobalDBRPOLag",
                        "Dimensions": [{"Name": "DBClusterIdentifier", "Value": settings.standby_cluster_id}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=now - timedelta(seconds=window),
        EndTime=now,
        ScanBy="TimestampDescending",
    )
    for result in answer.get("MetricDataResults", []):
        if result.get("Timestamps"):
            return Lag(seconds=result["Values"][0] / 1000, at=result["Timestamps"][0])
    return Lag()


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    text = event.get("time")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _load_record(ssm: Any, settings: ProberSettings) -> Record:
    value = json.loads(ssm.get_parameter(Name=settings.record_parameter)["Parameter"]["Value"])
    return Record(action=str(value.get("action", "none")), status=value.get("status"))


def _load_state(ssm: Any, settings: ProberSettings, now: datetime) -> tuple[Streak, bool]:
    value = json.loads(ssm.get_parameter(Name=settings.state_parameter)["Parameter"]["Value"])
    saved = value.get("savedAt")
    if not saved or now - datetime.fromisoformat(saved) > timedelta(seconds=STATE_CONTINUITY_SECONDS):
        return Streak(None), False
    since = value.get("suspectSince")
    return Streak(datetime.fromisoformat(since) if since else None), bool(value.get("notified"))


def _save_state(
    ssm: Any,
    settings: ProberSettings,
    loaded: tuple[Streak, bool],
    now_state: tuple[Streak, bool],
    at: datetime,
) -> None:
    (streak, notified) = now_state
    if now_state == loaded and streak.since is None:
        return  # quiet times write nothing
    value = {
        "suspectSince": streak.since.isoformat(timespec="seconds") if streak.since else None,
        "notified": notified,
        "savedAt": at.isoformat(timespec="seconds"),
    }
    ssm.put_parameter(Name=settings.state_parameter, Value=json.dumps(value), Type="String", Overwrite=True)


# --- acting ----------------------------------------------------------------------------------------------


def _promote(
    clients: Clients,
    settings: ProberSettings,
    base: dict[str, Any],
    observer: Any,
    clock: Callable[[], datetime],
    decision: Decision,
    lag: Lag,
) -> dict[str, Any]:
    # Right before the lossy call: the database and the primary once more.
    cluster = describe(clients.rds, settings)
    recheck = still_lost(decision, observer.observe(clock()), cluster)
    if recheck.action is not Action.PROMOTE:
        return {**base, "action": recheck.action.value, "reason": recheck.reason}
    record = {
        **base,
        "action": "failover",
        "status": "requested",
        "reason": decision.reason,
        "rpoLagSeconds": lag.seconds,
        "lagReadAt": lag.at.isoformat(timespec="seconds") if lag.at else None,
        "requestedAt": clock().isoformat(timespec="seconds"),
    }
    _write_record(clients.ssm, settings, record)
    try:
        clients.rds.failover_global_cluster(
            GlobalClusterIdentifier=settings.global_cluster_id,
            TargetDbClusterIdentifier=settings.target_cluster_arn,
            AllowDataLoss=True,
        )
    except Exception as error:
        now_cluster = describe(clients.rds, settings)
        if now_cluster.moving_to_standby or now_cluster.standby_is_writer:
            # Another run's failover got there first: that run records it.
            return {**base, "action": Action.NONE.value, "reason": "another run's failover is under way"}
        failed = {**record, "status": "failed", "error": type(error).__name__, "message": str(error)}
        _write_record(clients.ssm, settings, failed)
        _notify(clients.sns, settings, "Failover to the standby FAILED", failed)
        _report(failed, level=logging.ERROR)
        raise
    accepted = {**record, "status": "accepted", "acceptedAt": clock().isoformat(timespec="seconds")}
    _write_record(clients.ssm, settings, accepted)
    _notify(clients.sns, settings, "Failover to the standby requested", accepted)
    return {**accepted, "action": Action.PROMOTE.value}


def _finish_record(
    clients: Clients, settings: ProberSettings, base: dict[str, Any], cluster: Cluster, decision: Decision
) -> dict[str, Any]:
    previous = json.loads(clients.ssm.get_parameter(Name=settings.record_parameter)["Parameter"]["Value"])
    record = {
        **previous,
        **base,
        "action": "failover",
        "status": "accepted",
        "confirmedOnRetry": True,
        "standbyIsWriter": cluster.standby_is_writer,
    }
    _write_record(clients.ssm, settings, record)
    _notify(clients.sns, settings, "Failover to the standby under way (recorded on retry)", record)
    return {**record, "action": Action.RECORD.value, "reason": decision.reason}


def _write_record(ssm: Any, settings: ProberSettings, record: Mapping[str, Any]) -> None:
    ssm.put_parameter(Name=settings.record_parameter, Value=json.dumps(record), Type="String", Overwrite=True)


def _notify(sns: Any, settings: ProberSettings, subject: str, body: Mapping[str, Any]) -> None:
    sns.publish(TopicArn=settings.topic_arn, Subject=subject[:100], Message=json.dumps(body, indent=2))


def _report(outcome: dict[str, Any], level: int = logging.INFO) -> dict[str, Any]:
    log.log(level, json.dumps(outcome, default=str))
    return outcome
