"""RegionalControlPlane: one region's public API, the LiteLLM gateway behind it, and the gateway's Redis.

    internet -> ALB (HTTPS 443; 80 redirects) -> gateway tasks on Fargate (private subnets, port 4000)
                                               -> Redis (TLS, ACL user), Aurora (TLS), providers (443)
         only the inference API and /fleet/region-health (the task's region-health sidecar, port 4001)
         are forwarded; every other path (LiteLLM's admin UI and management API) gets a 404 from the ALB

Security groups chain the tiers: only the ALB reaches the gateway, only the gateway reaches Redis and the
database. The gateway's secrets (master key, database URL, Redis token, provider keys) sit in one Secrets
Manager secret, encrypted with the region's data key, and reach the container only as `secrets`
(valueFrom), never as plain environment. Its config file is rendered from the stack config into S3 under a
key carrying its digest, so a routing change is a new task definition and a rolling deployment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import pulumi
import pulumi_aws as aws

from components.control_plane import region_health
from components.control_plane.alarms import AlarmTargets, declare_alarms
from components.control_plane.config import GatewayConfig, RedisConfig
from components.control_plane.gateway_config import (
    DATABASE_URL_ENV,
    GATEWAY_PORT,
    LIVENESS_PATH,
    MASTER_KEY_ENV,
    POOL_API_KEY_ENV,
    REDIS_HOST_ENV,
    REDIS_PASSWORD_ENV,
    REDIS_PORT,
    REDIS_PORT_ENV,
    SALT_KEY_ENV,
    PoolDeployment,
    config_digest,
    litellm_config,
    litellm_config_yaml,
    provider_key_env,
    uses_pools,
)
from components.control_plane.gateway_database import (
    MIGRATE_CONTAINER,
    database_environment,
    database_url,
    migrate_container,
)
from components.control_plane.image_mirror import declare_mirror, ecr_repository, mirrored
from components.control_plane.public_api import NOT_FOUND, declare_public_rules
from components.control_plane.redis_users import DEFAULT_USER_NAME, GATEWAY_ACCESS, RedisUser
from components.core.catalog.aws import ELASTICACHE_ID_MAX, LOAD_BALANCER_NAME_MAX
from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.core.iam import Statement, scoped_role
from components.core.load_balancing import http_health_check
from components.core.security import SecurityGroups
from components.core.storage import private_bucket

HTTPS_PORT = 443
HTTP_PORT = 80
# TLS 1.3 with 1.2 for older clients, forward secrecy only.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
CONTAINER_NAME = "gateway"
ACCESS_LOG_PREFIX = "alb-logs"
CONFIG_PREFIX = "config"
# Fargate stops a task at most 120 s after SIGTERM; in-flight requests get the ALB's deregistration delay.
STOP_TIMEOUT_SECONDS = 120
# The gateway keeps an idle connection open this much longer than the ALB does: the ALB must be the one
# to close it, or it reuses a connection the gateway has just closed and answers 502.
KEEPALIVE_MARGIN_SECONDS = 60
# Redis maintenance, one window per role: never both regions at once.
REDIS_MAINTENANCE_WINDOWS = {"primary": "sun:06:00-sun:07:00", "standby": "wed:06:00-wed:07:00"}


@dataclass(frozen=True)
class GatewaySecrets:
    """The stack's secrets the gateway needs, as secret Outputs (from ESC through StackSecrets)."""

    master_key: pulumi.Output[str]
    provider_api_keys: pulumi.Output[Any]
    # The gateway's own database role's password (never the master user's).
    database_password: pulumi.Output[str]
    redis_auth_token: pulumi.Output[str]
    # LiteLLM encrypts what it stores (provider credentials added through the API) with this.
    salt_key: pulumi.Output[str]
    # ghcr.io credentials for the image's pull-through cache ({"username", "accessToken"}), if mirrored.
    registry_credentials: pulumi.Output[Any] | None
    # The key the gateway presents to the fleet's GPU pools; None where the stack has none.
    pool_api_key: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class DatabaseAccess:
    """How the gateway reaches the data tier in its region."""

    endpoint: pulumi.Input[str]
    port: int
    name: str
    # The gateway's own role, known once the data tier created it.
    username: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    # Private subnets of other regions where the writer may live, reached over the VPC peering.
    remote_cidrs: Sequence[str]


