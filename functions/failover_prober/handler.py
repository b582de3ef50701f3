"""The prober's Lambda: runs every minute in the standby region, observes the primary for most of that
minute, and promotes the Aurora global database when `decision.decide` says so.

Everything it calls lives in the standby region or in no region: RDS, SSM, CloudWatch and SNS in the
standby region, the standby's own replica (the heartbeat), the primary writer over the VPC peering, and
Route53's DNS answers through the VPC's resolver. None of it is a service of the primary region, so losing
that region cannot take the promotion with it.

Safe to run twice and to retry:
- a stale event (delivered late or again) does nothing;
- the database is read again, and the primary probed once more, right before the lossy call;
- the record says "requested" before `FailoverGlobalCluster` and "accepted" after; a run that finds a
  failover under way while the record still says "requested" finishes the record;
- a failover call refused because another run's failover is already under way is not an error.

State kept between runs (SSM parameter, written only while the witnesses agree or when that ends): since
when the primary region has looked lost (to the outside witnesses, and to all three), the writer's last
heartbeat then, and whether a person was told that the prober is holding back.

What it publishes (embedded metric format on stdout: no PutMetricData call, no permission for one):
`WitnessesDegraded` for each observation while it watches (the failover-safety alarm), and
`WriterInStandby` each run (the alarm DNS follows the writer by).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

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
    Watch,
    decide,
    is_stale,
    lag_reference,
    still_lost,
)
from .heartbeat import Database, HeartbeatReader, iam_token
from .settings import (
    METRIC_NAMESPACE,
    RUN_SECONDS,
    STACK_DIMENSION,
    STATUS_FAILING,
    STATUS_HEALTHY,
    WITNESSES_DEGRADED,
    WRITER_IN_STANDBY,
    ProberSettings,
)

log = logging.getLogger("failover_prober")
log.setLevel(logging.INFO)

# A state saved longer ago than this belongs to an earlier incident, not to the current streak.
STATE_CONTINUITY_SECONDS = 150
# Time kept free before the Lambda's timeout for the record and the state (seconds).
END_MARGIN_SECONDS = 8
# The RPO-lag metric's period (CloudWatch: Aurora publishes it every minute).
LAG_PERIOD_SECONDS = 60

Emit = Callable[[Mapping[str, Any]], None]


class PromotionError(RuntimeError):
    """The global database is not in a state the prober can promote from; a person must look."""


class Observer(Protocol):
    def observe(self, at: datetime) -> Observation: ...


class LagSource(Protocol):
    def readings(self, start: datetime, end: datetime) -> list[Lag]: ...


class NetworkProbes:
    """One observation: the primary writer over the peering, Route53's view of the primary via DNS, and the
    writer's heartbeat on the standby's own replica."""

    def __init__(
        self,
        settings: ProberSettings,
        heartbeat: HeartbeatReader,
        resolver: str | None = None,
        dns_port: int = probes.DNS_PORT,
    ):
        self._settings = settings
        self._heartbeat = heartbeat
        self._resolver = resolver
        self._dns_port = dns_port

    def observe(self, at: datetime) -> Observation:
        """Stamped when the writer probe returned: an answer says the writer was alive then, not when
        the probe was sent (the later moment: what a failover would lose is never under-counted)."""
        s = self._settings
        sent = time.monotonic()
        writer = probes.postgres_answers(s.primary_writer_host, s.database_port, s.probe_timeout_seconds)
        answered = at + timedelta(seconds=time.monotonic() - sent)
        return Observation(answered, writer, self._primary_status(), self._heartbeat.read())

    def close(self) -> None:
        self._heartbeat.close()

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


class CloudWatchLag:
    """The standby's AuroraGlobalDBRPOLag (milliseconds in CloudWatch), one reading a minute."""

    def __init__(self, cloudwatch: Any, standby_cluster_id: str) -> None:
        self._cloudwatch = cloudwatch
        self._cluster_id = standby_cluster_id

    def readings(self, start: datetime, end: datetime) -> list[Lag]:
        found: list[Lag] = []
        token: str | None = None
        while True:
            more = {"NextToken": token} if token else {}
            answer = self._cloudwatch.get_metric_data(
                MetricDataQueries=[
                    {
                        "Id": "rpolag",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "AWS/RDS",
                                "MetricName": "AuroraGlobalDBRPOLag",
                                "Dimensions": [{"Name": "DBClusterIdentifier", "Value": self._cluster_id}],
                            },
                            "Period": LAG_PERIOD_SECONDS,
                            "Stat": "Maximum",
                        },
                    }
                ],
                StartTime=start,
                EndTime=end,
                ScanBy="TimestampDescending",
                **more,
            )
            for result in answer.get("MetricDataResults", []):
                for at, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    found.append(Lag(seconds=value / 1000, at=at, period_seconds=LAG_PERIOD_SECONDS))
            token = answer.get("NextToken")
            if not token:
                return found


