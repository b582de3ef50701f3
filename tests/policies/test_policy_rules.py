"""Every rule of the pack, on resources declared here with the real SDK and recorded by the one harness.

Each rule has a case that makes it fire on a recorded resource and the compliant twin on which it stays
quiet. The resources go through `fleet.policy_run.evaluate`, the code path `fleet plan` uses: wire-form
inputs, the policy SDK's deserializer, unknown-checking proxies, the provider's own inputs.
"""

from __future__ import annotations

import base64
import json
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumiverse_time as time
import pytest

from components.core.catalog.aws import GPU_INSTANCE_TYPES
from components.core.catalog.resource_types import IAM_ROLE_POLICY, K8S_DEPLOYMENT, LAMBDA_FUNCTION
from fleet.harness import Rendering, is_secret, render
from fleet.policy_run import RuleConfig, evaluate
from fleet.report import Violation
from fleet.stackfile import StackInput, load_stack
from policies.cost import DEFAULT_GPU_FAMILIES
from policies.pack import POLICIES

PROJECT_DIR = Path(__file__).resolve().parents[2]
_PROGRAM_HOOK = "_fleet_policy_test_program"


@pytest.fixture
def declare(tmp_path: Path) -> Iterator[Callable[..., Rendering]]:
    """Record what a test declares, through the same harness as `fleet plan`.

    `declare(program)` runs `program` as a Pulumi program of its own; `declare(program, stack="prod")`
    runs the shipped prod program first and then `program`, so a test adds one offending resource to a
    real stack. The harness runs a program file, so a two-line `__main__.py` hands over to `program`.
    """

    def do(program: Callable[[], None], stack: str | None = None, changes: dict | None = None) -> Rendering:
        base: StackInput | None = None
        lines = []
        if stack is not None:
            base = load_stack(PROJECT_DIR, stack)
            base = base.with_config(changes) if changes else base
            lines.append(
                f"import runpy; runpy.run_path({str(PROJECT_DIR / '__main__.py')!r}, run_name='__main__')"
            )
        lines.append(f"import sys; sys.modules[{_PROGRAM_HOOK!r}].program()")
        (tmp_path / "__main__.py").write_text("\n".join(lines) + "\n")
        target = (
            replace(base, project_dir=tmp_path)
            if base is not None
            else StackInput("policy-cases", "test", tmp_path, {}, frozenset())
        )
        sys.modules[_PROGRAM_HOOK] = types.SimpleNamespace(program=program)  # type: ignore[assignment]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return render(target)
        finally:
            del sys.modules[_PROGRAM_HOOK]

    yield do


DIGEST = "sha256:" + "ab" * 32
GATEWAY = f"ghcr.io/berriai/litellm@{DIGEST}"
PROD_TAGS = {"owner": "ml-platform", "cost-center": "inference", "tier": "prod"}


def aws_provider(region: str = "us-east-1", tags: dict[str, str] | None = None) -> pulumi.ResourceOptions:
    provider = aws.Provider(
        f"aws-{region}", region=region, default_tags=aws.ProviderDefaultTagsArgs(tags=tags or PROD_TAGS)
    )
    return pulumi.ResourceOptions(provider=provider)


def gcp_provider(region: str = "us-central1") -> pulumi.ResourceOptions:
    provider = gcp.Provider(
        "gcp", project="acme-inference-prod", region=region, default_labels=dict(PROD_TAGS)
    )
    return pulumi.ResourceOptions(provider=provider)


# --- declarations, compliant unless told otherwise ------------------------------------------------------


def s3_bucket(
    opts: pulumi.ResourceOptions, *, block: bool = True, flags: bool = True, sse: str | None = "AES256"
) -> None:
    bucket = aws.s3.Bucket("logs", opts=opts)
    if block:
        aws.s3.BucketPublicAccessBlock(
            "logs",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=flags,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=opts,
        )
    if sse:
        aws.s3.BucketServerSideEncryptionConfiguration(
            "logs",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm=sse
                    )
                )
            ],
            opts=opts,
        )


def gcs_bucket(*, prevention: str = "enforced", uniform: bool = True) -> None:
    gcp.storage.Bucket(
        "results",
        location="US-CENTRAL1",
        public_access_prevention=prevention,
        uniform_bucket_level_access=uniform,
        opts=gcp_provider(),
    )


def aurora(
    *, encrypted: bool = True, force_ssl: str = "1", protected: bool = True, retention: int = 7
) -> None:
    opts = aws_provider()
    key = aws.kms.Key("db", opts=opts)
    group = aws.rds.ClusterParameterGroup(
        "db",
        family="aurora-postgresql16",
        parameters=[aws.rds.ClusterParameterGroupParameterArgs(name="rds.force_ssl", value=force_ssl)],
        opts=opts,
    )
    aws.rds.Cluster(
        "db",
        engine="aurora-postgresql",
        storage_encrypted=encrypted,
        kms_key_id=key.arn,
        manage_master_user_password=True,
        master_username="litellm",
        db_cluster_parameter_group_name=group.name,
        deletion_protection=protected,
        backup_retention_period=retention,
        opts=opts,
    )