@dataclass(frozen=True)
class ControlPlaneRegion:
    """The slice of the config one region's control plane is built from."""

    region: str
    role: Literal["primary", "standby"]
    domain: str
    gateway: GatewayConfig
    min_tasks: int
    max_tasks: int
    # The primary's size: the standby scales to it when it takes traffic.
    primary_min_tasks: int
    redis: RedisConfig
    log_retention_days: int
    deletion_protection: bool
    # The GPU pools this region's gateway routes to first (its own region's).
    pools: tuple[PoolDeployment, ...] = ()

    @property
    def api_name(self) -> str:
        """The name clients use; served by whichever region DNS points at."""
        return f"api.{self.domain}"

    @property
    def regional_name(self) -> str:
        """This region's own name for the gateway: health checks and operators reach one region by it."""
        return f"{self.region}.api.{self.domain}"


@dataclass(frozen=True)
class RegionalControlPlaneArgs:
    plane: ControlPlaneRegion
    stack: StackContext
    region: RegionContext
    vpc_id: pulumi.Input[str]
    public_subnet_ids: pulumi.Input[Sequence[str]]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    kms_key_arn: pulumi.Input[str]
    database: DatabaseAccess
    secrets: GatewaySecrets
    # The region's alert topic: every alarm here notifies it.
    topic_arn: pulumi.Input[str]
    # ACM validates a name with the same record in every region: the primary writes the one for the
    # shared API name and hands its FQDNs to the others (None: this region writes it).
    shared_validation_fqdns: pulumi.Input[Sequence[str]] | None = None
    # Clients of the Redis besides the gateway, each its own ACL user (node heartbeats, the controller).
    redis_users: Sequence[RedisUser] = ()


@dataclass(frozen=True)
class RegionalControlPlaneOutputs:
    """One region's control plane as DNS, failover and the capabilities that route through it see it."""

    region: str
    role: Literal["primary", "standby"]
    regional_name: str
    # The path on `regional_name` that says whether this region serves (what DNS failover probes).
    health_check_path: str
    gateway_url: pulumi.Output[str]
    alb_dns_name: pulumi.Output[str]
    alb_zone_id: pulumi.Output[str]
    alb_security_group_id: pulumi.Output[str]
    gateway_security_group_id: pulumi.Output[str]
    redis_security_group_id: pulumi.Output[str]
    redis_endpoint: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    service_name: pulumi.Output[str]


