"""AuroraPromotion: fail the Aurora global database over to the standby when the primary stays down.

    Route53 health check (primary gateway)
      -> CloudWatch alarm on HealthCheckStatus, in us-east-1 (Route53 publishes its metrics only there),
         ALARM after `promoteAfterSeconds` of failed checks
      -> EventBridge rule on that alarm entering ALARM
         (forwarded to the standby region's default event bus when the alarm lives elsewhere)
      -> Lambda in the standby region (functions/aurora_promotion), one at a time
         -> rds:FailoverGlobalCluster to the standby cluster, once; a record in an SSM parameter

The function lives in the standby region so a failed primary region cannot take the promotion with it.
Its role may describe and fail over this global database only, write its one record and its logs.
Lambda retries a failed invocation twice, then leaves the event in an SQS queue for a person.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from components.core.catalog.aws import ROUTE53_METRIC_PERIOD_SECONDS
from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.core.iam import scoped_role

FUNCTION_DIR = Path(__file__).resolve().parents[2] / "functions" / "aurora_promotion"
LAMBDA_RETRIES = 2
# An alarm older than this is stale: do not act on it any more, leave it for a person.
MAX_EVENT_AGE_SECONDS = 3600


@dataclass(frozen=True)
class AuroraPromotionArgs:
    stack: StackContext
    primary_health_check_id: pulumi.Input[str]
    promote_after_seconds: int
    log_retention_days: int
    # Where the alarm must live (Route53 metrics) and where the function runs (the standby).
    alarm_side: RegionContext
    function_side: RegionContext
    global_cluster_id: pulumi.Input[str]
    global_cluster_arn: pulumi.Input[str]
    target_cluster_arn: pulumi.Input[str]
    # Every member's ARN: FailoverGlobalCluster authorizes against the clusters it moves the writer between.
    member_cluster_arns: list[pulumi.Input[str]]


class AuroraPromotion(pulumi.ComponentResource):
    alarm_name: pulumi.Output[str]
    function_name: pulumi.Output[str]
    record_parameter: pulumi.Output[str]
    failure_queue_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: AuroraPromotionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("inference-fleet:promotion:AuroraPromotion", name, None, opts)
        at_alarm = args.alarm_side.options(self)
        at_function = args.function_side.options(self)
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self, provider=args.function_side.provider)
        ).account_id
        prefix = f"{PROJECT}-{args.stack.stack}"
        periods = args.promote_after_seconds // ROUTE53_METRIC_PERIOD_SECONDS

        alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-primary-down",
            name=f"{prefix}-primary-gateway-down",
            alarm_description=(
                f"The primary gateway's Route53 health check has failed for {args.promote_after_seconds} s: "
                "EventBridge promotes the Aurora global database to the standby region."
            ),
            namespace="AWS/Route53",
            metric_name="HealthCheckStatus",
            dimensions={"HealthCheckId": args.primary_health_check_id},
            statistic="Minimum",
            period=ROUTE53_METRIC_PERIOD_SECONDS,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            comparison_operator="LessThanThreshold",
            threshold=1,
            # A gap in Route53's metrics says nothing about the gateway: never promote on missing data.
            treat_missing_data="notBreaching",
            opts=at_alarm,
        )
        pattern = pulumi.Output.json_dumps(
            {
                "source": ["aws.cloudwatch"],
                "detail-type": ["CloudWatch Alarm State Change"],
                "resources": [alarm.arn],
                "detail": {"state": {"value": ["ALARM"]}},
            }
        )

        queue = aws.sqs.Queue(
            f"{name}-failed",
            message_retention_seconds=14 * 24 * 3600,
            sqs_managed_sse_enabled=True,
            opts=at_function,
        )
        record = aws.ssm.Parameter(
            f"{name}-record",
            name=f"/{PROJECT}/{args.stack.stack}/aurora-promotion/last",
            type="String",
            description="The last promotion of the Aurora global database (history: every one)",
            value=json.dumps({"action": "none"}),
            # The function writes it; Pulumi only creates it.
            opts=args.function_side.options(self, ignore_changes=["value"]),
        )
        function_name = f"{prefix}-aurora-promotion"
        logs = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=args.log_retention_days,
            opts=at_function,
        )
        role = self._role(name, args, account, queue, record, logs, at_function)
        function = aws.lambda_.Function(
            f"{name}-function",
            name=function_name,
            description="Fails the Aurora global database over to this region when the primary stays down",
            runtime="python3.12",
            architectures=["arm64"],
            handler="handler.handle",
            code=pulumi.AssetArchive({"handler.py": pulumi.FileAsset(str(FUNCTION_DIR / "handler.py"))}),
            role=role.arn,
            timeout=30,
            memory_size=128,
            # One at a time: a repeated alarm waits and then finds the failover already under way.
            reserved_concurrent_executions=1,
            environment=aws.lambda_.FunctionEnvironmentArgs(
                variables={
                    "GLOBAL_CLUSTER_ID": args.global_cluster_id,
                    "TARGET_CLUSTER_ARN": args.target_cluster_arn,
                    "ALARM_ARN": alarm.arn,
                    "RECORD_PARAMETER": record.name,
                }
            ),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=logs.name),
            opts=at_function,
        )
        aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-retries",
            function_name=function.name,
            maximum_retry_attempts=LAMBDA_RETRIES,
            maximum_event_age_in_seconds=MAX_EVENT_AGE_SECONDS,
            destination_config=aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
                on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(
                    destination=queue.arn
                )
            ),
            opts=at_function,
        )

        invoking_rule = self._route_alarm(name, args, account, pattern, at_alarm, at_function)
        aws.lambda_.Permission(
            f"{name}-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="events.amazonaws.com",
            source_arn=invoking_rule.arn,
            opts=at_function,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-function",
            rule=invoking_rule.name,
            arn=function.arn,
            opts=at_function,
        )

        self.alarm_name = alarm.name
        self.function_name = function.name
        self.record_parameter = record.name
        self.failure_queue_url = queue.url
        self.register_outputs(
            {
                "alarmName": self.alarm_name,
                "functionName": self.function_name,
                "recordParameter": self.record_parameter,
                "failureQueueUrl": self.failure_queue_url,
            }
        )

    def _route_alarm(
        self,
        name: str,
        args: AuroraPromotionArgs,
        account: pulumi.Output[str],
        pattern: pulumi.Output[str],
        at_alarm: pulumi.ResourceOptions,
        at_function: pulumi.ResourceOptions,
    ) -> aws.cloudwatch.EventRule:
        """The rule that invokes the function: local, or reached through the standby's default bus."""
        description = "The primary gateway's health-check alarm entered ALARM"
        if args.alarm_side.region == args.function_side.region:
            return aws.cloudwatch.EventRule(
                f"{name}-alarm", description=description, event_pattern=pattern, opts=at_alarm
            )
        forward = aws.cloudwatch.EventRule(
            f"{name}-alarm", description=f"{description}: forward it", event_pattern=pattern, opts=at_alarm
        )
        standby_bus = pulumi.Output.concat(
            "arn:aws:events:", args.function_side.region, ":", account, ":event-bus/default"
        )
        forwarder = scoped_role(
            f"{name}-forward",
            "events.amazonaws.com",
            account,
            [{"Effect": "Allow", "Action": "events:PutEvents", "Resource": standby_bus}],
            at_alarm,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-forward", rule=forward.name, arn=standby_bus, role_arn=forwarder.arn, opts=at_alarm
        )
        return aws.cloudwatch.EventRule(
            f"{name}-alarm-{args.function_side.region}",
            description=description,
            event_pattern=pattern,
            opts=at_function,
        )

    def _role(
        self,
        name: str,
        args: AuroraPromotionArgs,
        account: pulumi.Output[str],
        queue: aws.sqs.Queue,
        record: aws.ssm.Parameter,
        logs: aws.cloudwatch.LogGroup,
        at_function: pulumi.ResourceOptions,
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
            {"Sid": "Record", "Effect": "Allow", "Action": "ssm:PutParameter", "Resource": record.arn},
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": pulumi.Output.concat(logs.arn, ":*"),
            },
            {"Sid": "FailedEvents", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue.arn},
        ]
        return scoped_role(f"{name}-function", "lambda.amazonaws.com", account, statements, at_function)
