"""The prober's Lambda against botocore's Stubber: every AWS call it makes is checked against the real
RDS, SSM, CloudWatch and SNS API models (names, types, required parameters), and every answer it reads is
a shape those APIs return. The network observations are scripted here (the probes have their own tests
against a real PostgreSQL and a DNS server; tests/functions/test_failover_on_postgres.py runs the whole
prober against a real primary and its streaming replica)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from testkit.dns import dns_server
from testkit.postgres import Postgres

from functions.failover_prober import handler
from functions.failover_prober.decision import Heartbeat, Observation
from functions.failover_prober.heartbeat import Database, HeartbeatReader
from functions.failover_prober.settings import METRIC_NAMESPACE

GLOBAL_ID = "inference-fleet-prod"
PRIMARY = "arn:aws:rds:us-east-1:123456789012:cluster:data-us-east-1"
STANDBY = "arn:aws:rds:us-west-2:123456789012:cluster:data-us-west-2"
RECORD = "/inference-fleet/prod/aurora-promotion/last"
STATE = "/inference-fleet/prod/aurora-promotion/prober"
TOPIC = "arn:aws:sns:us-west-2:123456789012:fleet-prod-usw2-alerts"
T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
SETTINGS = handler.ProberSettings(
    stack="prod",
    global_cluster_id=GLOBAL_ID,
    target_cluster_arn=STANDBY,
    standby_cluster_id="data-us-west-2",
    primary_writer_host="data-us-east-1.cluster-abc.us-east-1.rds.amazonaws.com",
    database_port=5432,
    standby_reader_host="data-us-west-2.cluster-ro-def.us-west-2.rds.amazonaws.com",
    database_name="litellm",
    witness_user="fleet_prober",
    heartbeat_stale_seconds=30,
    status_record="_status.us-east-1.api.fleet.example.com",
    record_parameter=RECORD,
    state_parameter=STATE,
    topic_arn=TOPIC,
    probe_interval_seconds=10,
    probe_timeout_seconds=3,
    promote_after_seconds=60,
    rpo_seconds=20,
    detection_seconds=76,
)
LOST = (False, "failing", "stopped")
HEALTHY = (True, "healthy", "advancing")
PEERING_AND_GATEWAY_DOWN = (False, "failing", "advancing")
# The writer's last beat the standby holds in a region loss (T0 is the run's scheduled time).
LAST_BEAT = T0 - timedelta(seconds=100)


def schedule_event(at: datetime = T0) -> dict[str, Any]:
    """What EventBridge delivers for a scheduled rule."""
    return {
        "version": "0",
        "id": "e-1",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-west-2",
        "resources": ["arn:aws:events:us-west-2:123456789012:rule/promotion-schedule"],
        "detail": {},
    }


def global_cluster(writer: str = PRIMARY, moving_to: str | None = None) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "GlobalClusterIdentifier": GLOBAL_ID,
        "Status": "available",
        "Engine": "aurora-postgresql",
        "GlobalClusterMembers": [
            {"DBClusterArn": arn, "IsWriter": arn == writer, "Readers": []} for arn in (PRIMARY, STANDBY)
        ],
    }
    if moving_to:
        cluster["FailoverState"] = {
            "Status": "failing-over",
            "FromDbClusterArn": PRIMARY,
            "ToDbClusterArn": moving_to,
            "IsDataLossAllowed": True,
        }
    return {"GlobalClusters": [cluster]}


def beat(status: str, at: datetime) -> Heartbeat:
    last = at - timedelta(seconds=3) if status == "advancing" else LAST_BEAT
    return Heartbeat.read(last, (at - last).total_seconds(), SETTINGS.heartbeat_stale_seconds)


@dataclass
class Script:
    """The network as the prober sees it, one observation per call; and a clock the run's sleeps move."""

    signals: list[tuple[bool, str, str]]
    now: datetime = T0 + timedelta(seconds=2)
    observed: list[Observation] = field(default_factory=list)

    def observe(self, at: datetime) -> Observation:
        writer, status, heartbeat = self.signals[min(len(self.observed), len(self.signals) - 1)]
        observation = Observation(at, writer, status, beat(heartbeat, at))  # type: ignore[arg-type]
        self.observed.append(observation)
        return observation

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def time_left(self) -> float:
        return 70 - (self.now - T0).total_seconds()