class RegionalControlPlane(pulumi.ComponentResource):
    """ALB + ECS Fargate gateway + ElastiCache Redis in one region, on that region's network.

    Every child goes through the region's provider.
    """

    outputs: RegionalControlPlaneOutputs

    alb_dns_name: pulumi.Output[str]
    alb_zone_id: pulumi.Output[str]
    gateway_url: pulumi.Output[str]
    regional_name: str
    certificate_arn: pulumi.Output[str]
    shared_validation_fqdns: pulumi.Output[list[str]]
    alb_security_group_id: pulumi.Output[str]
    gateway_security_group_id: pulumi.Output[str]
    redis_security_group_id: pulumi.Output[str]
    redis_endpoint: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    service_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegionalControlPlaneArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "inference-fleet:control_plane:RegionalControlPlane",
            name,
            None,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[args.region.provider])),
        )
        self._name = name
        self._args = args
        plane = args.plane
        invoke = pulumi.InvokeOutputOptions(parent=self)
        self._account = aws.get_caller_identity_output(opts=invoke).account_id
        self._zone_id = aws.route53.get_zone_output(
            name=plane.domain, private_zone=False, opts=invoke
        ).zone_id

        alb_sg, gateway_sg, redis_sg = self._security_groups()
        bucket = self._bucket()
        certificate = self._certificate()
        alb, target_group, health_group, https = self._load_balancer(alb_sg, bucket, certificate)
        redis = self._redis(redis_sg)
        secret, version = self._secret(redis)
        cluster, service = self._service(
            gateway_sg, bucket, secret, version, redis, [target_group, health_group], https
        )
        scalable = self._autoscaling(cluster, service, alb, target_group)
        declare_alarms(
            AlarmTargets(
                name=name,
                region=plane.region,
                role=plane.role,
                topic_arn=args.topic_arn,
                alb=alb,
                target_group=target_group,
                cluster=cluster,
                service=service,
                scalable_target=scalable,
                primary_min_tasks=plane.primary_min_tasks,
                requests_per_task_minute=plane.gateway.target_requests_per_task,
            ),
            self._child(),
        )

        aws.route53.Record(
            f"{name}-regional",
            zone_id=self._zone_id,
            name=plane.regional_name,
            type="A",
            aliases=[
                aws.route53.RecordAliasArgs(
                    name=alb.dns_name, zone_id=alb.zone_id, evaluate_target_health=True
                )
            ],
            opts=self._child(),
        )

        self.outputs = RegionalControlPlaneOutputs(
            region=plane.region,
            role=plane.role,
            regional_name=plane.regional_name,
            health_check_path=region_health.REGION_HEALTH_PATH,
            gateway_url=pulumi.Output.from_input(f"https://{plane.regional_name}"),
            alb_dns_name=alb.dns_name,
            alb_zone_id=alb.zone_id,
            alb_security_group_id=alb_sg.id,
            gateway_security_group_id=gateway_sg.id,
            redis_security_group_id=redis_sg.id,
            redis_endpoint=redis.primary_endpoint_address,
            cluster_name=cluster.name,
            service_name=service.name,
        )
        out = self.outputs
        self.register_outputs(
            {
                "albDnsName": out.alb_dns_name,
                "gatewayUrl": out.gateway_url,
                "certificateArn": certificate.certificate_arn,
                "redisEndpoint": out.redis_endpoint,
                "clusterName": out.cluster_name,
                "serviceName": out.service_name,
            }
        )

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    # --- who may talk to whom -------------------------------------------------------------------------

    def _security_groups(
        self,
    ) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        """Groups without inline rules (the provider then drops AWS's allow-all egress); rules one by one."""
        name, args = self._name, self._args
        groups = SecurityGroups(name, args.vpc_id, self._child())
        group = groups.group
        alb = group("alb-sg", "gateway ALB: HTTPS from the internet, HTTP only to redirect")
        gateway = group("gateway-sg", "LiteLLM gateway tasks: from the ALB only")
        redis = group("redis-sg", "gateway Redis: from the gateway only")

        def rule(
            direction: Literal["in", "out"],
            rule_name: str,
            owner: aws.ec2.SecurityGroup,
            port: int,
            description: str,
            *,
            cidr: str | None = None,
            peer: pulumi.Input[str] | None = None,
        ) -> None:
            groups.allow(direction, rule_name, owner.id, port, description, peer=peer, cidr=cidr)

        anywhere = "0.0.0.0/0"
        db_port = args.database.port
        rule("in", "alb-https", alb, HTTPS_PORT, "HTTPS from clients", cidr=anywhere)
        rule("in", "alb-http", alb, HTTP_PORT, "HTTP from clients, redirected to HTTPS", cidr=anywhere)
        rule("out", "alb-to-gateway", alb, GATEWAY_PORT, "to the gateway", peer=gateway.id)
        health_port = region_health.REGION_HEALTH_PORT
        rule("out", "alb-to-region-health", alb, health_port, "to the region-health sidecar", peer=gateway.id)

        rule("in", "gateway-from-alb", gateway, GATEWAY_PORT, "from the ALB", peer=alb.id)
        rule("in", "region-health-from-alb", gateway, health_port, "region health, from the ALB", peer=alb.id)
        rule("out", "gateway-to-redis", gateway, REDIS_PORT, "to its Redis", peer=redis.id)
        rule("out", "gateway-to-db", gateway, db_port, "to Aurora here", peer=args.database.security_group_id)
        for i, cidr in enumerate(args.database.remote_cidrs):
            rule(
                "out",
                f"gateway-to-remote-db-{i}",
                gateway,
                db_port,
                "to the Aurora writer elsewhere",
                cidr=cidr,
            )
        # Providers, AWS APIs (Secrets Manager, S3, logs) and the image registry are all HTTPS.
        rule("out", "gateway-https", gateway, HTTPS_PORT, "HTTPS to providers and AWS APIs", cidr=anywhere)

        rule("in", "redis-from-gateway", redis, REDIS_PORT, "from the gateway", peer=gateway.id)
        # The database's group belongs to the data tier; the gateway opens its own way in.
        groups.allow(
            "in",
            "db-from-gateway",
            args.database.security_group_id,
            db_port,
            f"from the gateway in {args.plane.region}",
            peer=gateway.id,
        )
        return alb, gateway, redis

    # --- storage for access logs and the gateway's config ----------------------------------------------

    def _bucket(self) -> aws.s3.Bucket:
        name, plane = self._name, self._args.plane
        elb_account = aws.elb.get_service_account_output(opts=pulumi.InvokeOutputOptions(parent=self)).arn

        def access_logs(bucket: aws.s3.Bucket) -> list[Statement]:
            log_objects = pulumi.Output.concat(
                bucket.arn, f"/{ACCESS_LOG_PREFIX}/AWSLogs/", self._account, "/*"
            )
            # Regions older than August 2022 deliver as their ELB account, newer ones as a service
            # principal: allow both, for this account's logs under the prefix only.
            return [
                {
                    "Sid": "AlbAccessLogs",
                    "Effect": "Allow",
                    "Principal": {
                        "AWS": elb_account,
                        "Service": "logdelivery.elasticloadbalancing.amazonaws.com",
                    },
                    "Action": "s3:PutObject",
                    "Resource": log_objects,
                }
            ]

        private = private_bucket(
            f"{name}-bucket",
            self._child(),
            force_destroy=not plane.deletion_protection,
            statements=access_logs,
        )
        bucket = private.bucket
        self._bucket_policy = private.policy
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-bucket",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-access-logs",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=f"{ACCESS_LOG_PREFIX}/"),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                        days=plane.log_retention_days
                    ),
                )
            ],
            opts=self._child(),
        )
        return bucket

    # --- TLS for the API name and this region's own name ------------------------------------------------

    def _certificate(self) -> aws.acm.CertificateValidation:
        name, args, plane = self._name, self._args, self._args.plane
        certificate = aws.acm.Certificate(
            f"{name}-cert",
            domain_name=plane.api_name,
            subject_alternative_names=[plane.regional_name],
            validation_method="DNS",
            opts=self._child(),
        )
        own_names = [plane.regional_name] + ([plane.api_name] if args.shared_validation_fqdns is None else [])
        records: dict[str, aws.route53.Record] = {}
        for domain in own_names:
            option = certificate.domain_validation_options.apply(
                lambda options, domain=domain: next(o for o in options if o.domain_name == domain)
            )
            records[domain] = aws.route53.Record(
                f"{name}-cert-{'api' if domain == plane.api_name else 'regional'}",
                zone_id=self._zone_id,
                name=option.apply(lambda o: o.resource_record_name or ""),
                type=option.apply(lambda o: o.resource_record_type or "CNAME"),
                records=[option.apply(lambda o: o.resource_record_value or "")],
                ttl=300,
                opts=self._child(),
            )
        shared = [records[plane.api_name].fqdn] if plane.api_name in records else []
        self.shared_validation_fqdns = pulumi.Output.all(*shared) if shared else pulumi.Output.from_input([])
        fqdns: pulumi.Input[Sequence[str]] = pulumi.Output.all(
            records[plane.regional_name].fqdn,
            *shared,
        )
        if args.shared_validation_fqdns is not None:
            fqdns = pulumi.Output.all(fqdns, args.shared_validation_fqdns).apply(lambda p: [*p[0], *p[1]])
        return aws.acm.CertificateValidation(
            f"{name}-cert",
            certificate_arn=certificate.arn,
            validation_record_fqdns=fqdns,
            opts=self._child(),
        )

    # --- the load balancer ------------------------------------------------------------------------------

    def _load_balancer(
        self,
        alb_sg: aws.ec2.SecurityGroup,
        bucket: aws.s3.Bucket,
        certificate: aws.acm.CertificateValidation,
    ) -> tuple[aws.lb.LoadBalancer, aws.lb.TargetGroup, aws.lb.TargetGroup, aws.lb.Listener]:
        name, args, plane = self._name, self._args, self._args.plane
        timeout = plane.gateway.request_timeout_seconds
        alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            # Auto-names would not fit the API's 32 characters: the stack and region say whose it is.
            name=args.stack.physical_name("gateway", args.region, max_length=LOAD_BALANCER_NAME_MAX),
            load_balancer_type="application",
            internal=False,
            security_groups=[alb_sg.id],
            subnets=args.public_subnet_ids,
            # A completion may stay silent until done: let a connection idle as long as a request may run.
            idle_timeout=timeout,
            drop_invalid_header_fields=True,
            enable_deletion_protection=plane.deletion_protection,
            access_logs=aws.lb.LoadBalancerAccessLogsArgs(
                bucket=bucket.id, prefix=ACCESS_LOG_PREFIX, enabled=True
            ),
            opts=self._child(depends_on=[self._bucket_policy]),
        )
        target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            name=args.stack.physical_name(
                "gateway",
                args.region,
                replaced_on=(GATEWAY_PORT, "HTTP", "ip"),
                max_length=LOAD_BALANCER_NAME_MAX,
            ),
            port=GATEWAY_PORT,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            # Requests last seconds to minutes: send each to the task with the fewest in flight.
            load_balancing_algorithm_type="least_outstanding_requests",
            # A task leaving (scale-in, deployment) finishes what it holds before it is stopped.
            deregistration_delay=timeout,
            # Liveness only: a task whose database is unreachable still serves (and is not replaced).
            health_check=http_health_check(LIVENESS_PATH, unhealthy_threshold=3),
            opts=self._child(),
        )
        health_port = region_health.REGION_HEALTH_PORT
        health_group = aws.lb.TargetGroup(
            f"{name}-health-tg",
            name=args.stack.physical_name(
                "health",
                args.region,
                replaced_on=(health_port, "HTTP", "ip"),
                max_length=LOAD_BALANCER_NAME_MAX,
            ),
            port=health_port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            deregistration_delay=5,
            # The sidecar's own liveness: its answer on the region-health path is Route53's to judge.
            health_check=http_health_check(region_health.REGION_HEALTH_LIVE_PATH, unhealthy_threshold=3),
            opts=self._child(),
        )
        https = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=alb.arn,
            port=HTTPS_PORT,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=certificate.certificate_arn,
            # Nothing but the listed paths: the admin UI and management API are not public.
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(type="fixed-response", fixed_response=NOT_FOUND)
            ],
            opts=self._child(),
        )
        declare_public_rules(
            f"{name}-https",
            https,
            target_group,
            health_group,
            region_health.REGION_HEALTH_PATH,
            self._child(),
        )
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=alb.arn,
            port=HTTP_PORT,
            protocol="HTTP",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="redirect",
                    redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                        protocol="HTTPS", port=str(HTTPS_PORT), status_code="HTTP_301"
                    ),
                )
            ],
            opts=self._child(),
        )
        return alb, target_group, health_group, https

    # --- Redis --------------------------------------------------------------------------------------------

    def _redis(self, redis_sg: aws.ec2.SecurityGroup) -> aws.elasticache.ReplicationGroup:
        name, args, plane = self._name, self._args, self._args.plane
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-redis",
            subnet_ids=args.private_subnet_ids,
            description=f"{PROJECT}/{args.stack.stack} gateway Redis, private subnets",
            opts=self._child(),
        )
        replicated = plane.redis.replicas > 0
        users = self._redis_users()
        return aws.elasticache.ReplicationGroup(
            f"{name}-redis",
            description=(
                f"{PROJECT}/{args.stack.stack} gateway routing state and heartbeats in {plane.region}"
            ),
            engine="redis",
            engine_version="7.1",
            parameter_group_name="default.redis7",
            node_type=plane.redis.node_type,
            num_cache_clusters=1 + plane.redis.replicas,
            # With a replica in another zone, losing the primary's zone promotes the replica.
            automatic_failover_enabled=replicated,
            multi_az_enabled=replicated,
            port=REDIS_PORT,
            subnet_group_name=subnets.name,
            security_group_ids=[redis_sg.id],
            at_rest_encryption_enabled=True,
            kms_key_id=args.kms_key_arn,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            # RBAC: the gateway's token is the password of the `default` user; other clients have their own.
            user_group_ids=[users.user_group_id],
            auto_minor_version_upgrade=True,
            maintenance_window=REDIS_MAINTENANCE_WINDOWS[plane.role],
            opts=self._child(),
        )

    def _redis_users(self) -> aws.elasticache.UserGroup:
        name, args, plane = self._name, self._args, self._args.plane

        def user(key: str, user_name: str, access: str, password: pulumi.Input[str]) -> aws.elasticache.User:
            return aws.elasticache.User(
                f"{name}-redis-{key}",
                # Ids are stored lower-case; the stack and region keep them unique in the account.
                user_id=args.stack.physical_name(
                    f"redis-{key}", args.region, max_length=ELASTICACHE_ID_MAX
                ).lower(),
                user_name=user_name,
                engine="redis",
                access_string=access,
                authentication_mode=aws.elasticache.UserAuthenticationModeArgs(
                    type="password", passwords=[pulumi.Output.secret(password)]
                ),
                opts=self._child(),
            )

        members = [user("gateway", DEFAULT_USER_NAME, GATEWAY_ACCESS, args.secrets.redis_auth_token)]
        members += [
            user(u.key, u.user_name, u.access(plane.region), u.password)
            for u in args.redis_users
            if plane.region in u.regions
        ]
        return aws.elasticache.UserGroup(
            f"{name}-redis-users",
            user_group_id=args.stack.physical_name(
                "redis-users", args.region, max_length=ELASTICACHE_ID_MAX
            ).lower(),
            engine="redis",
            user_ids=[m.user_id for m in members],
            opts=self._child(),
        )

    # --- the gateway's secrets ----------------------------------------------------------------------------

    def _secret(
        self, redis: aws.elasticache.ReplicationGroup
    ) -> tuple[aws.secretsmanager.Secret, aws.secretsmanager.SecretVersion]:
        name, args, plane = self._name, self._args, self._args.plane
        providers = plane.gateway.providers_used()
        to_pools = uses_pools(plane.gateway, plane.pools)
        if to_pools and args.secrets.pool_api_key is None:
            raise ValueError("the gateway routes to GPU pools but was given no pool API key")
        db = args.database
        secret = aws.secretsmanager.Secret(
            f"{name}-gateway-secret",
            description=f"{PROJECT}/{args.stack.stack}: LiteLLM gateway secrets in {plane.region}",
            kms_key_id=args.kms_key_arn,
            recovery_window_in_days=30 if plane.deletion_protection else 7,
            opts=self._child(protect=plane.deletion_protection),
        )

        def document(values: list[Any]) -> str:
            master_key, provider_keys, password, redis_token, salt_key, username, endpoint, pool_key = values
            missing = [p for p in providers if p not in (provider_keys or {})]
            if missing:
                raise ValueError(
                    f"{PROJECT}:providerApiKeys: no key for {', '.join(missing)}; the gateway's routes use "
                    f"{', '.join(providers)}. Add it in ESC: secrets.providerApiKeys.<provider>"
                )
            url = database_url(username, quote(password, safe=""), endpoint, db.port, db.name)
            return json.dumps(
                {
                    MASTER_KEY_ENV: master_key,
                    DATABASE_URL_ENV: url,
                    REDIS_PASSWORD_ENV: redis_token,
                    SALT_KEY_ENV: salt_key,
                    **{provider_key_env(p): provider_keys[p] for p in providers},
                    **({POOL_API_KEY_ENV: pool_key} if to_pools else {}),
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
            args.secrets.pool_api_key if to_pools else None,
        ).apply(document)
        version = aws.secretsmanager.SecretVersion(
            f"{name}-gateway-secret",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret(contents),
            opts=self._child(),
        )
        return secret, version

    # --- the gateway service ------------------------------------------------------------------------------

    def _service(
        self,
        gateway_sg: aws.ec2.SecurityGroup,
        bucket: aws.s3.Bucket,
        secret: aws.secretsmanager.Secret,
        version: aws.secretsmanager.SecretVersion,
        redis: aws.elasticache.ReplicationGroup,
        target_groups: list[aws.lb.TargetGroup],
        https: aws.lb.Listener,
    ) -> tuple[aws.ecs.Cluster, aws.ecs.Service]:
        name, args, plane = self._name, self._args, self._args.plane
        gateway = plane.gateway
        region = plane.region

        config_text = litellm_config_yaml(gateway, plane.pools)
        config_key = f"{CONFIG_PREFIX}/litellm-{config_digest(config_text)}.yaml"
        aws.s3.BucketObjectv2(
            f"{name}-litellm-config",
            bucket=bucket.id,
            key=config_key,
            content=config_text,
            content_type="application/yaml",
            opts=self._child(),
        )

        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            opts=self._child(),
        )
        logs = aws.cloudwatch.LogGroup(
            f"{name}-gateway-logs", retention_in_days=plane.log_retention_days, opts=self._child()
        )
        image, pull_statements = self._image()
        execution_role, task_role = self._task_roles(bucket, config_key, secret, logs, pull_statements)

        secret_names = [MASTER_KEY_ENV, DATABASE_URL_ENV, REDIS_PASSWORD_ENV, SALT_KEY_ENV] + [
            provider_key_env(p) for p in gateway.providers_used()
        ]
        if uses_pools(gateway, plane.pools):
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
                {"name": "LITELLM_CONFIG_BUCKET_NAME", "value": bucket.id},
                {"name": "LITELLM_CONFIG_BUCKET_OBJECT_KEY", "value": config_key},
                {"name": REDIS_HOST_ENV, "value": redis.primary_endpoint_address},
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
                {"name": key, "valueFrom": pulumi.Output.concat(secret.arn, f":{key}::")}
                for key in secret_names
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
                    region_health.container(
                        image, litellm_config(gateway, plane.pools), GATEWAY_PORT, log_options
                    ),
                ]
            ),
            opts=self._child(),
        )
        service = aws.ecs.Service(
            f"{name}-gateway",
            cluster=cluster.arn,
            task_definition=task.arn,
            desired_count=plane.min_tasks,
            launch_type="FARGATE",
            platform_version="LATEST",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.private_subnet_ids, security_groups=[gateway_sg.id], assign_public_ip=False
            ),
            load_balancers=[
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=target_groups[0].arn,
                    container_name=CONTAINER_NAME,
                    container_port=GATEWAY_PORT,
                ),
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=target_groups[1].arn,
                    container_name=region_health.CONTAINER_NAME,
                    container_port=region_health.REGION_HEALTH_PORT,
                ),
            ],
            # Prisma migrations run at start; give a new task time before its health checks count.
            health_check_grace_period_seconds=120,
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            availability_zone_rebalancing="ENABLED",
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            opts=self._child(
                # The listener routes to it, and the secret version holds the database role it logs in as.
                depends_on=[https, version],
                # Autoscaling owns the running count once the service exists.
                ignore_changes=["desiredCount"],
            ),
        )
        return cluster, service

    def _task_roles(
        self,
        bucket: aws.s3.Bucket,
        config_key: str,
        secret: aws.secretsmanager.Secret,
        logs: aws.cloudwatch.LogGroup,
        pull_statements: list[dict[str, Any]],
    ) -> tuple[aws.iam.Role, aws.iam.Role]:
        name, args, plane = self._name, self._args, self._args.plane
        statements: list[dict[str, Any]] = [
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": pulumi.Output.concat(logs.arn, ":*"),
            },
            {
                "Sid": "GatewaySecret",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": secret.arn,
            },
            {
                "Sid": "DecryptGatewaySecret",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": args.kms_key_arn,
                "Condition": {
                    "StringEquals": {"kms:ViaService": f"secretsmanager.{plane.region}.amazonaws.com"}
                },
            },
        ]
        statements += pull_statements
        execution_role = scoped_role(
            f"{name}-gateway-execution", "ecs-tasks.amazonaws.com", self._account, statements, self._child()
        )
        task_role = scoped_role(
            f"{name}-gateway-task",
            "ecs-tasks.amazonaws.com",
            self._account,
            [
                {
                    "Sid": "ReadGatewayConfig",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": pulumi.Output.concat(bucket.arn, "/", config_key),
                }
            ],
            self._child(),
        )
        return execution_role, task_role

    # --- the image, from this region's registry ------------------------------------------------------------

    def _image(self) -> tuple[pulumi.Output[str], list[dict[str, Any]]]:
        """The image reference the tasks pull, and what the execution role needs to pull it."""
        name, args, plane = self._name, self._args, self._args.plane
        image = plane.gateway.image
        if mirrored(image) and args.secrets.registry_credentials is not None:
            mirror = declare_mirror(
                f"{name}-image-cache",
                image,
                args.region,
                self._account,
                args.stack.physical_name("ghcr", args.region),
                args.secrets.registry_credentials.apply(json.dumps),
                plane.deletion_protection,
                self,
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
        self,
        cluster: aws.ecs.Cluster,
        service: aws.ecs.Service,
        alb: aws.lb.LoadBalancer,
        target_group: aws.lb.TargetGroup,
    ) -> aws.appautoscaling.Target:
        name, plane = self._name, self._args.plane
        target = aws.appautoscaling.Target(
            f"{name}-gateway",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
            min_capacity=plane.min_tasks,
            max_capacity=plane.max_tasks,
            opts=self._child(),
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
                    resource_label=pulumi.Output.concat(alb.arn_suffix, "/", target_group.arn_suffix),
                ),
                # Add tasks quickly (a failover lands all traffic at once); remove them slowly.
                scale_out_cooldown=60,
                scale_in_cooldown=300,
            ),
            opts=self._child(),
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