@dataclass
class Clients:
    rds: Any
    ssm: Any
    sns: Any
    lag: LagSource


def handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (EventBridge schedule, every minute)."""
    import boto3  # the Lambda runtime provides it; imported here so tests need no AWS session

    settings = ProberSettings.from_env()
    clients = Clients(
        rds=boto3.client("rds"),
        ssm=boto3.client("ssm"),
        sns=boto3.client("sns"),
        lag=CloudWatchLag(boto3.client("cloudwatch"), settings.standby_cluster_id),
    )
    here = clients.rds.meta.region_name  # the standby's: the function's own region
    replica = Database(
        settings.standby_reader_host,
        settings.database_port,
        settings.database_name,
        settings.witness_user,
        iam_token(settings.standby_reader_host, settings.database_port, settings.witness_user, here),
        timeout=settings.probe_timeout_seconds,
    )
    observer = NetworkProbes(settings, HeartbeatReader(replica, settings.heartbeat_stale_seconds))
    try:
        return run(
            event,
            settings,
            clients,
            observer,
            time_left=lambda: context.get_remaining_time_in_millis() / 1000,
        )
    finally:
        observer.close()


def run(
    event: Mapping[str, Any],
    settings: ProberSettings,
    clients: Clients,
    observer: Observer,
    time_left: Callable[[], float],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    emit: Emit | None = None,
    run_seconds: float = RUN_SECONDS,
) -> dict[str, Any]:
    """One scheduled run: observe until the time is nearly up, act at most once, keep the state."""
    publish = emit or print_record
    base = {"globalCluster": settings.global_cluster_id, "target": settings.target_cluster_arn}
    policy = Settings.of(settings)
    now = started = clock()
    if is_stale(_event_time(event), now, policy):
        return _report(
            {**base, "action": Action.IGNORE.value, "reason": f"stale event from {event.get('time')}"}
        )

    loaded = _load_state(clients.ssm, settings, now)
    watch, notified = loaded
    record = _load_record(clients.ssm, settings)
    cluster = describe(clients.rds, settings)
    publish(_metrics(settings, now, {WRITER_IN_STANDBY: int(cluster.writer_in_standby)}))
    fetched = now
    lags = clients.lag.readings(_lag_window_start(watch, now, policy), fetched)
    outcome: dict[str, Any] = {}
    disagree = False
    while True:
        observation = observer.observe(clock())
        degraded = observation.degraded
        if not cluster.writer_in_standby:
            # While the standby holds the writer the witnesses guard nothing: WriterInStandby says so instead.
            watch, disagree = watch.observe(observation), degraded is not None
            publish(_metrics(settings, observation.at, {WITNESSES_DEGRADED: int(degraded is not None)}))
        reference = lag_reference(watch)
        if reference is not None and reference > fetched:
            # The writer was last seen after this run's readings: read again, up to now.
            fetched = clock()
            lags = clients.lag.readings(_lag_window_start(watch, fetched, policy), fetched)
        decision = decide(clock(), watch, observation, cluster, lags, record, policy)
        outcome = {**base, "action": decision.action.value, "reason": decision.reason}
        if degraded:
            outcome["witnesses"] = degraded
        if decision.action is Action.RECORD:
            outcome = _finish_record(clients, settings, base, cluster, decision)
            watch = Watch()
            break
        if decision.action is Action.PROMOTE:
            outcome = _promote(clients, settings, base, observer, clock, decision, watch)
            watch = Watch()
            break
        if decision.action is Action.HOLD and not notified:
            _notify(clients.sns, settings, "Failover held: a person decides", outcome)
            notified = True
        if decision.action is Action.NONE:
            notified = False
        interval = settings.probe_interval_seconds
        elapsed = (clock() - started).total_seconds()
        if elapsed + interval > run_seconds or time_left() < interval + END_MARGIN_SECONDS:
            break
        sleep(settings.probe_interval_seconds)
    _save_state(clients.ssm, settings, loaded, (watch, notified), clock(), disagree)
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


def _lag_window_start(watch: Watch, now: datetime, policy: Settings) -> datetime:
    """Far enough back for the reading a decision in this run may need: up to `lag_max_age_seconds`
    before the writer was last seen, which is at most `detection_seconds` before the witnesses agree
    (decision.py holds otherwise), and they agree now at the latest."""
    latest_agreement = now - timedelta(seconds=policy.detection_seconds)
    reference = min(lag_reference(watch) or now, latest_agreement)
    return reference - timedelta(seconds=policy.lag_max_age_seconds + LAG_PERIOD_SECONDS)


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


def _time(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def _load_state(ssm: Any, settings: ProberSettings, now: datetime) -> tuple[Watch, bool]:
    value = json.loads(ssm.get_parameter(Name=settings.state_parameter)["Parameter"]["Value"])
    saved = _time(value.get("savedAt"))
    if saved is None or now - saved > timedelta(seconds=STATE_CONTINUITY_SECONDS):
        return Watch(), False
    watch = Watch(
        suspect=Streak(_time(value.get("suspectSince"))),
        lost=Streak(_time(value.get("lostSince"))),
        writer_seen=_time(value.get("writerSeenAt")),
        last_beat=_time(value.get("lastBeatAt")),
    )
    return watch, bool(value.get("notified"))


def _save_state(
    ssm: Any,
    settings: ProberSettings,
    loaded: tuple[Watch, bool],
    now_state: tuple[Watch, bool],
    at: datetime,
    degraded: bool,
) -> None:
    """Keep the watch while it matters to the next run: a streak under way, or witnesses that disagree (the
    writer's last sign may then be needed); clear it once when that ends; quiet times write nothing."""
    (watch, notified), (before, _) = now_state, loaded
    if watch.suspect.since is None and not degraded:
        if before == Watch():
            return
        watch, notified = Watch(), False

    def text(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    value = {
        "suspectSince": text(watch.suspect.since),
        "lostSince": text(watch.lost.since),
        "writerSeenAt": text(watch.writer_seen),
        "lastBeatAt": text(watch.last_beat),
        "notified": notified,
        "savedAt": at.isoformat(),
    }
    ssm.put_parameter(Name=settings.state_parameter, Value=json.dumps(value), Type="String", Overwrite=True)


# --- acting ----------------------------------------------------------------------------------------------


def _promote(
    clients: Clients,
    settings: ProberSettings,
    base: dict[str, Any],
    observer: Observer,
    clock: Callable[[], datetime],
    decision: Decision,
    watch: Watch,
) -> dict[str, Any]:
    # Right before the lossy call: the database and the primary once more.
    cluster = describe(clients.rds, settings)
    recheck = still_lost(decision, observer.observe(clock()), cluster)
    if recheck.action is not Action.PROMOTE:
        return {**base, "action": recheck.action.value, "reason": recheck.reason}
    lag, last_seen = decision.lag or Lag(), lag_reference(watch)
    record = {
        **base,
        "action": "failover",
        "status": "requested",
        "reason": decision.reason,
        "writerLastSeenAt": last_seen.isoformat(timespec="seconds") if last_seen else None,
        "rpoLagSeconds": lag.seconds,
        "heartbeatGapSeconds": decision.heartbeat_gap_seconds,
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


def print_record(record: Mapping[str, Any]) -> None:
    """One JSON line on stdout: the function's log stream (with Text log format, CloudWatch Logs reads an
    embedded-metric-format line as is)."""
    print(json.dumps(record, default=str, separators=(",", ":")), file=sys.stdout, flush=True)


def _metrics(settings: ProberSettings, at: datetime, counts: Mapping[str, int]) -> dict[str, Any]:
    """One embedded-metric-format record: `counts` under the stack's dimension."""
    return {
        "_aws": {
            "Timestamp": int(at.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": METRIC_NAMESPACE,
                    "Dimensions": [[STACK_DIMENSION]],
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in counts],
                }
            ],
        },
        STACK_DIMENSION: settings.stack,
        **counts,
    }


def _report(outcome: dict[str, Any], level: int = logging.INFO) -> dict[str, Any]:
    log.log(level, json.dumps(outcome, default=str))
    return outcome