class Aws:
    """Real botocore clients for the standby region, every call answered by a Stubber."""

    def __init__(self) -> None:
        session = botocore.session.get_session()
        creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-west-2"}
        self.cloudwatch = session.create_client("cloudwatch", **creds)
        self.clients = handler.Clients(
            rds=session.create_client("rds", **creds),
            ssm=session.create_client("ssm", **creds),
            sns=session.create_client("sns", **creds),
            lag=handler.CloudWatchLag(self.cloudwatch, SETTINGS.standby_cluster_id),
        )
        self.stubs = {name: Stubber(getattr(self.clients, name)) for name in ("rds", "ssm", "sns")}
        self.stubs["cloudwatch"] = Stubber(self.cloudwatch)
        self.published: list[dict[str, Any]] = []
        self.written: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []

    def parameter(self, name: str, value: dict[str, Any]) -> None:
        self.stubs["ssm"].add_response(
            "get_parameter",
            {"Parameter": {"Name": name, "Type": "String", "Value": json.dumps(value), "Version": 3}},
            {"Name": name},
        )

    def put(self, name: str) -> None:
        self.stubs["ssm"].add_response(
            "put_parameter",
            {"Version": 4, "Tier": "Standard"},
            {"Name": name, "Value": ANY, "Type": "String", "Overwrite": True},
        )

    def describe(self, response: dict[str, Any]) -> None:
        self.stubs["rds"].add_response(
            "describe_global_clusters", response, {"GlobalClusterIdentifier": GLOBAL_ID}
        )

    def lag(self, seconds: float | None, at: datetime = LAST_BEAT - timedelta(minutes=2)) -> None:
        """One minute's AuroraGlobalDBRPOLag (or none at all), newest first as the prober asks."""
        result: dict[str, Any] = {"Id": "rpolag", "Label": "AuroraGlobalDBRPOLag", "StatusCode": "Complete"}
        result.update(
            {"Timestamps": [at], "Values": [seconds * 1000]}
            if seconds is not None
            else {"Timestamps": [], "Values": []}
        )
        self.stubs["cloudwatch"].add_response(
            "get_metric_data",
            {"MetricDataResults": [result]},
            {
                "MetricDataQueries": [
                    {
                        "Id": "rpolag",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "AWS/RDS",
                                "MetricName": "AuroraGlobalDBRPOLag",
                                "Dimensions": [{"Name": "DBClusterIdentifier", "Value": "data-us-west-2"}],
                            },
                            "Period": 60,
                            "Stat": "Maximum",
                        },
                    }
                ],
                "StartTime": ANY,
                "EndTime": ANY,
                "ScanBy": "TimestampDescending",
            },
        )

    def publish(self) -> None:
        self.stubs["sns"].add_response(
            "publish", {"MessageId": "m-1"}, {"TopicArn": TOPIC, "Subject": ANY, "Message": ANY}
        )

    def start(self, state: dict[str, Any] | None = None, record: dict[str, Any] | None = None) -> None:
        """What every fresh run reads first: its state, the last record, the database and the lag."""
        self.parameter(STATE, state or {"suspectSince": None, "notified": False, "savedAt": None})
        self.parameter(RECORD, record or {"action": "none"})

    def run(self, script: Script, event: dict[str, Any] | None = None) -> dict[str, Any]:
        for stub in self.stubs.values():
            stub.activate()
        # Keep what was written and published, to read it back in the tests.
        ssm_put, sns_publish = self.clients.ssm.put_parameter, self.clients.sns.publish
        self.clients.ssm.put_parameter = lambda **kw: (
            self.written.append(json.loads(kw["Value"])),
            ssm_put(**kw),
        )[1]
        self.clients.sns.publish = lambda **kw: (self.published.append(kw), sns_publish(**kw))[1]
        try:
            return handler.run(
                event or schedule_event(),
                SETTINGS,
                self.clients,
                script,
                script.time_left,
                script.clock,
                script.sleep,
                emit=self.metrics.append,
            )
        finally:
            for stub in self.stubs.values():
                stub.deactivate()

    def metric(self, name: str) -> list[int]:
        """The values of one published metric, in order (embedded metric format records)."""
        values = []
        for record in self.metrics:
            (directive,) = record["_aws"]["CloudWatchMetrics"]
            assert directive["Namespace"] == METRIC_NAMESPACE and directive["Dimensions"] == [["Stack"]]
            assert record["Stack"] == "prod"
            if name in {m["Name"] for m in directive["Metrics"]}:
                values.append(record[name])
        return values

    def assert_all_answered(self) -> None:
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


