"""Promote the Aurora global database to the standby region when the primary region's gateway is down.

EventBridge invokes this when the primary's Route53 health-check alarm enters ALARM, which it does only
after the check has failed for the configured time. The function runs in the standby region and talks to
RDS there, so it does not depend on the region that failed.

It acts at most once per outage and is safe to invoke again (a repeated alarm, an event retried):

- an event that is not our alarm entering ALARM: nothing to do;
- a failover or switchover already in progress, or the standby already the writer: nothing to do;
- otherwise: one FailoverGlobalCluster call (AllowDataLoss: the primary is presumed lost; Aurora's
  replication lag, typically under a second, bounds what is lost), then a record of it in an SSM
  parameter whose history keeps every promotion.

An API error is logged and raised: Lambda retries the event (twice, then sends it to the on-failure
queue). Nothing is recorded before RDS has accepted the failover, so a failed attempt leaves no trace
that claims otherwise, and the retry finds the database as it was.

Every outcome is one JSON log line. Planned switchovers (no data loss) are an operator's command; see
the README.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
log = logging.getLogger("aurora_promotion")
log.setLevel(logging.INFO)


class PromotionError(RuntimeError):
    """The global database is not in a state this function can promote from; a person must look."""


@dataclass(frozen=True)
class Settings:
    """What the function acts on, from its environment (set by the Pulumi program)."""

    global_cluster_id: str
    target_cluster_arn: str
    alarm_arn: str
    record_parameter: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            global_cluster_id=env["GLOBAL_CLUSTER_ID"],
            target_cluster_arn=env["TARGET_CLUSTER_ARN"],
            alarm_arn=env["ALARM_ARN"],
            record_parameter=env["RECORD_PARAMETER"],
        )


def handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    del context
    import boto3  # the Lambda runtime provides it; imported here so tests need no AWS session

    return promote(event, Settings.from_env(), boto3.client("rds"), boto3.client("ssm"))


def promote(
    event: Mapping[str, Any],
    settings: Settings,
    rds: Any,
    ssm: Any,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Any]:
    """Decide, act at most once, record; return what was done (also logged)."""
    base = {"globalCluster": settings.global_cluster_id, "target": settings.target_cluster_arn}
    detail = event.get("detail") or {}
    state = (detail.get("state") or {}).get("value")
    if event.get("detail-type") != ALARM_STATE_CHANGE or settings.alarm_arn not in (
        event.get("resources") or []
    ):
        return _report({**base, "action": "none", "reason": "not the primary health-check alarm"})
    if state != "ALARM":
        return _report({**base, "action": "none", "reason": f"alarm is {state}: the primary is healthy"})

    requested = False
    try:
        described = rds.describe_global_clusters(GlobalClusterIdentifier=settings.global_cluster_id)
        (cluster,) = described["GlobalClusters"]
        in_progress = (cluster.get("FailoverState") or {}).get("Status")
        if in_progress:
            return _report({**base, "action": "none", "reason": f"a failover is already {in_progress}"})
        members = {m["DBClusterArn"]: m for m in cluster.get("GlobalClusterMembers", [])}
        if settings.target_cluster_arn not in members:
            raise PromotionError(
                f"{settings.target_cluster_arn} is not a member of {settings.global_cluster_id}; "
                f"members: {', '.join(members) or 'none'}"
            )
        if members[settings.target_cluster_arn].get("IsWriter"):
            return _report({**base, "action": "none", "reason": "the standby is already the writer"})
        writer = next((arn for arn, m in members.items() if m.get("IsWriter")), None)

        rds.failover_global_cluster(
            GlobalClusterIdentifier=settings.global_cluster_id,
            TargetDbClusterIdentifier=settings.target_cluster_arn,
            AllowDataLoss=True,
        )
        requested = True
        record = {
            **base,
            "action": "failover",
            "from": writer,
            "alarmTime": event.get("time"),
            "eventId": event.get("id"),
            "requestedAt": now().isoformat(timespec="seconds"),
        }
        ssm.put_parameter(
            Name=settings.record_parameter, Value=json.dumps(record), Type="String", Overwrite=True
        )
    except Exception as error:
        # After an accepted failover only the record failed: say so; the retry will find it in progress.
        action = "failover-unrecorded" if requested else "error"
        _report(
            {**base, "action": action, "error": type(error).__name__, "message": str(error)},
            level=logging.ERROR,
        )
        raise
    return _report(record)


def _report(outcome: dict[str, Any], level: int = logging.INFO) -> dict[str, Any]:
    log.log(level, json.dumps(outcome))
    return outcome