def redis(*, at_rest: bool = True, mode: str = "required", token: bool = True) -> None:
    aws.elasticache.ReplicationGroup(
        "state",
        description="gateway state",
        node_type="cache.t4g.small",
        at_rest_encryption_enabled=at_rest,
        transit_encryption_enabled=True,
        transit_encryption_mode=mode,
        auth_token=pulumi.Output.secret("x" * 32) if token else None,
        opts=aws_provider(),
    )


def juicefs_metadata(*, policy: str | None = "noeviction", replicas: int = 1, snapshots: int = 7) -> None:
    opts = aws_provider()
    group = aws.elasticache.ParameterGroup(
        "meta",
        family="redis7",
        parameters=[aws.elasticache.ParameterGroupParameterArgs(name="maxmemory-policy", value=policy)]
        if policy
        else [],
        opts=opts,
    )
    aws.elasticache.ReplicationGroup(
        "meta",
        description="JuiceFS metadata",
        node_type="cache.t4g.small",
        parameter_group_name=group.name,
        num_cache_clusters=1 + replicas,
        multi_az_enabled=replicas > 0,
        automatic_failover_enabled=replicas > 0,
        snapshot_retention_limit=snapshots,
        at_rest_encryption_enabled=True,
        transit_encryption_enabled=True,
        auth_token=pulumi.Output.secret("x" * 32),
        tags={"fleet-role": "juicefs-metadata"},
        opts=opts,
    )


def launch_template(
    *,
    tokens: str = "required",
    instance_type: str = "g6.xlarge",
    user_data: str = "#!/bin/bash\nsystemctl start fleet-agent\n",
    encrypted: bool = True,
) -> None:
    aws.ec2.LaunchTemplate(
        "gpu",
        instance_type=instance_type,
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled", http_tokens=tokens, http_put_response_hop_limit=2
        ),
        block_device_mappings=[
            aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/sda1",
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=200, volume_type="gp3", encrypted=str(encrypted).lower()
                ),
            )
        ],
        user_data=base64.b64encode(user_data.encode()).decode(),
        opts=aws_provider(),
    )


def alb_security_group(*, extra_port: int | None = None) -> None:
    ingress = [
        aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=p, to_port=p, cidr_blocks=["0.0.0.0/0"])
        for p in (80, 443)
    ]
    if extra_port is not None:
        ingress.append(
            aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=extra_port, to_port=extra_port, ipv6_cidr_blocks=["::/0"]
            )
        )
    # Internal rules may use any port: only the internet is restricted.
    ingress.append(
        aws.ec2.SecurityGroupIngressArgs(
            protocol="tcp", from_port=4000, to_port=4000, cidr_blocks=["10.10.0.0/16"]
        )
    )
    aws.ec2.SecurityGroup("alb", description="load balancer", ingress=ingress, opts=aws_provider())


def role_policy(
    *,
    action: str = "rds:FailoverGlobalCluster",
    resource: str = "arn:aws:rds::123456789012:global-cluster:fleet",
    condition: dict[str, Any] | None = None,
) -> None:
    opts = aws_provider()
    role = aws.iam.Role(
        "promote",
        assume_role_policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
        opts=opts,
    )
    aws.iam.RolePolicy(
        "promote",
        role=role.id,
        policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": action,
                        "Resource": resource,
                        **({"Condition": condition} if condition else {}),
                    }
                ],
            }
        ),
        opts=opts,
    )


POOL_GROUP_ARN = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/fleet-prod-use1-pool-a"
INSTANCES_ARN = "arn:aws:ec2:us-east-1:123456789012:instance/*"
STACK_TAGS = {"StringEquals": {"aws:ResourceTag/project": "inference-fleet", "aws:ResourceTag/stack": "prod"}}


def task_definition(
    *, image: str = GATEWAY, environment: list[dict[str, str]] | None = None, command: list[str] | None = None
) -> None:
    container = {
        "name": "gateway",
        "image": image,
        "essential": True,
        "environment": environment or [{"name": "LITELLM_LOG", "value": "INFO"}],
        "secrets": [
            {
                "name": "LITELLM_MASTER_KEY",
                "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:master",
            }
        ],
    }
    if command is not None:
        container["command"] = command
    aws.ecs.TaskDefinition(
        "gateway",
        family="gateway",
        cpu="1024",
        memory="2048",
        network_mode="awsvpc",
        requires_compatibilities=["FARGATE"],
        container_definitions=json.dumps([container]),
        opts=aws_provider(),
    )