def lost_for(seconds: float, saved: datetime = T0) -> dict[str, Any]:
    """The state a previous run left: the region lost to all three witnesses for `seconds` before T0."""
    since = (T0 - timedelta(seconds=seconds)).isoformat()
    return {
        "suspectSince": since,
        "lostSince": since,
        "writerSeenAt": LAST_BEAT.isoformat(),
        "notified": False,
        "savedAt": saved.isoformat(),
    }


@pytest.fixture
def aws() -> Iterator[Aws]:
    made = Aws()
    yield made
    made.assert_all_answered()


def test_a_stale_event_does_nothing_at_all(aws):
    outcome = aws.run(Script([LOST]), schedule_event(T0 - timedelta(minutes=5)))
    assert outcome["action"] == "ignore"  # and no AWS call: the Stubber would have refused it


def test_a_healthy_minute_observes_six_times_and_writes_nothing(aws):
    aws.start()
    aws.describe(global_cluster())
    aws.lag(0.3)
    script = Script([HEALTHY])
    outcome = aws.run(script)
    assert outcome["action"] == "none"
    assert len(script.observed) == 6
    assert aws.written == [] and aws.published == []
    # Every observation tells the failover-safety alarm the witnesses agree; the writer is the primary's.
    assert aws.metric("WitnessesDegraded") == [0] * 6
    assert aws.metric("WriterInStandby") == [0]


def test_peering_broken_and_route53_failing_hold_and_tell_a_person_once_while_the_heartbeat_advances(aws):
    # The case: a standing break of the peering, then an unrelated Route53 failure, a live writer.
    aws.start(
        state={
            "suspectSince": (T0 - timedelta(seconds=50)).isoformat(),
            "notified": False,
            "savedAt": T0.isoformat(),
        }
    )
    aws.describe(global_cluster())
    aws.lag(0.3)
    aws.publish()
    aws.put(STATE)
    outcome = aws.run(Script([PEERING_AND_GATEWAY_DOWN]))
    assert outcome["action"] == "hold"
    assert "the writer is alive" in outcome["reason"]
    (message,) = aws.published
    assert message["Subject"] == "Failover held: a person decides"
    assert "heartbeat advancing" in json.loads(message["Message"])["witnesses"]
    state = aws.written[-1]
    assert state["notified"] is True and state["lostSince"] is None
    # Disagreeing witnesses, observation after observation: what the failover-safety alarm counts.
    assert aws.metric("WitnessesDegraded") == [1] * 6


def test_while_the_standby_holds_the_writer_it_says_so_and_watches_nothing(aws):
    aws.start(record={"action": "failover", "status": "accepted"})
    aws.describe(global_cluster(writer=STANDBY))
    aws.lag(None)
    outcome = aws.run(Script([LOST]))
    assert (outcome["action"], outcome["reason"]) == ("none", "the standby is already the writer")
    assert aws.metric("WriterInStandby") == [1]
    assert aws.metric("WitnessesDegraded") == []


