"""The contract between the program and the failover functions: what components/failover renders into
the functions' environments (`ProberSettings.to_env`, `HeartbeatSettings.to_env`) is what they read
(`from_env`), and the constants both sides use are defined here once. Standard library only: it ships in
the functions' archive.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

# A run observes for this long, then ends before the next scheduled run (every 60 s) starts.
RUN_SECONDS = 55
# A scheduled event older than this is covered by the next minute's run: Lambda does not retry it, and a
# run that receives it late does nothing.
MAX_EVENT_AGE_SECONDS = 60
# The TXT values of the status record (components/failover: a failover pair on the primary's check).
STATUS_HEALTHY = "healthy"
STATUS_FAILING = "failing"
# What the two SSM parameters hold until a run writes them.
NO_PROMOTION_RECORD: Mapping[str, Any] = {"action": "none"}
QUIET_STATE: Mapping[str, Any] = {
    "suspectSince": None,
    "lostSince": None,
    "writerSeenAt": None,
    "lastBeatAt": None,
    "notified": False,
    "savedAt": None,
}
# A lag reading older than this before the writer was last seen says nothing about what a failover loses.
LAG_MAX_AGE_SECONDS = 300

# The heartbeat witness: one row the primary region writes through the global writer, which the prober
# reads from the standby's own replica. The database bootstrap (functions/db_bootstrap/witness.py) creates
# the table and the two roles, each logging in with IAM database authentication (no password exists).
HEARTBEAT_SCHEMA = "fleet_failover"
HEARTBEAT_TABLE = f"{HEARTBEAT_SCHEMA}.heartbeat"
HEARTBEAT_WRITER_USER = "fleet_heartbeat"  # may update the row, nothing else
WITNESS_READER_USER = "fleet_prober"  # may read the row, nothing else
# The writer beats every 5 s, in runs of 115 s started every minute: two runs overlap, so a schedule's
# jitter within its minute (EventBridge) leaves no gap longer than a beat and a cold start.
HEARTBEAT_INTERVAL_SECONDS = 5
HEARTBEAT_RUN_SECONDS = 115
# The heartbeat counts as stopped once the newest beat the standby holds is older than this: a beat
# interval, a run handover with a cold start (~10 s) and replication lag (the data tier alarms at half
# the RPO bound) stay well inside it. At the stacks' settings Route53's verdict is the later witness of a
# region loss; at its fastest (10 s, threshold 1) this is, by 4 s (budget.witness_spread_seconds).
HEARTBEAT_STALE_SECONDS = 30

# What the prober publishes (CloudWatch embedded metric format, in the standby region), under STACK_DIMENSION:
METRIC_NAMESPACE = "inference-fleet/failover"
STACK_DIMENSION = "Stack"
# 1 while a witness is unknown or the witnesses disagree (the failover-safety alarm's metric);
WITNESSES_DEGRADED = "WitnessesDegraded"
# 1 while the writer is the standby's, or a failover there is under way (DNS follows it: components/failover).
WRITER_IN_STANDBY = "WriterInStandby"


@dataclass(frozen=True)
class ProberSettings:
    stack: str
    global_cluster_id: str
    # The standby cluster: its ARN is the failover's target, its identifier names its lag metric.
    target_cluster_arn: str
    standby_cluster_id: str
    primary_writer_host: str
    database_port: int
    # The heartbeat, read from the standby's own replica (its secondary cluster's reader endpoint).
    standby_reader_host: str
    database_name: str
    witness_user: str
    heartbeat_stale_seconds: float
    status_record: str
    record_parameter: str
    state_parameter: str
    topic_arn: str
    probe_interval_seconds: float
    probe_timeout_seconds: float
    # The stack's `promoteAfterSeconds`: how long the witnesses must agree, without a break.
    promote_after_seconds: int
    rpo_seconds: int
    # The region-loss budget's detection term, and a probe interval: the most the witnesses of one loss
    # can be apart (Route53's verdict is the slowest).
    detection_seconds: float

    def to_env(self) -> dict[str, str]:
        return _to_env(self, ENV_NAMES)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ProberSettings:
        return cls(**_from_env(cls, ENV_NAMES, env))


# Field -> environment variable (the names deployed functions already read).
ENV_NAMES: Mapping[str, str] = {
    "stack": "STACK",
    "global_cluster_id": "GLOBAL_CLUSTER_ID",
    "target_cluster_arn": "TARGET_CLUSTER_ARN",
    "standby_cluster_id": "STANDBY_CLUSTER_ID",
    "primary_writer_host": "PRIMARY_WRITER_HOST",
    "database_port": "DATABASE_PORT",
    "standby_reader_host": "STANDBY_READER_HOST",
    "database_name": "DATABASE_NAME",
    "witness_user": "WITNESS_USER",
    "heartbeat_stale_seconds": "HEARTBEAT_STALE_SECONDS",
    "status_record": "STATUS_RECORD",
    "record_parameter": "RECORD_PARAMETER",
    "state_parameter": "STATE_PARAMETER",
    "topic_arn": "TOPIC_ARN",
    "probe_interval_seconds": "PROBE_INTERVAL_SECONDS",
    "probe_timeout_seconds": "PROBE_TIMEOUT_SECONDS",
    "promote_after_seconds": "AGREE_SECONDS",
    "rpo_seconds": "RPO_SECONDS",
    "detection_seconds": "DETECTION_SECONDS",
}


@dataclass(frozen=True)
class HeartbeatSettings:
    """The heartbeat writer's (components/failover/heartbeat.py renders it, heartbeat.py reads it)."""

    # The global writer endpoint: the beat proves what the gateways write through accepts commits.
    writer_host: str
    database_port: int
    database_name: str
    writer_user: str
    # The region the writer is expected in (the primary): IAM database tokens are signed for it.
    region: str
    interval_seconds: float
    run_seconds: float

    def to_env(self) -> dict[str, str]:
        return _to_env(self, HEARTBEAT_ENV_NAMES)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> HeartbeatSettings:
        return cls(**_from_env(cls, HEARTBEAT_ENV_NAMES, env))


HEARTBEAT_ENV_NAMES: Mapping[str, str] = {
    "writer_host": "WRITER_HOST",
    "database_port": "DATABASE_PORT",
    "database_name": "DATABASE_NAME",
    "writer_user": "WRITER_USER",
    "region": "WRITER_REGION",
    "interval_seconds": "BEAT_INTERVAL_SECONDS",
    "run_seconds": "RUN_SECONDS",
}


def _to_env(settings: Any, names: Mapping[str, str]) -> dict[str, str]:
    return {names[f.name]: _text(getattr(settings, f.name)) for f in fields(settings)}


def _from_env(cls: type, names: Mapping[str, str], env: Mapping[str, str]) -> dict[str, Any]:
    """Each field from its variable, as its annotated type (str, int or float) reads the text."""
    types = get_type_hints(cls)
    return {name: types[name](env[variable]) for name, variable in names.items()}


def _text(value: object) -> str:
    """Numbers as their shortest text: a whole float without its '.0', so 3 and 3.0 render alike."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
