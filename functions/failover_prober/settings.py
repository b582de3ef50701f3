"""The contract between the program and the prober: what components/failover/prober.py renders into the
function's environment (`ProberSettings.to_env`) is what the handler reads (`ProberSettings.from_env`),
and the constants both sides use are defined here once. Standard library only: it ships in the function's
archive.
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
QUIET_STATE: Mapping[str, Any] = {"suspectSince": None, "notified": False, "savedAt": None}


@dataclass(frozen=True)
class ProberSettings:
    global_cluster_id: str
    # The standby cluster: its ARN is the failover's target, its identifier names its lag metric.
    target_cluster_arn: str
    standby_cluster_id: str
    primary_writer_host: str
    database_port: int
    status_record: str
    record_parameter: str
    state_parameter: str
    topic_arn: str
    probe_interval_seconds: int
    probe_timeout_seconds: float
    # The stack's `promoteAfterSeconds`: how long both signals must agree, without a break.
    promote_after_seconds: int
    rpo_seconds: int

    def to_env(self) -> dict[str, str]:
        return {ENV_NAMES[f.name]: _text(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ProberSettings:
        types = get_type_hints(cls)
        return cls(**{name: types[name](env[variable]) for name, variable in ENV_NAMES.items()})


# Field -> environment variable (the names deployed functions already read).
ENV_NAMES: Mapping[str, str] = {
    "global_cluster_id": "GLOBAL_CLUSTER_ID",
    "target_cluster_arn": "TARGET_CLUSTER_ARN",
    "standby_cluster_id": "STANDBY_CLUSTER_ID",
    "primary_writer_host": "PRIMARY_WRITER_HOST",
    "database_port": "DATABASE_PORT",
    "status_record": "STATUS_RECORD",
    "record_parameter": "RECORD_PARAMETER",
    "state_parameter": "STATE_PARAMETER",
    "topic_arn": "TOPIC_ARN",
    "probe_interval_seconds": "PROBE_INTERVAL_SECONDS",
    "probe_timeout_seconds": "PROBE_TIMEOUT_SECONDS",
    "promote_after_seconds": "AGREE_SECONDS",
    "rpo_seconds": "RPO_SECONDS",
}


def _text(value: object) -> str:
    """Numbers as their shortest text: a whole float without its '.0', so 3 and 3.0 render alike."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