def test_the_region_lost_long_enough_is_failed_over_once_with_the_record_around_the_call(aws):
    # The previous run saw the region lost 60 s ago: this run's first observation completes the window.
    aws.start(state=lost_for(60, saved=T0 - timedelta(seconds=5)))
    aws.describe(global_cluster())
    aws.lag(0.4)
    aws.describe(global_cluster())  # read again right before the lossy call
    aws.put(RECORD)
    aws.stubs["rds"].add_response(
        "failover_global_cluster",
        {"GlobalCluster": global_cluster(moving_to=STANDBY)["GlobalClusters"][0]},
        {"GlobalClusterIdentifier": GLOBAL_ID, "TargetDbClusterIdentifier": STANDBY, "AllowDataLoss": True},
    )
    aws.put(RECORD)
    aws.publish()
    aws.put(STATE)
    script = Script([LOST])
    outcome = aws.run(script)
    assert outcome["action"] == "promote"
    assert len(script.observed) == 2  # the deciding observation and the re-check
    requested, accepted, state = aws.written
    assert (requested["status"], accepted["status"]) == ("requested", "accepted")
    assert accepted["rpoLagSeconds"] == 0.4 and accepted["action"] == "failover"
    assert accepted["writerLastSeenAt"] == LAST_BEAT.isoformat()
    assert state["suspectSince"] is None and state["lostSince"] is None
    (message,) = aws.published
    assert message["Subject"] == "Failover to the standby requested"


def test_a_retry_after_a_half_done_promotion_writes_the_record(aws):
    aws.start(
        record={"action": "failover", "status": "requested", "requestedAt": "2026-11-23T11:59:10+00:00"}
    )
    aws.describe(global_cluster(moving_to=STANDBY))
    aws.lag(None)
    aws.parameter(
        RECORD, {"action": "failover", "status": "requested", "requestedAt": "2026-11-23T11:59:10+00:00"}
    )
    aws.put(RECORD)
    aws.publish()
    outcome = aws.run(Script([LOST]))
    assert outcome["action"] == "record"
    (record,) = aws.written
    assert record["status"] == "accepted" and record["confirmedOnRetry"] is True
    assert record["requestedAt"] == "2026-11-23T11:59:10+00:00"


def test_a_failover_already_started_by_another_run_is_not_an_error(aws):
    aws.start(state=lost_for(70))
    aws.describe(global_cluster())
    aws.lag(0.2)
    aws.describe(global_cluster())
    aws.put(RECORD)
    aws.stubs["rds"].add_client_error(
        "failover_global_cluster", service_error_code="InvalidGlobalClusterStateFault", http_status_code=400
    )
    aws.describe(global_cluster(moving_to=STANDBY))
    aws.put(STATE)
    outcome = aws.run(Script([LOST]))
    assert (outcome["action"], outcome["reason"]) == ("none", "another run's failover is under way")
    assert [w["status"] for w in aws.written if "status" in w] == ["requested"]


def test_a_refused_failover_is_recorded_as_failed_announced_and_raised(aws):
    aws.start(state=lost_for(70))
    aws.describe(global_cluster())
    aws.lag(0.2)
    aws.describe(global_cluster())
    aws.put(RECORD)
    aws.stubs["rds"].add_client_error(
        "failover_global_cluster", service_error_code="InvalidParameterValue", http_status_code=400
    )
    aws.describe(global_cluster())
    aws.put(RECORD)
    aws.publish()
    with pytest.raises(ClientError):
        aws.run(Script([LOST]))
    assert [w["status"] for w in aws.written] == ["requested", "failed"]
    assert aws.published[0]["Subject"] == "Failover to the standby FAILED"


