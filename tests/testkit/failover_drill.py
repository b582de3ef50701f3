"""The failover prober against a real database, for the drills (tests/functions/test_failover_on_postgres.py)
and the benchmark (bench/failover.py).

    writer: PostgreSQL primary  --streaming replication-->  standby's secondary: its replica
      ^ heartbeat writer (functions/failover_prober/heartbeat.py, every 0.1 s)     ^ heartbeat reader
      ^ a client committing rows (what a region loss may lose)                     ^ RPO-lag sampler
      ^ the prober's writer probe, through a TCP proxy (the peering: blackholed on cue)
    Route53's verdict: a DNS server answering the status record (healthy / failing on cue)
    RDS: DescribeGlobalClusters and FailoverGlobalCluster through a real botocore client, answered by the
         pair (pg_promote in place of the failover); SSM and SNS: moto_server

Everything the prober runs is its own code (`handler.run`, `NetworkProbes`, `HeartbeatReader`), with
its periods scaled down (`Periods`). Emulated, and only these: IAM database authentication (the witness
roles log in with passwords here), Route53's checkers (the status record is set by the drill), and the
RDS control plane over the pair. The lag reading stands in for AuroraGlobalDBRPOLag: the time since the
newest commit the replica has replayed, sampled every `lag_sample_seconds` (like Aurora's, it keeps
rising once the writer is gone, while the client below commits continuously).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.validate import validate_parameters

from functions.db_bootstrap.handler import bootstrap
from functions.db_bootstrap.pgwire import Connection, Endpoint, PostgresError
from functions.db_bootstrap.settings import Witness
from functions.failover_prober import handler
from functions.failover_prober.decision import Lag, Observation
from functions.failover_prober.heartbeat import Database, HeartbeatReader, beat
from functions.failover_prober.settings import (
    HEARTBEAT_TABLE,
    HEARTBEAT_WRITER_USER,
    NO_PROMOTION_RECORD,
    QUIET_STATE,
    WITNESS_READER_USER,
    WITNESSES_DEGRADED,
    HeartbeatSettings,
    ProberSettings,
)
from node_image.agent.tests.agent_testkit.net import wait_for

from .dns import dns_server
from .moto_server import client
from .postgres import SUPERUSER, Postgres, running_pair
from .tcp_proxy import TcpProxy, tcp_proxy

GLOBAL_ID = "inference-fleet-drill"
PRIMARY_ARN = "arn:aws:rds:us-east-1:123456789012:cluster:data-us-east-1"
STANDBY_ARN = "arn:aws:rds:us-west-2:123456789012:cluster:data-us-west-2"
STATUS_RECORD = "_status.us-east-1.api.drill.example.com"
MASTER, MASTER_PASSWORD, DATABASE = "litellm", "master-secret-1", "litellm"
WITNESS_PASSWORD = "stands-in-for-an-iam-token"
ROWS_TABLE = "drill_acknowledged"


@dataclass(frozen=True)
class Periods:
    """The deployed periods scaled down (deployed: probe 10 s, agreement 60 s, beat 5 s, stale 30 s)."""

    probe_interval_seconds: float = 0.25
    probe_timeout_seconds: float = 0.3
    promote_after_seconds: int = 2
    heartbeat_interval_seconds: float = 0.1
    heartbeat_stale_seconds: float = 1.5
    # Route53 calls the primary failing this long after it is lost (deployed: ~30-56 s, budget.py), and
    # the most the witnesses of one loss are apart (deployed: the region-loss detection term, 66 s, and a
    # probe interval).
    route53_detection_seconds: float = 2.0
    detection_seconds: float = 4.0
    run_seconds: float = 5.0
    lag_sample_seconds: float = 0.2
    rpo_seconds: int = 20


class GlobalDatabaseOnPostgres:
    """Aurora's control plane for one global database, as the prober reaches it through a real botocore
    RDS client (which checks every request against RDS's API model), answered by a primary and its
    replica: DescribeGlobalClusters says which writes, FailoverGlobalCluster with AllowDataLoss promotes
    the replica (pg_promote). Answers are checked against the API's output shapes, as botocore's Stubber
    checks its own."""

    def __init__(self, primary: Postgres, replica: Postgres) -> None:
        self._replica = replica
        self.failovers: list[float] = []
        self.client = botocore.session.get_session().create_client(
            "rds",
            region_name="us-west-2",
            aws_access_key_id="drill",
            aws_secret_access_key="drill",
        )
        self.client.meta.events.register_first("before-parameter-build.rds.*", self._keep_params)
        self.client.meta.events.register("before-call.rds.*", self._answer)

    def standby_writes(self) -> bool:
        return not self._replica.is_replica()

    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["drill_params"] = dict(params)

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        params = context["drill_params"]
        if params.get("GlobalClusterIdentifier") != GLOBAL_ID:
            return _error("GlobalClusterNotFoundFault", f"{params.get('GlobalClusterIdentifier')} not found")
        if model.name == "DescribeGlobalClusters":
            answer: dict[str, Any] = {"GlobalClusters": [self._cluster()]}
        elif model.name == "FailoverGlobalCluster":
            if params.get("TargetDbClusterIdentifier") != STANDBY_ARN or not params.get("AllowDataLoss"):
                return _error("InvalidParameterCombination", "the drill fails over to the standby, lossy")
            if self.failovers or self.standby_writes():
                return _error("InvalidGlobalClusterStateFault", "a failover is already under way")
            self.failovers.append(time.monotonic())
            self._replica.psql("SELECT pg_promote(false)")  # returns at once, as the API does
            answer = {"GlobalCluster": self._cluster()}
        else:
            raise AssertionError(f"the drill's RDS answers no {model.name}")
        validate_parameters(answer, model.output_shape)
        return AWSResponse(None, 200, {}, None), answer

    def _cluster(self) -> dict[str, Any]:
        standby = self.standby_writes()
        cluster: dict[str, Any] = {
            "GlobalClusterIdentifier": GLOBAL_ID,
            "Status": "available",
            "Engine": "aurora-postgresql",
            "GlobalClusterMembers": [
                {
                    "DBClusterArn": PRIMARY_ARN,
                    "IsWriter": not standby,
                    "Readers": [] if standby else [STANDBY_ARN],
                },
                {"DBClusterArn": STANDBY_ARN, "IsWriter": standby, "Readers": []},
            ],
        }
        if self.failovers and not standby:
            cluster["Status"] = "failing-over"
            cluster["FailoverState"] = {
                "Status": "failing-over",
                "FromDbClusterArn": PRIMARY_ARN,
                "ToDbClusterArn": STANDBY_ARN,
                "IsDataLossAllowed": True,
            }
        return cluster


def _error(code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    return AWSResponse(None, 400, {}, None), {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }


class Sampler(threading.Thread):
    """Runs `step` every `period` seconds until stopped; a step that raises ends only that step."""

    def __init__(self, period: float, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.period = period
        self.stopped = threading.Event()

    connection: Connection | None = None

    def step(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.step()
            except (OSError, PostgresError):
                self.connection = None  # the next step connects again
            self.stopped.wait(self.period)
        if self.connection is not None:
            with contextlib.suppress(OSError, PostgresError):
                self.connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


class ReplicaLag(Sampler):
    """The replica's RPO lag, sampled: seconds since the newest commit it has replayed."""

    def __init__(self, replica: Postgres, period: float) -> None:
        super().__init__(period, "replica-lag")
        self._endpoint = Endpoint(replica.host, replica.port, DATABASE, SUPERUSER, replica.superuser_password)
        self._readings: list[Lag] = []
        self._lock = threading.Lock()

    def step(self) -> None:
        self.connection = self.connection or Connection(self._endpoint, timeout=2)
        ((lag,),) = self.connection.execute(
            "SELECT EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())"
        )
        if lag is not None:
            with self._lock:
                self._readings.append(Lag(float(lag), datetime.now(UTC), period_seconds=0))

    def latest(self) -> Lag:
        """The newest reading (an empty Lag before the first)."""
        with self._lock:
            return self._readings[-1] if self._readings else Lag()

    def readings(self, start: datetime, end: datetime) -> list[Lag]:
        with self._lock:
            return [r for r in self._readings if r.at is not None and start <= r.at <= end]


class Client(Sampler):
    """A client committing one row at a time through the writer; what it was told is committed."""

    def __init__(self, primary: Postgres, period: float = 0.02) -> None:
        super().__init__(period, "client")
        self._endpoint = Endpoint(primary.host, primary.port, DATABASE, SUPERUSER, primary.superuser_password)
        self.acknowledged: list[tuple[int, float]] = []  # (row, when its COMMIT returned, epoch seconds)

    def step(self) -> None:
        row = len(self.acknowledged) + 1
        self.connection = self.connection or Connection(self._endpoint, timeout=2)
        self.connection.execute(f"INSERT INTO {ROWS_TABLE} (id) VALUES ({row})")
        self.acknowledged.append((row, time.time()))


@dataclass
class ProberLoop:
    """The prober's scheduled runs, back to back, in a thread; what it saw, decided and published."""

    settings: ProberSettings
    clients: handler.Clients
    observer: handler.NetworkProbes
    run_seconds: float
    seen: list[Observation] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    # (when, WitnessesDegraded): one per observation, as the prober published it.
    observations: list[tuple[datetime, int]] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ProberLoop:
        self._thread = threading.Thread(target=self._loop, name="prober", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def observe(self, at: datetime) -> Observation:
        observation = self.observer.observe(at)
        self.seen.append(observation)
        return observation

    def _emit(self, record: Any) -> None:
        if WITNESSES_DEGRADED in record:
            at = datetime.fromtimestamp(record["_aws"]["Timestamp"] / 1000, UTC)
            self.observations.append((at, record[WITNESSES_DEGRADED]))

    def _loop(self) -> None:
        while not self._stop.is_set():
            event = {"time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            try:
                outcome = handler.run(
                    event,
                    self.settings,
                    self.clients,
                    self,
                    # Stopping ends the run at its next observation, as the end of its time would.
                    time_left=lambda: 0.0 if self._stop.is_set() else 3600.0,
                    emit=self._emit,
                    run_seconds=self.run_seconds,
                )
            except BaseException as error:  # kept for the test to raise
                self.error = error
                return
            self.outcomes.append(outcome)

    def actions(self) -> list[str]:
        return [o["action"] for o in self.outcomes]

    def degraded(self, since: int = 0) -> list[int]:
        """WitnessesDegraded as published, from observation `since` on."""
        return [value for _, value in self.observations[since:]]

    def watch(self, seconds: float, timeout: float = 120) -> int:
        """Wait for the prober's own observations to span `seconds` more (their timestamps, not a timer: a
        busy machine stretches them, never shortens them); the index of the first of them."""
        first = len(self.observations)

        def spanned() -> bool:
            if self.error:
                return True
            seen = self.observations[first:]
            return len(seen) > 1 and (seen[-1][0] - seen[0][0]).total_seconds() >= seconds

        wait_for(spanned, timeout, f"observations over {seconds:g} s")
        if self.error:
            raise self.error
        return first


class Drill:
    """One PostgreSQL pair laid out as the program lays out Aurora, the witnesses and the prober."""

    def __init__(self, stack: contextlib.ExitStack, moto_url: str, periods: Periods = Periods()) -> None:
        self.periods = periods
        self.primary, self.replica = stack.enter_context(running_pair())
        self._prepare()
        self.path_to_writer: TcpProxy = stack.enter_context(tcp_proxy(self.primary.host, self.primary.port))
        self.replication: TcpProxy = stack.enter_context(tcp_proxy(self.primary.host, self.primary.port))
        self._replicate_through(self.replication)
        self.zone = {STATUS_RECORD: ["healthy"]}
        dns_port = stack.enter_context(dns_server(self.zone))
        self.heartbeat_stop = threading.Event()
        heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        heartbeat.start()
        stack.callback(heartbeat.join, 10)
        stack.callback(self.heartbeat_stop.set)
        self.client = Client(self.primary)
        self.lag = ReplicaLag(self.replica, periods.lag_sample_seconds)
        for sampler in (self.client, self.lag):
            sampler.start()
            stack.callback(sampler.stop)
        self.rds = GlobalDatabaseOnPostgres(self.primary, self.replica)
        self.settings = self._prober_settings(moto_url)
        self._topic_queue = self._alerts(moto_url)
        self.sqs = client(moto_url, "sqs")
        self._alerts_seen: list[dict[str, Any]] = []
        reader = Database(
            self.replica.host,
            self.replica.port,
            DATABASE,
            WITNESS_READER_USER,
            lambda: WITNESS_PASSWORD,
            timeout=periods.probe_timeout_seconds,
        )
        observer = handler.NetworkProbes(
            self.settings,
            HeartbeatReader(reader, periods.heartbeat_stale_seconds),
            resolver="127.0.0.1",
            dns_port=dns_port,
        )
        stack.callback(observer.close)
        clients = handler.Clients(
            rds=self.rds.client, ssm=client(moto_url, "ssm"), sns=client(moto_url, "sns"), lag=self.lag
        )
        self.prober = ProberLoop(self.settings, clients, observer, periods.run_seconds)
        # Started last, stopped first (before the pair goes).
        self._stack = stack

    def start_prober(self) -> ProberLoop:
        self.prober.start()
        self._stack.callback(self.prober.stop)
        return self.prober

    # --- faults ---------------------------------------------------------------------------------------

    def route53_says(self, status: str) -> None:
        self.zone[STATUS_RECORD] = [status]

    def lose_the_writer(self) -> float:
        """The primary region goes: the writer stops at once; Route53 sees the gateway fail a little later
        (in a thread). Returns when the writer was lost (monotonic)."""
        lost = time.monotonic()
        self.primary.stop("immediate")
        threading.Timer(self.periods.route53_detection_seconds, self.route53_says, ("failing",)).start()
        return lost

    def wait_heartbeat_on_replica(self) -> None:
        reader = HeartbeatReader(
            Database(
                self.replica.host, self.replica.port, DATABASE, WITNESS_READER_USER, lambda: WITNESS_PASSWORD
            ),
            self.periods.heartbeat_stale_seconds,
        )
        wait_for(lambda: reader.read().status == "advancing", 60, "the heartbeat on the replica")
        reader.close()

    def wait_prober_sees_the_writer_answer_behind(self, seconds: float) -> None:
        """Until the prober has seen the writer answer while the replica's heartbeat is `seconds` old."""

        def behind() -> bool:
            return any(
                o.writer_reachable and (o.heartbeat.age_seconds or 0) > seconds for o in self.prober.seen[-2:]
            )

        wait_for(behind, 120, f"the prober to see the writer answer with the replica {seconds:g} s behind")

    def wait_repaired(self) -> None:
        """Until the repair is on record where a later loss is judged from: a lag reading within the RPO,
        then the prober seeing every witness say "alive" after it. A loss is judged by the newest reading
        from before the writer's last sign; the prober's own observation of the writer answering is that
        sign, so the reading is this one or newer, not the outage's lag the replica has just replayed (a
        repair the prober never observed would also leave its streak running)."""
        rpo = self.periods.rpo_seconds

        def caught_up() -> bool:
            newest = self.lag.latest()
            return newest.seconds is not None and newest.seconds <= rpo

        wait_for(caught_up, 120, f"a replication-lag reading within the {rpo} s RPO")
        reading_at = self.lag.latest().at
        assert reading_at is not None

        def alive() -> bool:
            last = self.prober.seen[-1] if self.prober.seen else None
            return bool(
                last
                and last.at > reading_at
                and last.writer_reachable
                and last.primary_status == "healthy"
                and last.heartbeat.status == "advancing"
            )

        wait_for(alive, 120, "the prober to see every witness alive")

    # --- what happened --------------------------------------------------------------------------------

    def alerts(self) -> list[dict[str, Any]]:
        """Everything the prober has told a person so far (SNS, delivered to a queue on the topic)."""
        answer = self.sqs.receive_message(QueueUrl=self._topic_queue, MaxNumberOfMessages=10)
        for message in answer.get("Messages", []):
            self._alerts_seen.append(json.loads(message["Body"]))
            self.sqs.delete_message(QueueUrl=self._topic_queue, ReceiptHandle=message["ReceiptHandle"])
        return list(self._alerts_seen)

    def rows_lost(self) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(acknowledged rows, the acknowledged rows the promoted standby lacks)."""
        present = {
            int(r) for r in self.replica.psql(f"SELECT id FROM {ROWS_TABLE}", database=DATABASE).split()
        }
        acknowledged = list(self.client.acknowledged)
        return acknowledged, [(row, at) for row, at in acknowledged if row not in present]

    # --- setting up -----------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """RDS's layout (the master, its database), the bootstrap's witness, the drill's rows table."""
        self.primary.psql(f"CREATE ROLE {MASTER} LOGIN CREATEROLE CREATEDB PASSWORD '{MASTER_PASSWORD}'")
        self.primary.psql(f"GRANT rds_iam TO {MASTER} WITH ADMIN OPTION")
        self.primary.psql(f"CREATE DATABASE {DATABASE} OWNER {MASTER}")
        bootstrap(
            {
                "host": self.primary.host,
                "port": self.primary.port,
                "database": DATABASE,
                "masterUser": MASTER,
                "masterPassword": MASTER_PASSWORD,
                "gatewayUser": "litellm_gateway",
                "gatewayPassword": "gateway-secret-1",
                "witness": Witness(HEARTBEAT_TABLE, HEARTBEAT_WRITER_USER, WITNESS_READER_USER).to_event(),
            }
        )
        # IAM database authentication cannot exist here: the witness roles get a password instead.
        for role in (HEARTBEAT_WRITER_USER, WITNESS_READER_USER):
            self.primary.psql(f"ALTER ROLE {role} PASSWORD '{WITNESS_PASSWORD}'")
        self.primary.psql(
            f"CREATE TABLE {ROWS_TABLE} (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())",
            database=DATABASE,
        )

    def _replicate_through(self, proxy: TcpProxy) -> None:
        """The replica's stream through a proxy of its own: replication lag on cue (Aurora's replication
        does not use the peering: this proxy is not the writer probe's)."""
        self.replica.psql(
            f"ALTER SYSTEM SET primary_conninfo = 'host={proxy.host} port={proxy.port} user={SUPERUSER} "
            f"password={self.replica.superuser_password}'"
        )
        self.replica.psql("SELECT pg_reload_conf()")

    def _beat(self) -> None:
        settings = HeartbeatSettings(
            writer_host=self.primary.host,
            database_port=self.primary.port,
            database_name=DATABASE,
            writer_user=HEARTBEAT_WRITER_USER,
            region="us-east-1",
            interval_seconds=self.periods.heartbeat_interval_seconds,
            run_seconds=24 * 3600,
        )
        writer = Database(
            self.primary.host,
            self.primary.port,
            DATABASE,
            HEARTBEAT_WRITER_USER,
            lambda: WITNESS_PASSWORD,
            1.0,
        )
        with contextlib.suppress(Exception):  # the writer's loss ends it
            beat(settings, writer, should_stop=self.heartbeat_stop.is_set)

    def _prober_settings(self, moto_url: str) -> ProberSettings:
        ssm = client(moto_url, "ssm")
        names = {}
        for key, value in (("record", NO_PROMOTION_RECORD), ("state", QUIET_STATE)):
            names[key] = f"/drill/{uuid.uuid4().hex}/{key}"
            ssm.put_parameter(Name=names[key], Value=json.dumps(value), Type="String")
        p = self.periods
        return ProberSettings(
            stack="drill",
            global_cluster_id=GLOBAL_ID,
            target_cluster_arn=STANDBY_ARN,
            standby_cluster_id="data-us-west-2",
            primary_writer_host=self.path_to_writer.host,
            database_port=self.path_to_writer.port,
            standby_reader_host=self.replica.host,
            database_name=DATABASE,
            witness_user=WITNESS_READER_USER,
            heartbeat_stale_seconds=p.heartbeat_stale_seconds,
            status_record=STATUS_RECORD,
            record_parameter=names["record"],
            state_parameter=names["state"],
            topic_arn=client(moto_url, "sns").create_topic(Name=f"drill-{uuid.uuid4().hex[:8]}")["TopicArn"],
            probe_interval_seconds=p.probe_interval_seconds,
            probe_timeout_seconds=p.probe_timeout_seconds,
            promote_after_seconds=p.promote_after_seconds,
            rpo_seconds=p.rpo_seconds,
            detection_seconds=p.detection_seconds,
        )

    def _alerts(self, moto_url: str) -> str:
        sqs = client(moto_url, "sqs")
        queue = sqs.create_queue(QueueName=f"drill-alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        client(moto_url, "sns").subscribe(TopicArn=self.settings.topic_arn, Protocol="sqs", Endpoint=arn)
        return queue


@contextlib.contextmanager
def drill(moto_url: str, periods: Periods = Periods()) -> Iterator[Drill]:
    with contextlib.ExitStack() as stack:
        made = Drill(stack, moto_url, periods)
        made.wait_heartbeat_on_replica()
        yield made


__all__ = ["Drill", "GlobalDatabaseOnPostgres", "Periods", "drill"]
