"""One region's gateway service: LiteLLM on ECS Fargate behind the edge's load balancer.

Its secrets (master key, database URL, Redis token, provider keys) sit in one Secrets Manager secret,
encrypted with the region's data key, and reach the container only as `secrets` (valueFrom), never as plain
environment. Its config file is rendered from the stack config into the edge's bucket under a key carrying
its digest, so a routing change is a new task definition and a rolling deployment. The task runs the
database migrations first and the region-health sidecar beside the gateway; autoscaling tracks the
requests per task. A metrics sidecar (gateway_metrics.py) scrapes LiteLLM's /metrics into CloudWatch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pulumi
import pulumi_aws as aws

from components.control_plane import gateway_metrics, region_health
from components.control_plane.edge import Edge
from components.control_plane.gateway_config import (
    DATABASE_URL_ENV,
    GATEWAY_PORT,
    MASTER_KEY_ENV,
    POOL_API_KEY_ENV,
    READ_REPLICA_URL_ENV,
    REDIS_HOST_ENV,
    REDIS_PASSWORD_ENV,
    REDIS_PORT_ENV,
    SALT_KEY_ENV,
    config_digest,
    litellm_config,
    litellm_config_yaml,
    provider_key_env,
    uses_backends,
)
from components.control_plane.gateway_database import (
    MIGRATE_CONTAINER,
    database_environment,
    database_url,
    migrate_container,
)
from components.control_plane.image_mirror import declare_mirror, ecr_repository, mirrored
from components.control_plane.region import ControlPlaneRegion, DatabaseAccess, GatewaySecrets
from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.core.elasticache import REDIS_PORT
from components.core.iam import log_statement, scoped_role, secret_read_statements

CONTAINER_NAME = "gateway"
CONFIG_PREFIX = "config"
# Fargate stops a task at most 120 s after SIGTERM; in-flight requests get the ALB's deregistration delay.
STOP_TIMEOUT_SECONDS = 120
# The gateway keeps an idle connection open this much longer than the ALB does: the ALB must be the one
# to close it, or it reuses a connection the gateway has just closed and answers 502.
KEEPALIVE_MARGIN_SECONDS = 60
# ECS ignores a new task's health checks this long: it starts migrations, then LiteLLM.
HEALTH_CHECK_GRACE_SECONDS = 120


@dataclass(frozen=True)
class GatewayServiceArgs:
    name: str
    plane: ControlPlaneRegion
    stack: StackContext
    region: RegionContext
    account: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    kms_key_arn: pulumi.Input[str]
    database: DatabaseAccess
    secrets: GatewaySecrets
    security_group: aws.ec2.SecurityGroup
    redis: aws.elasticache.ReplicationGroup
    edge: Edge


@dataclass(frozen=True)
class GatewayService:
    cluster: aws.ecs.Cluster
    service: aws.ecs.Service
    scalable_target: aws.appautoscaling.Target


def declare_gateway_service(args: GatewayServiceArgs, parent: pulumi.Resource) -> GatewayService:
    """The secret, the cluster, the task, the service and its autoscaling, each a child of `parent`."""
    secret, version = _secret(args, parent)
    cluster, service = _service(args, secret, version, parent)
    return GatewayService(cluster, service, _autoscaling(args, cluster, service, parent))


def _child(parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kwargs)


# --- the gateway's secrets ----------------------------------------------------------------------------


def _secret(
    args: GatewayServiceArgs, parent: pulumi.Resource
) -> tuple[aws.secretsmanager.Secret, aws.secretsmanager.SecretVersion]:
    name, plane = args.name, args.plane
    providers = plane.gateway.providers_used()
    to_backends = uses_backends(plane.gateway, plane.backends)
    if to_backends and args.secrets.pool_api_key is None:
        raise ValueError("the gateway routes to its own backends but was given no pool API key")
    db = args.database
    secret = aws.secretsmanager.Secret(
        f"{name}-gateway-secret",
        description=f"{PROJECT}/{args.stack.stack}: LiteLLM gateway secrets in {plane.region}",
        kms_key_id=args.kms_key_arn,
        recovery_window_in_days=30 if plane.deletion_protection else 7,
        opts=_child(parent, protect=plane.deletion_protection),
    )

    def document(values: list[Any]) -> str:
        master_key, provider_keys, password, redis_token, salt_key, username, writer, reader, pool_key = (
            values
        )
        missing = [p for p in providers if p not in (provider_keys or {})]
        if missing:
            raise ValueError(
                f"{PROJECT}:providerApiKeys: no key for {', '.join(missing)}; the gateway's routes use "
                f"{', '.join(providers)}. Add it in ESC: secrets.providerApiKeys.<provider>"
            )
        password_quoted = quote(password, safe="")
        return json.dumps(
            {
                MASTER_KEY_ENV: master_key,
                DATABASE_URL_ENV: database_url(username, password_quoted, writer, db.port, db.name),
                READ_REPLICA_URL_ENV: database_url(username, password_quoted, reader, db.port, db.name),
                REDIS_PASSWORD_ENV: redis_token,
                SALT_KEY_ENV: salt_key,
                region_health.REGION_HEALTH_KEY_ENV: region_health.probe_key(master_key, plane.region),
                # The metrics sidecar's scrape config: it presents the master key to /metrics.
                gateway_metrics.PROMETHEUS_CONFIG_ENV: gateway_metrics.scrape_config_yaml(master_key),
                **{provider_key_env(p): provider_keys[p] for p in providers},
                **({POOL_API_KEY_ENV: pool_key} if to_backends else {}),
            }
        )

    contents = pulumi.Output.all(
        args.secrets.master_key,
        args.secrets.provider_api_keys,
        args.secrets.database_password,
        args.secrets.redis_auth_token,
        args.secrets.salt_key,
        db.username,
        db.endpoint,
        db.reader_endpoint,
        args.secrets.pool_api_key if to_backends else None,
    ).apply(document)
    version = aws.secretsmanager.SecretVersion(
        f"{name}-gateway-secret",
        secret_id=secret.id,
        secret_string=pulumi.Output.secret(contents),
        opts=_child(parent),
    )
    return secret, version


# --- the gateway service ------------------------------------------------------------------------------


def _service(
    args: GatewayServiceArgs,
    secret: aws.secretsmanager.Secret,
    version: aws.secretsmanager.SecretVersion,
    parent: pulumi.Resource,
) -> tuple[aws.ecs.Cluster, aws.ecs.Service]:
    name, plane, edge = args.name, args.plane, args.edge
    gateway = plane.gateway
    region = plane.region

    config_text = litellm_config_yaml(gateway, plane.backends)
    config_key = f"{CONFIG_PREFIX}/litellm-{config_digest(config_text)}.yaml"
    aws.s3.BucketObjectv2(
        f"{name}-litellm-config",
        bucket=edge.bucket.id,
        key=config_key,
        content=config_text,
        content_type="application/yaml",
        opts=_child(parent),
    )

    cluster = aws.ecs.Cluster(
        f"{name}-cluster",
        settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
        opts=_child(parent),
    )
    logs = aws.cloudwatch.LogGroup(
        f"{name}-gateway-logs", retention_in_days=plane.log_retention_days, opts=_child(parent)
    )
    # The metrics sidecar writes EMF here: CloudWatch turns each event into the gateway's metrics.
    metrics_logs = aws.cloudwatch.LogGroup(
        f"{name}-gateway-metrics", retention_in_days=plane.log_retention_days, opts=_child(parent)
    )
    image, pull_statements = _image(args, parent)
    execution_role, task_role = _task_roles(
        args, config_key, secret, logs, metrics_logs, pull_statements, parent
    )

    secret_names = [
        MASTER_KEY_ENV,
        DATABASE_URL_ENV,
        READ_REPLICA_URL_ENV,
        REDIS_PASSWORD_ENV,
        SALT_KEY_ENV,
    ] + [provider_key_env(p) for p in gateway.providers_used()]
    if uses_backends(gateway, plane.backends):
        secret_names.append(POOL_API_KEY_ENV)
    keepalive = gateway.request_timeout_seconds + KEEPALIVE_MARGIN_SECONDS
    command = [
        "--port", str(GATEWAY_PORT),
        "--num_workers", str(max(1, gateway.cpu // 1024)),  # one uvicorn worker per vCPU
        "--keepalive_timeout", str(keepalive),
    ]  # fmt: skip
    log_options = {"awslogs-group": logs.name, "awslogs-region": region}
    container = {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        "command": command,
        "portMappings": [{"containerPort": GATEWAY_PORT, "protocol": "tcp", "name": "http"}],
        "environment": [
            {"name": "LITELLM_CONFIG_BUCKET_NAME", "value": edge.bucket.id},
            {"name": "LITELLM_CONFIG_BUCKET_OBJECT_KEY", "value": config_key},
            {"name": REDIS_HOST_ENV, "value": args.redis.primary_endpoint_address},
            {"name": REDIS_PORT_ENV, "value": str(REDIS_PORT)},
            {"name": "REDIS_SSL", "value": "True"},
            {"name": "AWS_REGION", "value": region},
            # Prices come from the config; do not fetch LiteLLM's cost map at every start.
            {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
            {"name": "LITELLM_LOG", "value": "INFO"},
            *database_environment(),
        ],
        # valueFrom <secret ARN>:<JSON key>:: -- ECS reads each key at task start; nothing in plain text.
        "secrets": [
            {"name": key, "valueFrom": pulumi.Output.concat(secret.arn, f":{key}::")} for key in secret_names
        ],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {**log_options, "awslogs-stream-prefix": CONTAINER_NAME},
        },
        # Migrations first; the server starts once they are done, whether or not they succeeded.
        "dependsOn": [{"containerName": MIGRATE_CONTAINER, "condition": "COMPLETE"}],
        "stopTimeout": STOP_TIMEOUT_SECONDS,
        "linuxParameters": {"initProcessEnabled": True},
        "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
    }
    task = aws.ecs.TaskDefinition(
        f"{name}-gateway",
        family=f"{PROJECT}-{args.stack.stack}-gateway",
        cpu=str(gateway.cpu),
        memory=str(gateway.memory_mib),
        network_mode="awsvpc",
        requires_compatibilities=["FARGATE"],
        runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
            operating_system_family="LINUX", cpu_architecture="X86_64"
        ),
        execution_role_arn=execution_role.arn,
        task_role_arn=task_role.arn,
        container_definitions=pulumi.Output.json_dumps(
            [
                migrate_container(container),
                container,
                *region_health.containers(
                    image,
                    litellm_config(gateway, plane.backends),
                    region,
                    f"http://127.0.0.1:{GATEWAY_PORT}",
                    plane.serverless_only_healthy,
                    secret.arn,
                    container,
                    log_options,
                ),
                gateway_metrics.sidecar(region, cluster.name, metrics_logs.name, secret.arn, log_options),
            ]
        ),
        opts=_child(parent),
    )
    service = aws.ecs.Service(
        f"{name}-gateway",
        cluster=cluster.arn,
        task_definition=task.arn,
        desired_count=plane.min_tasks,
        launch_type="FARGATE",
        platform_version="LATEST",
        network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
            subnets=args.private_subnet_ids, security_groups=[args.security_group.id], assign_public_ip=False
        ),
        load_balancers=[
            aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=edge.target_group.arn,
                container_name=CONTAINER_NAME,
                container_port=GATEWAY_PORT,
            ),
            aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=edge.health_group.arn,
                container_name=region_health.CONTAINER_NAME,
                container_port=region_health.REGION_HEALTH_PORT,
            ),
        ],
        # Prisma migrations run at start; give a new task time before its health checks count.
        health_check_grace_period_seconds=HEALTH_CHECK_GRACE_SECONDS,
        deployment_minimum_healthy_percent=100,
        deployment_maximum_percent=200,
        deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
        availability_zone_rebalancing="ENABLED",
        enable_ecs_managed_tags=True,
        propagate_tags="SERVICE",
        opts=_child(
            parent,
            # The listener routes to it, and the secret version holds the database role it logs in as.
            depends_on=[edge.https, version],
            # Autoscaling owns the running count once the service exists.
            ignore_changes=["desiredCount"],
        ),
    )
    return cluster, service


def _task_roles(
    args: GatewayServiceArgs,
    config_key: str,
    secret: aws.secretsmanager.Secret,
    logs: aws.cloudwatch.LogGroup,
    metrics_logs: aws.cloudwatch.LogGroup,
    pull_statements: list[dict[str, Any]],
    parent: pulumi.Resource,
) -> tuple[aws.iam.Role, aws.iam.Role]:
    name, plane = args.name, args.plane
    statements: list[dict[str, Any]] = [
        log_statement(logs.arn),
        *secret_read_statements(
            secret.arn,
            args.kms_key_arn,
            plane.region,
            read_sid="GatewaySecret",
            decrypt_sid="DecryptGatewaySecret",
        ),
    ]
    statements += pull_statements
    execution_role = scoped_role(
        f"{name}-gateway-execution", "ecs-tasks.amazonaws.com", args.account, statements, _child(parent)
    )
    task_role = scoped_role(
        f"{name}-gateway-task",
        "ecs-tasks.amazonaws.com",
        args.account,
        [
            {
                "Sid": "ReadGatewayConfig",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": pulumi.Output.concat(args.edge.bucket.arn, "/", config_key),
            },
            # The metrics sidecar's EMF events (the CloudWatch agent also lists its streams).
            {**log_statement(metrics_logs.arn), "Sid": "GatewayMetrics"},
            {
                "Sid": "GatewayMetricsStreams",
                "Effect": "Allow",
                "Action": "logs:DescribeLogStreams",
                "Resource": pulumi.Output.concat(metrics_logs.arn, ":*"),
            },
        ],
        _child(parent),
    )
    return execution_role, task_role


# --- the image, from this region's registry ------------------------------------------------------------


def _image(
    args: GatewayServiceArgs, parent: pulumi.Resource
) -> tuple[pulumi.Output[str], list[dict[str, Any]]]:
    """The image reference the tasks pull, and what the execution role needs to pull it."""
    name, plane = args.name, args.plane
    image = plane.gateway.image
    if mirrored(image) and args.secrets.registry_credentials is not None:
        mirror = declare_mirror(
            f"{name}-image-cache",
            image,
            args.region,
            args.account,
            args.stack.physical_name("ghcr", args.region),
            args.secrets.registry_credentials.apply(json.dumps),
            plane.deletion_protection,
            parent,
        )
        # The first pull in a region creates the cache's repository and imports the image.
        return mirror.image, _ecr_pull(
            mirror.repository_arn, ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]
        )
    in_ecr = ecr_repository(image)
    if in_ecr is not None:
        account, registry_region, repository = in_ecr
        arn = f"arn:aws:ecr:{registry_region}:{account}:repository/{repository}"
        return pulumi.Output.from_input(image), _ecr_pull(arn, [])
    return pulumi.Output.from_input(image), []


# --- autoscaling --------------------------------------------------------------------------------------


def _autoscaling(
    args: GatewayServiceArgs,
    cluster: aws.ecs.Cluster,
    service: aws.ecs.Service,
    parent: pulumi.Resource,
) -> aws.appautoscaling.Target:
    name, plane = args.name, args.plane
    target = aws.appautoscaling.Target(
        f"{name}-gateway",
        service_namespace="ecs",
        scalable_dimension="ecs:service:DesiredCount",
        resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
        min_capacity=plane.min_tasks,
        max_capacity=plane.max_tasks,
        opts=_child(parent),
    )
    aws.appautoscaling.Policy(
        f"{name}-gateway-requests",
        policy_type="TargetTrackingScaling",
        service_namespace=target.service_namespace,
        scalable_dimension=target.scalable_dimension,
        resource_id=target.resource_id,
        target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
            target_value=plane.gateway.target_requests_per_task,
            predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                predefined_metric_type="ALBRequestCountPerTarget",
                resource_label=pulumi.Output.concat(
                    args.edge.alb.arn_suffix, "/", args.edge.target_group.arn_suffix
                ),
            ),
            # Add tasks quickly (a failover lands all traffic at once); remove them slowly.
            scale_out_cooldown=60,
            scale_in_cooldown=300,
        ),
        opts=_child(parent),
    )
    return target


def _ecr_pull(repository_arn: pulumi.Input[str], extra: list[str]) -> list[dict[str, Any]]:
    return [
        # AWS defines no resource for this call: it is account-wide by design.
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {
            "Sid": "EcrPull",
            "Effect": "Allow",
            "Action": [
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchCheckLayerAvailability",
                *extra,
            ],
            "Resource": repository_arn,
        },
    ]