def test_an_unknown_lag_holds_and_tells_a_person_once(aws):
    aws.start(state=lost_for(70))
    aws.describe(global_cluster())
    aws.lag(None)
    aws.publish()
    aws.put(STATE)
    outcome = aws.run(Script([LOST]))
    assert outcome["action"] == "hold"
    assert len(aws.published) == 1
    assert aws.written[-1]["notified"] is True


def test_a_stale_state_from_an_earlier_incident_does_not_count(aws):
    long_ago = T0 - timedelta(hours=2)
    aws.start(state={**lost_for(7200, saved=long_ago)})
    aws.describe(global_cluster())
    aws.lag(0.2)
    aws.put(STATE)
    outcome = aws.run(Script([LOST]))
    assert outcome["action"] == "watch"  # the count started again with this run
    first = (T0 + timedelta(seconds=2)).isoformat()
    assert (aws.written[-1]["suspectSince"], aws.written[-1]["lostSince"]) == (first, first)
    assert aws.written[-1]["writerSeenAt"] == LAST_BEAT.isoformat()


def test_a_target_outside_the_global_database_needs_a_person(aws):
    aws.start()
    response = global_cluster()
    response["GlobalClusters"][0]["GlobalClusterMembers"] = [{"DBClusterArn": PRIMARY, "IsWriter": True}]
    aws.describe(response)
    with pytest.raises(handler.PromotionError, match="is not a member of inference-fleet-prod"):
        aws.run(Script([LOST]))


def test_network_probes_observe_the_real_writer_and_the_status_record(postgres: Postgres):
    settings = replace(SETTINGS, primary_writer_host=postgres.host, database_port=postgres.port)
    # A server without the heartbeat's table (the bootstrap never ran): unknown, never "stopped".
    replica = Database(
        postgres.host, postgres.port, "postgres", "rdsadmin", lambda: postgres.superuser_password
    )

    def probes(port: int) -> handler.NetworkProbes:
        return handler.NetworkProbes(
            settings, HeartbeatReader(replica, 30), resolver="127.0.0.1", dns_port=port
        )

    for value, status in (("healthy", "healthy"), ("failing", "failing"), ("surprise", "unknown")):
        with dns_server({SETTINGS.status_record: [value]}) as port:
            observed = probes(port).observe(T0)
        assert (observed.writer_reachable, observed.primary_status) == (True, status)
        assert observed.heartbeat.status == "unknown"
    # No resolver answering at all: the primary's status is unknown, never "failing".
    with dns_server({}) as port:
        observed = probes(port).observe(T0)
    assert observed.primary_status == "unknown"


def test_the_entry_point_reads_its_settings_from_the_environment(monkeypatch):
    env = {
        "STACK": "prod",
        "GLOBAL_CLUSTER_ID": GLOBAL_ID,
        "TARGET_CLUSTER_ARN": STANDBY,
        "STANDBY_CLUSTER_ID": "data-us-west-2",
        "PRIMARY_WRITER_HOST": SETTINGS.primary_writer_host,
        "DATABASE_PORT": "5432",
        "STANDBY_READER_HOST": SETTINGS.standby_reader_host,
        "DATABASE_NAME": "litellm",
        "WITNESS_USER": "fleet_prober",
        "HEARTBEAT_STALE_SECONDS": "30",
        "STATUS_RECORD": SETTINGS.status_record,
        "RECORD_PARAMETER": RECORD,
        "STATE_PARAMETER": STATE,
        "TOPIC_ARN": TOPIC,
        "PROBE_INTERVAL_SECONDS": "10",
        "PROBE_TIMEOUT_SECONDS": "3",
        "AGREE_SECONDS": "60",
        "RPO_SECONDS": "20",
        "DETECTION_SECONDS": "76",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert handler.ProberSettings.from_env() == SETTINGS

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 70_000

    # A stale event makes no call, so the real clients are built but never used.
    assert handler.handle(schedule_event(T0), Context())["action"] == "ignore"
