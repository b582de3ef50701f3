"""The heartbeat witness's writer: a function in the primary region that commits one row through the
primary cluster's writer every 5 s, which the standby's prober reads from its own replica.

    EventBridge schedule (primary region), every minute
      -> Lambda in the primary's private subnets (functions/failover_prober/heartbeat.py), 115 s a run:
           UPDATE fleet_failover.heartbeat ... every 5 s, as `fleet_heartbeat` (IAM database authentication)
      -> runs overlap: a schedule's jitter within its minute never leaves the beat silent for long

Why a function of its own and not the gateway's sidecar: the beat must stop only when the writer does,
never with a failing gateway (the very failure Route53 reports). It writes to the primary cluster's own
endpoint, which is the global writer for as long as the primary holds it (the prober watches only then);
IAM database tokens are documented for cluster, reader and instance endpoints. It reaches nothing but the
database: no NAT, no AWS API (the token is signed locally with the function's credentials).

Monthly cost (arm64, 128 MB, 115 s a run, 43,800 runs): 629,625 GB-s, about $8.40, the same as the fleet
controller's runs (README: why overlapping one-minute runs rather than an always-on task).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.core.alarms import function_errors_alarm
from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.core.functions import (
    function_log_group,
    run_on_schedule,
    scheduled_runs_not_retried,
    vpc_function,
)
from components.core.iam import LAMBDA_VPC_ACCESS, database_connect_statement, log_statement, scoped_role
from components.core.security import SecurityGroups
from functions.failover_prober.settings import (
    HEARTBEAT_INTERVAL_SECONDS,
    HEARTBEAT_RUN_SECONDS,
    HEARTBEAT_WRITER_USER,
    MAX_EVENT_AGE_SECONDS,
    HeartbeatSettings,
)

PACKAGE = "failover_prober"
MODULE = "heartbeat"
SCHEDULE = "rate(1 minute)"
# A run beats for HEARTBEAT_RUN_SECONDS; the rest leaves room for a slow connection at its end.
FUNCTION_TIMEOUT_SECONDS = HEARTBEAT_RUN_SECONDS + 10


@dataclass(frozen=True)
class FailoverHeartbeatArgs:
    stack: StackContext
    primary: RegionContext
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    # The primary cluster: its endpoint, its security group, its resource id (for IAM database auth).
    writer_host: pulumi.Input[str]
    database_port: int
    database_name: str
    database_security_group_id: pulumi.Input[str]
    cluster_resource_id: pulumi.Input[str]
    topic_arn: pulumi.Input[str]
    log_retention_days: int


class FailoverHeartbeat(pulumi.ComponentResource):
    """The heartbeat's function, schedule, network path to the writer, role and failure alarm."""

    function_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: FailoverHeartbeatArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("inference-fleet:failover:FailoverHeartbeat", name, None, opts)
        here = args.primary.options(self)
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self, provider=args.primary.provider)
        ).account_id
        function_name = f"{PROJECT}-{args.stack.stack}-failover-heartbeat"
        logs = function_log_group(f"{name}-logs", function_name, args.log_retention_days, here)

        groups = SecurityGroups(name, args.vpc_id, here)
        group = groups.group("sg", "failover heartbeat: to the Aurora writer only")
        database = args.database_security_group_id
        groups.allow("out", "to-db", group.id, args.database_port, "to the Aurora writer", peer=database)
        groups.allow(
            "in",
            "db-from-heartbeat",
            database,
            args.database_port,
            "from the failover heartbeat",
            peer=group.id,
        )
        role = scoped_role(
            f"{name}-function",
            "lambda.amazonaws.com",
            account,
            [
                database_connect_statement(
                    "WriteHeartbeat",
                    args.primary.region,
                    account,
                    args.cluster_resource_id,
                    HEARTBEAT_WRITER_USER,
                ),
                log_statement(logs.arn),
                LAMBDA_VPC_ACCESS,
            ],
            here,
        )
        environment = pulumi.Output.from_input(args.writer_host).apply(
            lambda host: HeartbeatSettings(
                writer_host=host,
                database_port=args.database_port,
                database_name=args.database_name,
                writer_user=HEARTBEAT_WRITER_USER,
                region=args.primary.region,
                interval_seconds=HEARTBEAT_INTERVAL_SECONDS,
                run_seconds=HEARTBEAT_RUN_SECONDS,
            ).to_env()
        )
        function = vpc_function(
            f"{name}-function",
            PACKAGE,
            module=MODULE,
            function_name=function_name,
            description="Writes the failover heartbeat through the primary's Aurora writer every few seconds",
            role=role,
            logs=logs,
            subnet_ids=args.private_subnet_ids,
            security_group_id=group.id,
            timeout=FUNCTION_TIMEOUT_SECONDS,
            memory_size=128,
            environment=environment,
            opts=here,
        )
        scheduled_runs_not_retried(name, function, MAX_EVENT_AGE_SECONDS, here)
        run_on_schedule(
            name, function, SCHEDULE, "Runs the failover heartbeat: it beats for most of two minutes", here
        )
        function_errors_alarm(
            f"{name}-errors",
            args.topic_arn,
            here,
            function,
            description="The failover heartbeat wrote nothing for a whole run: the standby's prober sees the "
            "writer's heartbeat stopped and will not count it alive (a failover-safety alarm follows).",
        )
        self.function_name = function.name
        self.register_outputs({"functionName": self.function_name})
