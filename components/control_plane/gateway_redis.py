"""One region's gateway Redis: an ElastiCache replication group in the private subnets, reached only from
the gateway's security group, TLS and RBAC: the gateway as the `default` user (its token alone), every
other client (node heartbeats, the fleet controller) as a user of its own (redis_users.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.control_plane.redis_users import DEFAULT_USER_NAME, GATEWAY_ACCESS, RedisUser
from components.control_plane.region import ControlPlaneRegion
from components.core.catalog.aws import ELASTICACHE_ID_MAX
from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.core.elasticache import hardened_replication_group

# Redis maintenance, one window per role: never both regions at once.
REDIS_MAINTENANCE_WINDOWS = {"primary": "sun:06:00-sun:07:00", "standby": "wed:06:00-wed:07:00"}


@dataclass(frozen=True)
class GatewayRedisArgs:
    name: str
    plane: ControlPlaneRegion
    stack: StackContext
    region: RegionContext
    private_subnet_ids: pulumi.Input[Sequence[str]]
    kms_key_arn: pulumi.Input[str]
    security_group: aws.ec2.SecurityGroup
    # The gateway's token: the `default` user's password.
    auth_token: pulumi.Input[str]
    # Clients besides the gateway; those of other regions are left out here.
    users: Sequence[RedisUser]


def declare_gateway_redis(
    args: GatewayRedisArgs, parent: pulumi.Resource
) -> aws.elasticache.ReplicationGroup:
    name, plane = args.name, args.plane
    child = pulumi.ResourceOptions(parent=parent)
    subnets = aws.elasticache.SubnetGroup(
        f"{name}-redis",
        subnet_ids=args.private_subnet_ids,
        description=f"{PROJECT}/{args.stack.stack} gateway Redis, private subnets",
        opts=child,
    )
    users = _users(args, child)
    return hardened_replication_group(
        f"{name}-redis",
        description=(f"{PROJECT}/{args.stack.stack} gateway routing state and heartbeats in {plane.region}"),
        node_type=plane.redis.node_type,
        replicas=plane.redis.replicas,
        parameter_group_name="default.redis7",
        subnet_group_name=subnets.name,
        security_group_id=args.security_group.id,
        kms_key_arn=args.kms_key_arn,
        maintenance_window=REDIS_MAINTENANCE_WINDOWS[plane.role],
        # RBAC: the gateway's token is the password of the `default` user; other clients have their own.
        user_group_id=users.user_group_id,
        opts=child,
    )


def _users(args: GatewayRedisArgs, child: pulumi.ResourceOptions) -> aws.elasticache.UserGroup:
    name, plane = args.name, args.plane

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
            opts=child,
        )

    members = [user("gateway", DEFAULT_USER_NAME, GATEWAY_ACCESS, args.auth_token)]
    members += [
        user(u.key, u.user_name, u.access(plane.region), u.password)
        for u in args.users
        if plane.region in u.regions
    ]
    return aws.elasticache.UserGroup(
        f"{name}-redis-users",
        user_group_id=args.stack.physical_name(
            "redis-users", args.region, max_length=ELASTICACHE_ID_MAX
        ).lower(),
        engine="redis",
        user_ids=[m.user_id for m in members],
        opts=child,
    )