def gpu_deployment(
    *,
    image: str = f"registry.example.com/fleet/node@{DIGEST}",
    gpu_limit: str | None = "1",
    gpu_request: str | None = None,
    privileged: bool = False,
    host_network: bool = False,
    add_capabilities: tuple[str, ...] = (),
) -> None:
    """A GPU serving Deployment on a cluster of its own provider, compliant unless told otherwise."""
    from pulumi_kubernetes import Provider
    from pulumi_kubernetes.apps.v1 import Deployment, DeploymentSpecArgs
    from pulumi_kubernetes.core.v1 import (
        CapabilitiesArgs,
        ContainerArgs,
        PodSpecArgs,
        PodTemplateSpecArgs,
        ResourceRequirementsArgs,
        SecurityContextArgs,
        TolerationArgs,
    )
    from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

    cluster = Provider("gpu-cluster", kubeconfig="{}", cluster_identifier="gpu-east")
    labels = {"app.kubernetes.io/name": "fleet-agent"}
    limits = {"nvidia.com/gpu": gpu_limit} if gpu_limit is not None else {}
    requests = {"nvidia.com/gpu": gpu_request} if gpu_request is not None else None
    Deployment(
        "serving",
        metadata=ObjectMetaArgs(name="serving"),
        spec=DeploymentSpecArgs(
            selector=LabelSelectorArgs(match_labels=labels),
            template=PodTemplateSpecArgs(
                metadata=ObjectMetaArgs(labels=labels),
                spec=PodSpecArgs(
                    host_network=host_network or None,
                    node_selector={"nvidia.com/gpu.present": "true"},
                    tolerations=[
                        TolerationArgs(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
                    ],
                    containers=[
                        ContainerArgs(
                            name="agent",
                            image=image,
                            resources=ResourceRequirementsArgs(limits=limits, requests=requests),
                            security_context=SecurityContextArgs(
                                privileged=privileged,
                                allow_privilege_escalation=False,
                                capabilities=CapabilitiesArgs(
                                    drop=["ALL"], add=list(add_capabilities) or None
                                ),
                            ),
                        )
                    ],
                ),
            ),
        ),
        opts=pulumi.ResourceOptions(provider=cluster),
    )


def failover_pair(*, primary_check: bool = True, secondary: bool = True) -> None:
    opts = aws_provider()
    checks = {
        region: aws.route53.HealthCheck(
            f"api-{region}",
            type="HTTPS",
            fqdn=f"{region}.api.fleet.example.com",
            resource_path="/health/readiness",
            request_interval=10,
            failure_threshold=3,
            opts=opts,
        )
        for region in ("us-east-1", "us-west-2")
    }
    roles = [("PRIMARY", "us-east-1")] + ([("SECONDARY", "us-west-2")] if secondary else [])
    for role, region in roles:
        aws.route53.Record(
            f"api-{role.lower()}",
            zone_id="Z123EXAMPLE",
            name="api.fleet.example.com",
            type="CNAME",
            ttl=10,
            records=[f"{region}.api.fleet.example.com"],
            set_identifier=region,
            failover_routing_policies=[aws.route53.RecordFailoverRoutingPolicyArgs(type=role)],
            health_check_id=checks[region].id if (primary_check or role != "PRIMARY") else None,
            opts=opts,
        )


def gcs_grant(member: str = "group:ml-platform@example.com") -> None:
    gcp.storage.BucketIAMMember(
        "readers",
        bucket="acme-results",
        role="roles/storage.objectViewer",
        member=member,
        opts=gcp_provider(),
    )


def health_check(interval: int = 30) -> None:
    aws.route53.HealthCheck(
        "api",
        type="HTTPS",
        fqdn="api.fleet.example.com",
        request_interval=interval,
        failure_threshold=3,
        opts=aws_provider(),
    )


def cloud_run_job(
    *,
    image: str = f"us-docker.pkg.dev/acme/batch/worker@{DIGEST}",
    retries: int | None = 2,
    timeout: str | None = "3600s",
    cpu: str = "4",
    memory: str = "16Gi",
    accelerator: str = "nvidia-l4",
    location: str = "us-central1",
    zonal: bool | None = True,
    parallelism: int = 2,
    envs: list[gcp.cloudrunv2.JobTemplateTemplateContainerEnvArgs] | None = None,
) -> None:
    gcp.cloudrunv2.Job(
        "batch",
        location=location,
        deletion_protection=False,
        template=gcp.cloudrunv2.JobTemplateArgs(
            parallelism=parallelism,
            task_count=10,
            template=gcp.cloudrunv2.JobTemplateTemplateArgs(
                max_retries=retries,
                timeout=timeout,
                gpu_zonal_redundancy_disabled=zonal,
                node_selector=gcp.cloudrunv2.JobTemplateTemplateNodeSelectorArgs(accelerator=accelerator),
                containers=[
                    gcp.cloudrunv2.JobTemplateTemplateContainerArgs(
                        name="worker",
                        image=image,
                        resources=gcp.cloudrunv2.JobTemplateTemplateContainerResourcesArgs(
                            limits={"cpu": cpu, "memory": memory, "nvidia.com/gpu": "1"}
                        ),
                        envs=envs,
                    )
                ],
            ),
        ),
        opts=gcp_provider(location),
    )


def tasks_queue(*, attempts: int = 5, min_backoff: str | None = "10s", max_backoff: str = "300s") -> None:
    gcp.cloudtasks.Queue(
        "batch",
        location="us-central1",
        retry_config=gcp.cloudtasks.QueueRetryConfigArgs(
            max_attempts=attempts, min_backoff=min_backoff, max_backoff=max_backoff, max_doublings=4
        ),
        opts=gcp_provider(),
    )


def log_metric_alert(*, wait: str | None = "600s", literal_filter: bool = False) -> None:
    """An alert policy on a log-based metric declared beside it, behind a Sleep (`wait`) or not."""
    opts = gcp_provider()
    metric = gcp.logging.Metric("errors", name="errors", filter="severity>=ERROR", opts=opts)
    after: list[pulumi.Resource] = []
    if wait is not None:
        clock = time.Provider("time")
        sleep = time.Sleep(
            "errors-ready",
            create_duration=wait,
            triggers={"metric": metric.name},
            opts=pulumi.ResourceOptions(provider=clock),
        )
        after.append(sleep)
    condition_filter = (
        'metric.type="logging.googleapis.com/user/errors" AND resource.type="cloud_run_job"'
        if literal_filter
        else metric.name.apply(lambda m: f'metric.type="logging.googleapis.com/user/{m}"')
    )
    gcp.monitoring.AlertPolicy(
        "errors",
        display_name="errors",
        combiner="OR",
        conditions=[
            gcp.monitoring.AlertPolicyConditionArgs(
                display_name="errors",
                condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                    filter=condition_filter, comparison="COMPARISON_GT", duration="0s"
                ),
            )
        ],
        opts=pulumi.ResourceOptions(provider=opts.provider, depends_on=after),
    )


