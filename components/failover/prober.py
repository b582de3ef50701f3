"""The standby's prober: decides, outside the primary region, when to fail the Aurora global database over.

    EventBridge schedule (standby region), every minute
      -> Lambda in the standby's private subnets (functions/failover_prober), observing for ~55 s:
           the primary writer over the VPC peering (a Postgres SSLRequest, every 10 s)
           Route53's verdict on the primary region (the status record, through the VPC's resolver)
           the writer's heartbeat on the standby's own replica (heartbeat.py writes it in the primary)
           the standby's RPO lag (CloudWatch, standby region)
      -> all three witnesses agree for `promoteAfterSeconds` and the lag is known and within the RPO:
           rds:FailoverGlobalCluster (AllowDataLoss) to the standby cluster, once; the record in SSM
      -> every decision worth a person's attention to the standby's alert topic
      -> WitnessesDegraded (each observation) -> the failover-safety alarm: a witness unknown, or the
         witnesses disagreeing, for five minutes, which would leave the prober unable to tell a region
         loss from a broken path (the issue's standing peering break, heard of only at the next failure)
      -> WriterInStandby (each run) -> the writer-location alarm, which the PRIMARY API record's health
         check follows (dns.py): DNS follows the writer

Nothing in it is a service of the primary region, Route53's API and CloudWatch's Route53 metrics
included (both served from us-east-1). Its role may read and fail over this global database only, log in
to the standby's replica as the heartbeat's reader, read and write its two parameters, read metrics,
publish to its topic, write its logs. It needs no reserved concurrency: a second concurrent run re-reads
the database before acting and finds the failover under way. A run that fails leaves its event in a queue
whose depth, like the function's errors, alarms.

Monthly cost (arm64, 128 MB, ~56 s a run, 43,800 runs): Lambda compute ~$4.10 + requests ~$0.01,
CloudWatch GetMetricData ~$0.44, Route53 queries ~$0.11, the inverted (calculated) health check $0.50, two
custom metrics $0.60 and two alarms $0.20: about $6. Route53 ARC's readiness and routing controls would be
~$1,800 (a cluster at $2.50/hour); an always-on Fargate task ~$7.30 plus its own patching.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.core.alarms import alarm, function_errors_alarm
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
from components.failover.budget import PROBE_INTERVAL_SECONDS, PROBE_TIMEOUT_SECONDS
from functions.failover_prober.settings import (
    HEARTBEAT_STALE_SECONDS,
    MAX_EVENT_AGE_SECONDS,
    METRIC_NAMESPACE,
    NO_PROMOTION_RECORD,
    QUIET_STATE,
    RUN_SECONDS,
    STACK_DIMENSION,
    WITNESS_READER_USER,
    WITNESSES_DEGRADED,
    WRITER_IN_STANDBY,
    ProberSettings,
)

PACKAGE = "failover_prober"
# The type the prober was declared with before it was named for what it is: an alias keeps its URNs.
FORMER_TYPE = "inference-fleet:promotion:AuroraPromotion"
SCHEDULE = "rate(1 minute)"
# A run observes for RUN_SECONDS; the rest of the timeout leaves room for the failover call and the record.
FUNCTION_TIMEOUT_SECONDS = RUN_SECONDS + 20
HTTPS_PORT = 443
# Minutes of a witness unknown or the witnesses disagreeing before a person hears failover safety is
# degraded (as long as the fleet controller may be blind before its alarm).
DEGRADED_ALARM_MINUTES = 5
# The writer-location alarm looks at this many minutes and fires on any one: a run's one datapoint a
# minute may land in either neighbour of its minute.
WRITER_ALARM_MINUTES = 3


@dataclass(frozen=True)
class FailoverProberArgs:
    stack: StackContext
    standby: RegionContext
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    # The primary region's private subnets, where its writer lives, reached over the peering.
    primary_private_cidrs: Sequence[str]
    global_cluster_id: pulumi.Input[str]
    global_cluster_arn: pulumi.Input[str]
    target_cluster_arn: pulumi.Input[str]
    standby_cluster_id: pulumi.Input[str]
    # Every member's ARN: FailoverGlobalCluster authorizes against the clusters it moves the writer between.
    member_cluster_arns: list[pulumi.Input[str]]
    primary_writer_host: pulumi.Input[str]
    database_port: int
    # The heartbeat's side in the standby: its own replica (reader endpoint), the database's security
    # group there, and the cluster's resource id (IAM database authentication names it).
    standby_reader_host: pulumi.Input[str]
    standby_database_security_group_id: pulumi.Input[str]
    standby_cluster_resource_id: pulumi.Input[str]
    database_name: str
    status_record: str
    topic_arn: pulumi.Input[str]
    promote_after_seconds: int
    rpo_seconds: int
    # The most one region loss's witnesses can be apart (budget.witness_spread_seconds).
    detection_seconds: int
    log_retention_days: int


class FailoverProber(pulumi.ComponentResource):
    """The prober and what it needs: its schedule, network, role, parameters, failure queue and alarms."""

    function_name: pulumi.Output[str]
    record_parameter: pulumi.Output[str]
    failure_queue_url: pulumi.Output[str]
    # The alarm in ALARM while the writer is the standby's (the PRIMARY API record's health check reads it).
    writer_alarm_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: FailoverProberArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "inference-fleet:failover:FailoverProber",
            name,
            None,
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=FORMER_TYPE)])
            ),
        )
        here = args.standby.options(self)
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self, provider=args.standby.provider)
        ).account_id
        prefix = f"{PROJECT}-{args.stack.stack}"

        queue = aws.sqs.Queue(
            f"{name}-failed",
            message_retention_seconds=14 * 24 * 3600,
            sqs_managed_sse_enabled=True,
            opts=here,
        )
        # The function writes both; Pulumi only creates them.
        record = aws.ssm.Parameter(
            f"{name}-record",
            name=f"/{PROJECT}/{args.stack.stack}/aurora-promotion/last",
            type="String",
            description="The last promotion of the Aurora global database (history: every one)",
            value=json.dumps(NO_PROMOTION_RECORD),
            opts=args.standby.options(self, ignore_changes=["value"]),
        )
        state = aws.ssm.Parameter(
            f"{name}-state",
            name=f"/{PROJECT}/{args.stack.stack}/aurora-promotion/prober",
            type="String",
            description="The prober's state between runs: since when the primary region has looked lost",
            value=json.dumps(QUIET_STATE),
            opts=args.standby.options(self, ignore_changes=["value"]),
        )
        function_name = f"{prefix}-aurora-promotion"
        logs = function_log_group(f"{name}-logs", function_name, args.log_retention_days, here)
        group = self._security_group(name, args, here)
        role = self._role(name, args, account, queue, [record, state], logs, here)
        function = vpc_function(
            f"{name}-function",
            PACKAGE,
            function_name=function_name,
            description="Observes the primary region from the standby; fails the Aurora global database over "
            "when the writer and Route53 agree it is lost",
            role=role,
            logs=logs,
            subnet_ids=args.private_subnet_ids,
            security_group_id=group.id,
            timeout=FUNCTION_TIMEOUT_SECONDS,
            memory_size=128,
            environment=self._environment(args, record, state),
            # Text: its embedded-metric-format lines reach CloudWatch Logs as they are printed.
            log_format="Text",
            opts=here,
        )
        # The schedule is the retry: every minute a fresh run looks again.
        scheduled_runs_not_retried(name, function, MAX_EVENT_AGE_SECONDS, here, on_failure=queue.arn)
        run_on_schedule(
            name,
            function,
            SCHEDULE,
            "Runs the failover prober: it observes the primary region for most of each minute",
            here,
        )
        self._alarms(name, args, function, queue, here)
        writer_alarm = self._witness_alarms(name, args, here)

        self.function_name = function.name
        self.writer_alarm_name = writer_alarm.name
        self.record_parameter = record.name
        self.failure_queue_url = queue.url
        self.register_outputs(
            {
                "functionName": self.function_name,
                "recordParameter": self.record_parameter,
                "failureQueueUrl": self.failure_queue_url,
                "writerAlarmName": self.writer_alarm_name,
            }
        )

    def _environment(
        self, args: FailoverProberArgs, record: aws.ssm.Parameter, state: aws.ssm.Parameter
    ) -> pulumi.Output[dict[str, str]]:
        """What the function reads (functions/failover_prober/settings.py), once every value is known."""
        values = pulumi.Output.all(
            global_cluster_id=args.global_cluster_id,
            target_cluster_arn=args.target_cluster_arn,
            standby_cluster_id=args.standby_cluster_id,
            primary_writer_host=args.primary_writer_host,
            standby_reader_host=args.standby_reader_host,
            record_parameter=record.name,
            state_parameter=state.name,
            topic_arn=args.topic_arn,
        )
        return values.apply(
            lambda known: ProberSettings(
                **known,
                stack=args.stack.stack,
                database_port=args.database_port,
                database_name=args.database_name,
                witness_user=WITNESS_READER_USER,
                heartbeat_stale_seconds=HEARTBEAT_STALE_SECONDS,
                status_record=args.status_record,
                probe_interval_seconds=PROBE_INTERVAL_SECONDS,
                probe_timeout_seconds=PROBE_TIMEOUT_SECONDS,
                promote_after_seconds=args.promote_after_seconds,
                rpo_seconds=args.rpo_seconds,
                detection_seconds=args.detection_seconds + PROBE_INTERVAL_SECONDS,
            ).to_env()
        )

    def _security_group(
        self, name: str, args: FailoverProberArgs, opts: pulumi.ResourceOptions
    ) -> aws.ec2.SecurityGroup:
        groups = SecurityGroups(name, args.vpc_id, opts)
        group = groups.group(
            "sg", "failover prober: the primary writer over the peering, AWS APIs over HTTPS"
        )
        standby_database = args.standby_database_security_group_id
        groups.allow(
            "out",
            "to-standby-db",
            group.id,
            args.database_port,
            "the heartbeat on the standby's own replica",
            peer=standby_database,
        )
        groups.allow(
            "in",
            "standby-db-from-prober",
            standby_database,
            args.database_port,
            "from the failover prober: the heartbeat",
            peer=group.id,
        )
        for i, cidr in enumerate(args.primary_private_cidrs):
            groups.allow(
                "out",
                f"to-primary-db-{i}",
                group.id,
                args.database_port,
                "the primary region's Aurora writer, over the VPC peering",
                cidr=cidr,
            )
        groups.allow(
            "out",
            "https",
            group.id,
            HTTPS_PORT,
            "RDS, SSM, CloudWatch and SNS in this region (through its NAT)",
            cidr="0.0.0.0/0",
        )
        return group

    def _alarms(
        self,
        name: str,
        args: FailoverProberArgs,
        function: aws.lambda_.Function,
        queue: aws.sqs.Queue,
        opts: pulumi.ResourceOptions,
    ) -> None:
        function_errors_alarm(
            f"{name}-errors",
            args.topic_arn,
            opts,
            function,
            description="The failover prober failed a run: it may not be watching the primary region.",
        )
        alarm(
            f"{name}-failures-queued",
            args.topic_arn,
            opts,
            description="Failed prober runs wait in the failure queue for a person.",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": queue.name},
            statistic="Maximum",
            period=60,
            evaluation_periods=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
        )

    def _witness_alarms(
        self, name: str, args: FailoverProberArgs, opts: pulumi.ResourceOptions
    ) -> aws.cloudwatch.MetricAlarm:
        """Failover safety degraded; and where the writer is (returned: DNS follows it)."""
        dimensions = {STACK_DIMENSION: args.stack.stack}
        alarm(
            f"{name}-witnesses-degraded",
            args.topic_arn,
            opts,
            description=f"Failover safety degraded: for {DEGRADED_ALARM_MINUTES} minutes a witness of the "
            "primary region (the writer over the peering, Route53's verdict, the writer's heartbeat on the "
            "standby's replica) has been unknown or has disagreed with the others. The prober holds rather "
            "than promote on two witnesses; find the broken one in its log (`witnesses`).",
            namespace=METRIC_NAMESPACE,
            metric_name=WITNESSES_DEGRADED,
            dimensions=dimensions,
            statistic="Minimum",
            period=60,
            evaluation_periods=DEGRADED_ALARM_MINUTES,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
        )
        # Missing data keeps the last state (Route53 reads it as LastKnownStatus): a prober that stops
        # publishing moves no traffic either way.
        return alarm(
            f"{name}-writer-in-standby",
            args.topic_arn,
            opts,
            description="The database writer is the standby region's (after a failover or a switchover): "
            "the API's PRIMARY record stays unhealthy, so DNS serves the standby, until the writer is "
            "switched back (promotion.failbackCommand). Nothing fails over automatically meanwhile.",
            namespace=METRIC_NAMESPACE,
            metric_name=WRITER_IN_STANDBY,
            dimensions=dimensions,
            statistic="Maximum",
            period=60,
            evaluation_periods=WRITER_ALARM_MINUTES,
            datapoints_to_alarm=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            treat_missing_data="missing",
        )

    def _role(
        self,
        name: str,
        args: FailoverProberArgs,
        account: pulumi.Output[str],
        queue: aws.sqs.Queue,
        parameters: list[aws.ssm.Parameter],
        logs: aws.cloudwatch.LogGroup,
        opts: pulumi.ResourceOptions,
    ) -> aws.iam.Role:
        statements: list[dict[str, Any]] = [
            {
                "Sid": "ReadGlobalDatabase",
                "Effect": "Allow",
                "Action": "rds:DescribeGlobalClusters",
                "Resource": args.global_cluster_arn,
            },
            {
                "Sid": "FailOverGlobalDatabase",
                "Effect": "Allow",
                "Action": "rds:FailoverGlobalCluster",
                "Resource": [args.global_cluster_arn, *args.member_cluster_arns],
            },
            {
                "Sid": "RecordAndState",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:PutParameter"],
                "Resource": [p.arn for p in parameters],
            },
            # CloudWatch defines no resource for reading metrics.
            {"Sid": "ReadLag", "Effect": "Allow", "Action": "cloudwatch:GetMetricData", "Resource": "*"},
            database_connect_statement(
                "ReadHeartbeat",
                args.standby.region,
                account,
                args.standby_cluster_resource_id,
                WITNESS_READER_USER,
            ),
            {"Sid": "Tell", "Effect": "Allow", "Action": "sns:Publish", "Resource": args.topic_arn},
            {"Sid": "FailedEvents", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue.arn},
            log_statement(logs.arn),
            LAMBDA_VPC_ACCESS,
        ]
        return scoped_role(f"{name}-function", "lambda.amazonaws.com", account, statements, opts)
