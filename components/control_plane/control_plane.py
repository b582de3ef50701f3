"""RegionalControlPlane: one region's public API, the LiteLLM gateway behind it, and the gateway's Redis.

    internet -> ALB (HTTPS 443; 80 redirects) -> gateway tasks on Fargate (private subnets, port 4000)
                                               -> Redis (TLS, ACL user), Aurora (TLS), providers (443)
         only the inference API and /fleet/region-health (the task's region-health sidecar, port 4001)
         are forwarded; every other path (LiteLLM's admin UI and management API) gets a 404 from the ALB

The component holds who may talk to whom (security groups chain the tiers: only the ALB reaches the
gateway, only the gateway reaches Redis and the database), the region's own DNS name and the alarms; its
parts, each in a module of its own and every resource a child of this component:
- edge.py: the bucket (access logs, the gateway's config), the certificate and the ALB;
- gateway_redis.py: the gateway's Redis and its users;
- gateway_service.py: the gateway's secret, task, roles, image and service, and its autoscaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from components.control_plane import region_health
from components.control_plane.alarms import AlarmTargets, declare_alarms
from components.control_plane.edge import HTTP_PORT, HTTPS_PORT, EdgeArgs, declare_edge
from components.control_plane.gateway_config import GATEWAY_PORT
from components.control_plane.gateway_redis import GatewayRedisArgs, declare_gateway_redis
from components.control_plane.gateway_service import GatewayServiceArgs, declare_gateway_service
from components.control_plane.redis_users import RedisUser
from components.control_plane.region import ControlPlaneRegion, DatabaseAccess, GatewaySecrets
from components.core.context import RegionContext, StackContext
from components.core.elasticache import REDIS_PORT
from components.core.security import SecurityGroups


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
    # CloudWatch's dimensions of the public ALB and the gateway's target group (LoadBalancer, TargetGroup).
    alb_arn_suffix: pulumi.Output[str]
    gateway_target_group_arn_suffix: pulumi.Output[str]
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
    # The FQDNs of the API name's certificate validation record, for the other regions to reuse (the
    # primary's; empty in a region that reused another's).
    shared_validation_fqdns: pulumi.Output[list[str]]

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
        account = aws.get_caller_identity_output(opts=invoke).account_id
        zone_id = aws.route53.get_zone_output(name=plane.domain, private_zone=False, opts=invoke).zone_id

        alb_sg, gateway_sg, redis_sg = self._security_groups()
        edge = declare_edge(
            EdgeArgs(
                name=name,
                plane=plane,
                stack=args.stack,
                region=args.region,
                account=account,
                zone_id=zone_id,
                vpc_id=args.vpc_id,
                public_subnet_ids=args.public_subnet_ids,
                alb_security_group=alb_sg,
                shared_validation_fqdns=args.shared_validation_fqdns,
            ),
            self,
        )
        self.shared_validation_fqdns = edge.shared_validation_fqdns
        redis = declare_gateway_redis(
            GatewayRedisArgs(
                name=name,
                plane=plane,
                stack=args.stack,
                region=args.region,
                private_subnet_ids=args.private_subnet_ids,
                kms_key_arn=args.kms_key_arn,
                security_group=redis_sg,
                auth_token=args.secrets.redis_auth_token,
                users=args.redis_users,
            ),
            self,
        )
        gateway = declare_gateway_service(
            GatewayServiceArgs(
                name=name,
                plane=plane,
                stack=args.stack,
                region=args.region,
                account=account,
                private_subnet_ids=args.private_subnet_ids,
                kms_key_arn=args.kms_key_arn,
                database=args.database,
                secrets=args.secrets,
                security_group=gateway_sg,
                redis=redis,
                edge=edge,
            ),
            self,
        )
        declare_alarms(
            AlarmTargets(
                name=name,
                region=plane.region,
                role=plane.role,
                topic_arn=args.topic_arn,
                alb=edge.alb,
                target_group=edge.target_group,
                cluster=gateway.cluster,
                service=gateway.service,
                scalable_target=gateway.scalable_target,
                primary_min_tasks=plane.primary_min_tasks,
                requests_per_task_minute=plane.gateway.target_requests_per_task,
            ),
            self._child(),
        )

        aws.route53.Record(
            f"{name}-regional",
            zone_id=zone_id,
            name=plane.regional_name,
            type="A",
            aliases=[
                aws.route53.RecordAliasArgs(
                    name=edge.alb.dns_name, zone_id=edge.alb.zone_id, evaluate_target_health=True
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
            alb_dns_name=edge.alb.dns_name,
            alb_zone_id=edge.alb.zone_id,
            alb_arn_suffix=edge.alb.arn_suffix,
            gateway_target_group_arn_suffix=edge.target_group.arn_suffix,
            alb_security_group_id=alb_sg.id,
            gateway_security_group_id=gateway_sg.id,
            redis_security_group_id=redis_sg.id,
            redis_endpoint=redis.primary_endpoint_address,
            cluster_name=gateway.cluster.name,
            service_name=gateway.service.name,
        )
        out = self.outputs
        self.register_outputs(
            {
                "albDnsName": out.alb_dns_name,
                "gatewayUrl": out.gateway_url,
                "certificateArn": edge.certificate.certificate_arn,
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