def gpu_pool(
    *,
    types: tuple[str, ...] = ("g6.xlarge", "g5.xlarge"),
    on_demand_base: int = 1,
    rebalance: bool = True,
    max_size: int = 4,
    tags: dict[str, str] | None = None,
    spot_strategy: str = "price-capacity-optimized",
) -> None:
    opts = aws_provider()
    template = aws.ec2.LaunchTemplate(
        "pool",
        image_id="ami-0123456789abcdef0",
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(http_tokens="required"),
        opts=opts,
    )
    aws.autoscaling.Group(
        "pool",
        min_size=1,
        max_size=max_size,
        vpc_zone_identifiers=["subnet-a", "subnet-b"],
        capacity_rebalance=rebalance,
        mixed_instances_policy=aws.autoscaling.GroupMixedInstancesPolicyArgs(
            instances_distribution=aws.autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
                on_demand_base_capacity=on_demand_base,
                on_demand_percentage_above_base_capacity=0,
                spot_allocation_strategy=spot_strategy,
            ),
            launch_template=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                launch_template_specification=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                    launch_template_id=template.id, version="$Latest"
                ),
                overrides=[
                    aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(instance_type=t)
                    for t in types
                ],
            ),
        ),
        tags=[
            aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=True)
            for k, v in (PROD_TAGS if tags is None else tags).items()
        ],
        opts=opts,
    )


def alarm(*, actions: list[str] | None = None) -> None:
    aws.cloudwatch.MetricAlarm(
        "lag",
        namespace="AWS/RDS",
        metric_name="AuroraGlobalDBReplicationLag",
        statistic="Maximum",
        period=60,
        evaluation_periods=3,
        comparison_operator="GreaterThanThreshold",
        threshold=15000,
        alarm_actions=actions,
        opts=aws_provider(),
    )


def kms_key(*, protect: bool = True) -> None:
    aws.kms.Key(
        "data", enable_key_rotation=True, opts=aws_provider().merge(pulumi.ResourceOptions(protect=protect))
    )


def public_listener(
    *, default: str = "fixed-response", paths: tuple[str, ...] = ("/v1/chat/completions",)
) -> None:
    opts = aws_provider()
    alb = aws.lb.LoadBalancer("alb", internal=False, subnets=["subnet-a", "subnet-b"], opts=opts)
    group = aws.lb.TargetGroup(
        "gateway", port=4000, protocol="HTTP", target_type="ip", vpc_id="vpc-1", opts=opts
    )
    action = (
        aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=group.arn)
        if default == "forward"
        else aws.lb.ListenerDefaultActionArgs(
            type="fixed-response",
            fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
                content_type="text/plain", status_code="404"
            ),
        )
    )
    listener = aws.lb.Listener(
        "https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS", default_actions=[action], opts=opts
    )
    aws.lb.ListenerRule(
        "api",
        listener_arn=listener.arn,
        priority=10,
        conditions=[
            aws.lb.ListenerRuleConditionArgs(
                path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=list(paths))
            )
        ],
        actions=[aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=group.arn)],
        opts=opts,
    )


