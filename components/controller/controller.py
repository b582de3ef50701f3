"""FleetController: one region's fleet controller, a scheduled Lambda in the region's private subnets.

    EventBridge schedule, every minute
      -> Lambda (functions/fleet_controller), ticking every `tickSeconds` for up to RUN_SECONDS, so
         consecutive runs overlap; a tick slot is claimed in Redis, so no tick runs twice
           reads: Auto Scaling groups of the region's pools, EC2 instances, target health (no resource-
                  level permissions exist for these reads), heartbeats and its memory in Redis (its own
                  ACL user, TLS), each agent's /readyz on the agent port (its own security group rule)
           acts:  SetInstanceHealth / SetDesiredCapacity on the pools' groups only; SSM SendCommand of
                  its restart document only, on instances tagged for this stack only; TerminateInstances
                  on instances tagged for this stack only (orphans); SNS to the region's alert topic
      -> alarms: a failed run; blind for 5 minutes (no quorum: Redis or the cloud unreadable)

Why a function and not an always-on task, with numbers: README, "Fleet controller".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.controller.config import ControllerConfig
from components.core.alarms import alarm, function_errors_alarm
from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.core.elasticache import REDIS_PORT
from components.core.functions import function_log_group, run_on_schedule, vpc_function
from components.core.iam import LAMBDA_VPC_ACCESS, log_statement, scoped_role, secret_read_statements
from components.core.security import SecurityGroups
from functions.fleet_controller.settings import METRIC_NAMESPACE, RUN_SECONDS, ControllerSettings, PoolSpec

PACKAGE = "fleet_controller"
SCHEDULE = "rate(1 minute)"
# A run ticks for RUN_SECONDS; the rest of the timeout is the last tick's room.
FUNCTION_TIMEOUT_SECONDS = RUN_SECONDS + 20
# A scheduled event the next minute's run covers is not worth retrying.
MAX_EVENT_AGE_SECONDS = 60
MEMORY_MB = 128
HTTPS_PORT = 443
# The node image's oneshot unit that restarts a silent agent (node_image/systemd).
RESTART_UNIT = "fleet-agent-restart.service"
AGENT_UNIT = "fleet-agent.service"
# The tag every pool node carries (the group propagates it), besides the stack's own.
POOL_TAG = "pool"
# Minutes of no quorum before a person hears the controller is blind.
BLIND_ALARM_MINUTES = 5


@dataclass(frozen=True)
class ControlledPool:
    name: str
    group_name: str
    model: str
    target_group_arn: pulumi.Input[str]
    node_security_group_id: pulumi.Input[str]
    # How long a node may be on its way to ready (the pool's readiness budget).
    warm_limit_s: float


@dataclass(frozen=True)
class FleetControllerArgs:
    config: ControllerConfig
    stack: StackContext
    region: RegionContext
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    pools: Sequence[ControlledPool]
    redis_host: pulumi.Input[str]
    redis_security_group_id: pulumi.Input[str]
    redis_user: str
    redis_password: pulumi.Input[str]
    agent_port: int
    heartbeat_key_prefix: str
    kms_key_arn: pulumi.Input[str]
    topic_arn: pulumi.Input[str]
    min_ready: Mapping[str, int]
    log_retention_days: int


@dataclass(frozen=True)
class FleetControllerOutputs:
    region: str
    function_name: pulumi.Output[str]
    schedule: str
    restart_document: pulumi.Output[str]
    role_arn: pulumi.Output[str]


class FleetController(pulumi.ComponentResource):
    outputs: FleetControllerOutputs

    def __init__(
        self, name: str, args: FleetControllerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("inference-fleet:controller:FleetController", name, None, opts)
        self._name, self._args = name, args
        here = args.region.options(self)
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self, provider=args.region.provider)
        ).account_id
        stack, region = args.stack, args.region
        function_name = stack.physical_name("fleet-controller", region)

        document = self._restart_document(here)
        secret = aws.secretsmanager.Secret(
            f"{name}-redis-password",
            description=f"{PROJECT}/{stack.stack}: the fleet controller's Redis password in {region.region}",
            kms_key_id=args.kms_key_arn,
            recovery_window_in_days=30 if stack.deletion_protection else 7,
            # As the pools' node secrets: prod keeps it from a stray destroy.
            opts=args.region.options(self, protect=stack.deletion_protection),
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-redis-password",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret(args.redis_password),
            opts=here,
        )
        logs = function_log_group(f"{name}-logs", function_name, args.log_retention_days, here)
        group = self._network(here)
        role = scoped_role(
            f"{name}-function",
            "lambda.amazonaws.com",
            account,
            self._statements(account, document, secret, logs),
            here,
        )
        function = vpc_function(
            f"{name}-function",
            PACKAGE,
            function_name=function_name,
            description="The fleet controller: node health from heartbeats, polls, target health and Auto "
            "Scaling; replaces, restarts and reconciles",
            role=role,
            logs=logs,
            subnet_ids=args.private_subnet_ids,
            security_group_id=group.id,
            timeout=FUNCTION_TIMEOUT_SECONDS,
            memory_size=MEMORY_MB,
            environment=self._environment(document, secret),
            log_format="Text",
            opts=here,
        )
        aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-retries",
            function_name=function.name,
            # The schedule is the retry: every minute a fresh run looks again.
            maximum_retry_attempts=0,
            maximum_event_age_in_seconds=MAX_EVENT_AGE_SECONDS,
            opts=here,
        )
        run_on_schedule(
            name,
            function,
            SCHEDULE,
            "Runs the fleet controller: each run ticks for two minutes, so runs overlap",
            here,
        )
        self._alarms(function, here)
        self.outputs = FleetControllerOutputs(
            region=region.region,
            function_name=function.name,
            schedule=SCHEDULE,
            restart_document=document.name,
            role_arn=role.arn,
        )
        self.register_outputs({"functionName": function.name, "restartDocument": document.name})

    # --- the agent restart ------------------------------------------------------------------------------

    def _restart_document(self, opts: pulumi.ResourceOptions) -> aws.ssm.Document:
        args = self._args
        content = {
            "schemaVersion": "2.2",
            "description": "Restart the fleet agent of a silent node (the fleet controller runs this)",
            "mainSteps": [
                {
                    "action": "aws:runShellScript",
                    "name": "restartFleetAgent",
                    "inputs": {
                        # The image's oneshot unit kills the stopped or wedged agent and starts it again.
                        "runCommand": [
                            f"systemctl start {RESTART_UNIT}",
                            f"systemctl is-active {AGENT_UNIT}",
                        ],
                        "timeoutSeconds": "90",
                    },
                }
            ],
        }
        return aws.ssm.Document(
            f"{self._name}-agent-restart",
            name=args.stack.physical_name("agent-restart", args.region),
            document_type="Command",
            document_format="JSON",
            content=json.dumps(content),
            target_type="/AWS::EC2::Instance",
            opts=opts,
        )

    # --- who may talk to whom ------------------------------------------------------------------------

    def _network(self, opts: pulumi.ResourceOptions) -> aws.ec2.SecurityGroup:
        name, args = self._name, self._args
        groups = SecurityGroups(name, args.vpc_id, opts)
        group = groups.group(
            "sg", "fleet controller: the agents' port, the region's Redis, AWS APIs over HTTPS"
        )
        rule = groups.allow

        port = args.agent_port
        for pool in args.pools:
            node = pool.node_security_group_id
            rule("out", f"to-{pool.name}", group.id, port, f"agents of pool {pool.name}", peer=node)
            rule(
                "in", f"{pool.name}-from-controller", node, port, "the fleet controller's poll", peer=group.id
            )
        redis = args.redis_security_group_id
        rule("out", "to-redis", group.id, REDIS_PORT, "heartbeats and its memory in Redis", peer=redis)
        rule("in", "redis-from-controller", redis, REDIS_PORT, "the fleet controller", peer=group.id)
        rule("out", "https", group.id, HTTPS_PORT, "AWS APIs (Auto Scaling, EC2, SSM, SNS)", cidr="0.0.0.0/0")
        return group

    # --- what it may do ---------------------------------------------------------------------------------

    def _statements(
        self,
        account: pulumi.Output[str],
        document: aws.ssm.Document,
        secret: aws.secretsmanager.Secret,
        logs: aws.cloudwatch.LogGroup,
    ) -> list[dict[str, object]]:
        args = self._args
        region, stack = args.region.region, args.stack.stack
        groups = [
            pulumi.Output.concat(
                f"arn:aws:autoscaling:{region}:",
                account,
                f":autoScalingGroup:*:autoScalingGroupName/{p.group_name}",
            )
            for p in args.pools
        ]
        instances = pulumi.Output.concat(f"arn:aws:ec2:{region}:", account, ":instance/*")
        fleet_tags = {"project": PROJECT, "stack": stack}
        return [
            {
                # Auto Scaling, EC2 and ELB define no resource-level permissions for these reads.
                "Sid": "ReadFleet",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "ec2:DescribeInstances",
                    "elasticloadbalancing:DescribeTargetHealth",
                ],
                "Resource": "*",
            },
            {
                "Sid": "RepairPoolNodes",
                "Effect": "Allow",
                "Action": ["autoscaling:SetInstanceHealth", "autoscaling:SetDesiredCapacity"],
                "Resource": groups,
            },
            {
                "Sid": "RestartAgentsOfThisStack",
                "Effect": "Allow",
                "Action": "ssm:SendCommand",
                "Resource": instances,
                "Condition": {"StringEquals": {f"ssm:resourceTag/{k}": v for k, v in fleet_tags.items()}},
            },
            {
                "Sid": "OnlyTheRestartDocument",
                "Effect": "Allow",
                "Action": "ssm:SendCommand",
                "Resource": document.arn,
            },
            {
                "Sid": "TerminateOrphansOfThisStack",
                "Effect": "Allow",
                "Action": "ec2:TerminateInstances",
                "Resource": instances,
                "Condition": {
                    "StringEquals": {f"aws:ResourceTag/{k}": v for k, v in fleet_tags.items()},
                    "Null": {f"aws:ResourceTag/{POOL_TAG}": "false"},
                },
            },
            {"Sid": "Tell", "Effect": "Allow", "Action": "sns:Publish", "Resource": args.topic_arn},
            *secret_read_statements(
                secret.arn,
                args.kms_key_arn,
                region,
                read_sid="ReadRedisPassword",
                decrypt_sid="DecryptRedisPassword",
            ),
            log_statement(logs.arn),
            LAMBDA_VPC_ACCESS,
        ]

    # --- what the function reads ------------------------------------------------------------------------

    def _environment(
        self, document: aws.ssm.Document, secret: aws.secretsmanager.Secret
    ) -> pulumi.Output[dict[str, str]]:
        """What the function reads (functions/fleet_controller/settings.py), once every value is known."""
        args = self._args
        known = pulumi.Output.all(
            args.redis_host,
            args.topic_arn,
            document.name,
            secret.arn,
            *[p.target_group_arn for p in args.pools],
        )
        return known.apply(lambda values: self._settings(*values[:4], target_groups=values[4:]).to_env())

    def _settings(
        self, redis_host: str, topic_arn: str, document: str, secret_arn: str, *, target_groups: Sequence[str]
    ) -> ControllerSettings:
        args, c = self._args, self._args.config
        return ControllerSettings(
            stack=args.stack.stack,
            region=args.region.region,
            pools=tuple(
                PoolSpec(
                    name=p.name,
                    group=p.group_name,
                    model=p.model,
                    target_group_arn=arn,
                    warm_limit_s=p.warm_limit_s,
                )
                for p, arn in zip(args.pools, target_groups, strict=True)
            ),
            redis_host=redis_host,
            redis_port=REDIS_PORT,
            redis_tls=True,
            redis_user=args.redis_user,
            agent_port=args.agent_port,
            key_prefix=args.heartbeat_key_prefix,
            restart_document=document,
            topic_arn=topic_arn,
            fleet_tags={"project": PROJECT, "stack": args.stack.stack},
            pool_tag=POOL_TAG,
            tick_s=c.tick_seconds,
            confirmations=c.confirmations,
            poll_timeout_s=c.poll_timeout_seconds,
            restart_grace_s=c.restart_grace_seconds,
            boot_grace_s=c.boot_grace_seconds,
            leave_alone_s=c.leave_alone_seconds,
            not_ready_grace_s=c.not_ready_grace_seconds,
            orphan_grace_s=c.orphan_grace_seconds,
            reconcile_s=c.reconcile_seconds,
            max_share=c.max_disruption_share,
            min_ready=dict(args.min_ready),
            dry_run=c.dry_run,
            run_seconds=RUN_SECONDS,
            redis_password_secret_arn=secret_arn,
        )

    # --- alarms ---------------------------------------------------------------------------------------

    def _alarms(self, function: aws.lambda_.Function, opts: pulumi.ResourceOptions) -> None:
        name, args = self._name, self._args
        function_errors_alarm(
            f"{name}-errors",
            args.topic_arn,
            opts,
            function,
            description="A fleet controller run failed: the region's nodes may not be watched.",
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )
        alarm(
            f"{name}-blind",
            args.topic_arn,
            opts,
            description="The fleet controller has had no quorum (Redis or the cloud API unreadable) for "
            f"{BLIND_ALARM_MINUTES} minutes: it takes no action while blind.",
            namespace=METRIC_NAMESPACE,
            metric_name="NoQuorum",
            dimensions={"Stack": args.stack.stack, "Region": args.region.region},
            statistic="Minimum",
            period=60,
            evaluation_periods=BLIND_ALARM_MINUTES,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
        )