def region_provider(region: str = "us-east-1") -> None:
    aws.ec2.Vpc("vpc", cidr_block="10.30.0.0/16", opts=aws_provider(region))


def tagged_vpc(tags: dict[str, str]) -> None:
    aws.ec2.Vpc("vpc", cidr_block="10.30.0.0/16", opts=aws_provider(tags=tags))


# --- the cases: one that fires, naming the resource, and its compliant twin ----------------------------------


@dataclass(frozen=True)
class Case:
    rule: str
    resource: str  # the resource the violation names; "" for a stack-wide finding
    fires: Callable[[], None]
    quiet: Callable[[], None]


CASES = [
    Case(
        "s3-bucket-public-access-blocked",
        "logs",
        lambda: s3_bucket(aws_provider(), block=False),
        lambda: s3_bucket(aws_provider()),
    ),
    Case(
        "s3-bucket-encrypted",
        "logs",
        lambda: s3_bucket(aws_provider(), sse=None),
        lambda: s3_bucket(aws_provider(), sse="aws:kms"),
    ),
    Case("gcs-public-access-prevention", "results", lambda: gcs_bucket(prevention="inherited"), gcs_bucket),
    Case("gcs-uniform-bucket-access", "results", lambda: gcs_bucket(uniform=False), gcs_bucket),
    Case("gcs-no-public-members", "readers", lambda: gcs_grant("allUsers"), gcs_grant),
    Case("rds-storage-encrypted", "db", lambda: aurora(encrypted=False), aurora),
    Case("rds-tls-required", "db", lambda: aurora(force_ssl="0"), aurora),
    Case("redis-encrypted-with-auth", "state", lambda: redis(token=False), redis),
    Case("launch-template-imdsv2", "gpu", lambda: launch_template(tokens="optional"), launch_template),
    Case("ebs-volumes-encrypted", "gpu", lambda: launch_template(encrypted=False), launch_template),
    Case(
        "internet-ingress-lb-ports-only", "alb", lambda: alb_security_group(extra_port=22), alb_security_group
    ),
    Case("iam-no-star-on-star", "promote", lambda: role_policy(action="*", resource="*"), role_policy),
    Case(
        "fleet-actions-scoped",
        "promote",
        lambda: role_policy(action="autoscaling:SetInstanceHealth", resource="*"),
        lambda: role_policy(action="autoscaling:SetInstanceHealth", resource=POOL_GROUP_ARN),
    ),
    Case(
        "no-secrets-in-environment",
        "gateway",
        lambda: task_definition(environment=[{"name": "OPENAI_API_KEY", "value": "sk-" + "a" * 40}]),
        task_definition,
    ),
    Case(
        "failover-record-health-check",
        "api-primary",
        lambda: failover_pair(primary_check=False),
        failover_pair,
    ),
    Case("failover-records-paired", "api-primary", lambda: failover_pair(secondary=False), failover_pair),
    Case("prod-database-protected", "db", lambda: aurora(protected=False), aurora),
    Case(
        "image-pinned-by-digest",
        "gateway",
        lambda: task_definition(image="ghcr.io/berriai/litellm:latest"),
        task_definition,
    ),
    Case(
        "no-install-at-startup",
        "gateway",
        lambda: task_definition(command=["sh", "-c", "pip install litellm[proxy] && litellm"]),
        lambda: task_definition(command=["litellm", "--config", "/app/config.yaml"]),
    ),
    Case("cloud-run-job-retries-timeout", "batch", lambda: cloud_run_job(timeout=None), cloud_run_job),
    Case("cloud-tasks-retry-backoff", "batch", lambda: tasks_queue(attempts=-1), tasks_queue),
    Case("log-metric-alert-waits", "errors", lambda: log_metric_alert(wait=None), log_metric_alert),
    Case("prod-gpu-pool-capacity", "pool", lambda: gpu_pool(on_demand_base=0), gpu_pool),
    # All 4 nodes on spot in prod (cap 90 %); the twin keeps one on-demand (75 %).
    Case("gpu-pool-spot-share", "pool", lambda: gpu_pool(on_demand_base=0, rebalance=True), gpu_pool),
    Case("cloud-run-gpu-job-shape", "batch", lambda: cloud_run_job(cpu="2"), cloud_run_job),
    Case("route53-health-check-interval", "api", lambda: health_check(interval=20), health_check),
    Case(
        "gpu-instance-type-allowlist",
        "gpu",
        lambda: launch_template(instance_type="p5.48xlarge"),
        launch_template,
    ),
    Case("gpu-count-cap", "", lambda: gpu_pool(types=("g6.12xlarge",), max_size=20), gpu_pool),
    Case(
        "required-tags",
        "vpc",
        lambda: tagged_vpc({"owner": "ml-platform", "tier": "prod"}),
        lambda: tagged_vpc(PROD_TAGS),
    ),
    Case("allowed-regions", "aws-sa-east-1", lambda: region_provider("sa-east-1"), region_provider),
    Case(
        "alarm-has-action",
        "lag",
        alarm,
        lambda: alarm(actions=["arn:aws:sns:us-east-1:123456789012:fleet-prod-use1-alerts"]),
    ),
    Case("prod-stateful-protected", "data", lambda: kms_key(protect=False), kms_key),
    Case("juicefs-metadata-redis", "meta", lambda: juicefs_metadata(policy="volatile-lru"), juicefs_metadata),
    Case("public-listener-no-admin", "https", lambda: public_listener(default="forward"), public_listener),
    Case("no-privileged-pods", "serving", lambda: gpu_deployment(privileged=True), gpu_deployment),
    Case("gpu-workload-limits", "serving", lambda: gpu_deployment(gpu_limit=None), gpu_deployment),
]


def test_every_rule_of_the_pack_has_a_case() -> None:
    assert sorted(c.rule for c in CASES) == sorted(p.name for p in POLICIES)


def findings(rendering, rule: str) -> list[Violation]:
    return [v for v in evaluate(rendering).violations if v.policy == rule]


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_rule_fires_naming_the_resource(declare, case: Case) -> None:
    found = findings(declare(case.fires), case.rule)
    assert found, f"{case.rule} stayed quiet on its violating case"
    if case.resource:
        assert any(v.urn.endswith(f"::{case.resource}") for v in found), [v.urn for v in found]
    else:
        assert all(v.urn == "" for v in found)
    policy = next(p for p in POLICIES if p.name == case.rule)
    assert all(v.message.startswith(policy.description + "\n") for v in found)


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_rule_stays_quiet_on_the_compliant_twin(declare, case: Case) -> None:
    assert findings(declare(case.quiet), case.rule) == []


def test_a_gpu_job_timeout_beyond_cloud_runs_hour_is_named(declare) -> None:
    found = findings(declare(lambda: cloud_run_job(timeout="7200s")), "cloud-run-job-retries-timeout")
    assert [v.message.splitlines()[-1] for v in found] == [
        "gcp:cloudrunv2/job:Job 'batch' sets timeout 7200s: Cloud Run runs a task with a GPU at most 3600 s."
    ]


@pytest.mark.parametrize(
    "kwargs",
    [{"wait": "30s"}, {"wait": "9m59s"}, {"wait": None, "literal_filter": True}],
    ids=["30s", "under-10-minutes", "metric-named-in-a-literal-filter"],
)
def test_an_alert_on_a_log_metric_waits_ten_minutes_for_it(declare, kwargs) -> None:
    found = findings(declare(lambda: log_metric_alert(**kwargs)), "log-metric-alert-waits")
    assert [v.urn.rsplit("::", 1)[-1] for v in found] == ["errors"]
    assert findings(declare(lambda: log_metric_alert(wait="10m")), "log-metric-alert-waits") == []


def test_a_listener_rule_forwarding_a_catch_all_or_an_admin_prefix_is_named(declare) -> None:
    for paths in (("/*",), ("/v1/chat/completions", "/key/*"), ("/v1/*",)):
        found = findings(
            declare(lambda paths=paths: public_listener(paths=paths)), "public-listener-no-admin"
        )
        assert [v.urn.rsplit("::", 1)[-1] for v in found] == ["api"], paths

    # An internal load balancer may route anything: only the internet is kept from the admin routes.
    def internal() -> None:
        opts = aws_provider()
        alb = aws.lb.LoadBalancer("alb", internal=True, subnets=["subnet-a", "subnet-b"], opts=opts)
        group = aws.lb.TargetGroup(
            "t", port=4000, protocol="HTTP", target_type="ip", vpc_id="vpc-1", opts=opts
        )
        aws.lb.Listener(
            "admin",
            load_balancer_arn=alb.arn,
            port=8443,
            protocol="HTTP",
            default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=group.arn)],
            opts=opts,
        )

    assert findings(declare(internal), "public-listener-no-admin") == []


def test_protection_applies_to_prod_only(declare) -> None:
    def dev_key() -> None:
        dev_tags = {**PROD_TAGS, "tier": "dev"}
        aws.kms.Key("data", opts=aws_provider(tags=dev_tags))

    assert findings(declare(dev_key), "prod-stateful-protected") == []


# --- one bad change per theme on the shipped prod stack ------------------------------------------------------


def stack_provider() -> pulumi.ResourceOptions:
    """A resource added to the prod stack uses a provider like the program's (disable-default-providers)."""
    return aws_provider("us-east-1", {"owner": "ml-platform", "cost-center": "inference", "tier": "prod"})


def fired_on(rendering: Rendering, rule: str, resource: str) -> list[Violation]:
    return [v for v in evaluate(rendering).violations if v.policy == rule and v.urn.endswith(f"::{resource}")]


def test_a_public_bucket_added_to_prod_is_named_by_the_security_rule(declare) -> None:
    def public_bucket() -> None:
        opts = stack_provider()
        bucket = aws.s3.Bucket("exports", opts=opts)
        aws.s3.BucketPublicAccessBlock(
            "exports",
            bucket=bucket.id,
            block_public_acls=False,
            block_public_policy=False,
            ignore_public_acls=False,
            restrict_public_buckets=False,
            opts=opts,
        )

    rendering = declare(public_bucket, stack="prod")
    found = fired_on(rendering, "s3-bucket-public-access-blocked", "exports")
    assert found and all(v.enforcement == "mandatory" for v in found)
    assert "blockPublicAcls, blockPublicPolicy, ignorePublicAcls, restrictPublicBuckets" in found[0].message


def test_a_failover_record_without_health_check_added_to_prod_is_named(declare) -> None:
    def unchecked_failover() -> None:
        aws.route53.Record(
            "batch-primary",
            zone_id="Z123EXAMPLE",
            name="batch.fleet.example.com",
            type="CNAME",
            ttl=10,
            records=["us-east-1.batch.fleet.example.com"],
            set_identifier="us-east-1",
            failover_routing_policies=[aws.route53.RecordFailoverRoutingPolicyArgs(type="PRIMARY")],
            opts=stack_provider(),
        )

    rendering = declare(unchecked_failover, stack="prod")
    assert fired_on(rendering, "failover-record-health-check", "batch-primary")
    assert fired_on(rendering, "failover-records-paired", "batch-primary")  # and it has no SECONDARY


DEFAULT_ALLOWLIST = [t for t in GPU_INSTANCE_TYPES if t.split(".")[0] in DEFAULT_GPU_FAMILIES]


def test_a_gpu_type_off_the_allowlist_added_to_prod_is_named_and_the_allowlist_is_config(declare) -> None:
    def training_node() -> None:
        aws.ec2.LaunchTemplate(
            "trainer",
            instance_type="p5.48xlarge",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(http_tokens="required"),
            opts=stack_provider(),
        )

    rendering = declare(training_node, stack="prod")
    found = fired_on(rendering, "gpu-instance-type-allowlist", "trainer")
    assert found and "p5.48xlarge" in found[0].message
    # The platform team can approve the type through the pack's config, without touching the rule.
    allowed = [*DEFAULT_ALLOWLIST, "p5.48xlarge"]  # the shipped pools' types stay allowed
    approved = {"gpu-instance-type-allowlist": RuleConfig(None, {"allowedInstanceTypes": allowed})}
    assert not [
        v for v in evaluate(rendering, approved).violations if v.policy == "gpu-instance-type-allowlist"
    ]


def test_secrets_reach_the_rules_unwrapped_as_the_engine_hands_them_over(declare) -> None:
    def function_with_secret_env() -> None:
        aws.lambda_.Function(
            "promote",
            role="arn:aws:iam::123456789012:role/promote",
            runtime="python3.12",
            handler="handler.main",
            code=pulumi.AssetArchive({"handler.py": pulumi.StringAsset("def main(e, c): pass\n")}),
            environment=aws.lambda_.FunctionEnvironmentArgs(
                variables={"HF_TOKEN": pulumi.Output.secret("hf_abc123")}
            ),
            opts=aws_provider(),
        )

    rendering = declare(function_with_secret_env)
    environment = rendering.one(LAMBDA_FUNCTION).inputs["environment"]
    assert is_secret(environment)  # recorded as it travels: the secret marks the whole object
    assert fired_on(rendering, "no-secrets-in-environment", "promote")  # the rule saw the plain value


def test_image_builds_are_held_to_imdsv2_and_encrypted_volumes(declare) -> None:
    """The node image's build instances and its recipe's root volume fall under the compute rules too."""

    def image_build(tokens: str, encrypted: str) -> Callable[[], None]:
        def program() -> None:
            aws.imagebuilder.InfrastructureConfiguration(
                "bake",
                instance_profile_name="bake",
                instance_metadata_options=aws.imagebuilder.InfrastructureConfigurationInstanceMetadataOptionsArgs(
                    http_tokens=tokens
                ),
                opts=aws_provider(),
            )
            aws.imagebuilder.ImageRecipe(
                "node",
                version="1.0.0",
                parent_image="ami-0123456789abcdef0",
                components=[],
                block_device_mappings=[
                    aws.imagebuilder.ImageRecipeBlockDeviceMappingArgs(
                        device_name="/dev/sda1",
                        ebs=aws.imagebuilder.ImageRecipeBlockDeviceMappingEbsArgs(
                            volume_size=100, encrypted=encrypted
                        ),
                    )
                ],
                opts=aws_provider(),
            )

        return program

    loose = declare(image_build("optional", "false"))
    assert [v.urn.rsplit("::", 1)[-1] for v in findings(loose, "launch-template-imdsv2")] == ["bake"]
    assert [v.urn.rsplit("::", 1)[-1] for v in findings(loose, "ebs-volumes-encrypted")] == ["node"]
    strict = declare(image_build("required", "true"))
    assert findings(strict, "launch-template-imdsv2") == findings(strict, "ebs-volumes-encrypted") == []


@pytest.mark.parametrize(
    ("action", "resource", "condition", "fires"),
    [
        ("ec2:Terminate*", "*", None, True),  # a wildcard covering TerminateInstances
        ("autoscaling:*", "*", None, True),
        ("ssm:SendCommand", INSTANCES_ARN, None, True),  # every instance of the account
        ("ec2:TerminateInstances", INSTANCES_ARN, STACK_TAGS, False),  # this stack's instances only
        ("autoscaling:SetDesiredCapacity", POOL_GROUP_ARN, None, False),
        ("ec2:DescribeInstances", "*", None, False),  # reads have no resource-level permissions
    ],
)
def test_node_actions_need_named_groups_or_tag_conditions(
    declare, action, resource, condition, fires
) -> None:
    found = findings(
        declare(lambda: role_policy(action=action, resource=resource, condition=condition)),
        "fleet-actions-scoped",
    )
    assert bool(found) is fires, [v.message for v in found]


def test_the_fleet_controllers_own_role_passes(render) -> None:
    """The shipped controller's role is the rule's main subject: it must pass it, with its statements."""
    prod = render("prod")
    policies = [p for p in prod.of_type(IAM_ROLE_POLICY) if p.name.startswith("controller-")]
    assert len(policies) == 2  # one controller per GPU region
    assert findings(prod, "fleet-actions-scoped") == []


def test_kubernetes_workloads_run_images_pinned_by_digest(declare) -> None:
    tagged = findings(
        declare(lambda: gpu_deployment(image="registry.example.com/fleet/node:vllm")),
        "image-pinned-by-digest",
    )
    assert [v.urn.rsplit("::", 1)[1] for v in tagged] == ["serving"]
    assert (
        "container 'agent' runs image 'registry.example.com/fleet/node:vllm', a moving reference"
        in tagged[0].message
    )
    assert findings(declare(gpu_deployment), "image-pinned-by-digest") == []


def test_a_pod_reaching_past_its_container_is_named_for_each_way(declare) -> None:
    found = findings(
        declare(
            lambda: gpu_deployment(host_network=True, add_capabilities=("SYS_ADMIN", "NET_BIND_SERVICE"))
        ),
        "no-privileged-pods",
    )
    messages = [v.message.split("\n", 1)[1] for v in found]
    assert messages == [
        "kubernetes:apps/v1:Deployment 'serving' shares the node's network (hostNetwork): a pod escapes to its "
        "node this way; drop it.",
        "kubernetes:apps/v1:Deployment 'serving' adds capabilities SYS_ADMIN to container 'agent': a pod escapes "
        "to its node this way; drop it.",
    ]


def test_a_gpu_request_without_an_equal_limit_is_named(declare) -> None:
    found = findings(declare(lambda: gpu_deployment(gpu_limit="1", gpu_request="2")), "gpu-workload-limits")
    assert [v.message.split("\n", 1)[1] for v in found] == [
        "kubernetes:apps/v1:Deployment 'serving' container 'agent' requests 2 nvidia.com/gpu with a limit of 1: "
        "Kubernetes takes an extended resource only with its request equal to its limit."
    ]


def test_the_k8s_example_stack_passes_the_kubernetes_rules(declare) -> None:
    rendering = declare(lambda: None, stack="k8s-example")
    result = evaluate(rendering)
    assert [v for v in result.violations if v.policy in ("no-privileged-pods", "gpu-workload-limits")] == []
    assert any(r.type == K8S_DEPLOYMENT for r in rendering.resources)


def burn_pair(*, paging: bool) -> None:
    """A multiwindow burn-rate pair: two window alarms without actions, read by one composite alarm."""
    opts = aws_provider()
    for window, period in (("1h", 3600), ("5m", 300)):
        aws.cloudwatch.MetricAlarm(
            f"burn-{window}",
            name=f"slo-availability-{window}",
            namespace="AWS/ApplicationELB",
            metric_name="HTTPCode_Target_5XX_Count",
            statistic="Sum",
            period=period,
            evaluation_periods=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=14.4,
            opts=opts,
        )
    aws.cloudwatch.CompositeAlarm(
        "burn",
        alarm_name="slo-availability-fast-burn",
        alarm_rule='ALARM("slo-availability-1h") AND ALARM("slo-availability-5m")',
        alarm_actions=["arn:aws:sns:us-east-1:123456789012:fleet-prod-use1-alerts"] if paging else None,
        opts=opts,
    )


def test_window_alarms_are_heard_through_the_composite_alarm_that_pages(declare) -> None:
    assert findings(declare(lambda: burn_pair(paging=True)), "alarm-has-action") == []
    found = findings(declare(lambda: burn_pair(paging=False)), "alarm-has-action")
    assert sorted(v.urn.rsplit("::", 1)[1] for v in found) == ["burn", "burn-1h", "burn-5m"]
