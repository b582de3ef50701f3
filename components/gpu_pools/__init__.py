"""The GPU pools capability: the node image baked by EC2 Image Builder, and per pool an Auto Scaling group
of GPU nodes (on-demand floor, spot above it) behind an internal load balancer, which the gateway of the
pool's region routes to before its serverless endpoints.

Published: `GpuPoolConfig`, `NodeImageConfig`, `POOL_API_KEY`, `NODE_REDIS_PASSWORD`, `SECRETS`,
`GpuPoolsOutputs`, `gateway_backends` (the gateway's view of the pools, from config alone), `redis_users`
(the nodes' ACL user on their region's Redis), the agents' `AGENT_PORT` and heartbeat key prefix and TTL,
`pool_budget` (a pool's capacity and cost figures), `token_cost` (what a token it serves costs), `declare`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.control_plane import ControlPlaneOutputs, GatewayBackend, RedisUser
from components.core.config import SecretSpec, StackSecrets
from components.core.context import StackContext
from components.data_tier import DataTierOutputs
from components.gpu_pools.budget import pool_budget, stack_budget
from components.gpu_pools.config import NODE_REDIS_PASSWORD, POOL_API_KEY, GpuPoolConfig, NodeImageConfig
from components.gpu_pools.node_image import NodeImage, NodeImageArgs
from components.gpu_pools.pool import GpuNodePool, GpuNodePoolArgs, GpuNodePoolOutputs
from components.gpu_pools.scaling import scaling_budget
from components.gpu_pools.timings import pool_timings
from components.gpu_pools.token_cost import TokenCost, token_cost
from components.model_store import ModelStoreOutputs
from components.network import NetworkOutputs
from fleet_agent import constants as agent_constants

__all__ = [
    "AGENT_PORT",
    "HEARTBEAT_KEY_PREFIX",
    "HEARTBEAT_TTL_S",
    "NODE_REDIS_PASSWORD",
    "POOL_API_KEY",
    "SECRETS",
    "GpuPoolConfig",
    "GpuPoolsOutputs",
    "NodeImageConfig",
    "TokenCost",
    "declare",
    "gateway_backends",
    "pool_budget",
    "redis_users",
    "token_cost",
]

SECRETS: list[SecretSpec] = [POOL_API_KEY, NODE_REDIS_PASSWORD]
# The nodes' ACL user on their region's Redis: it may write heartbeats and nothing else.
NODE_REDIS_USER = "fleet-node"
# What the agents listen on and publish (their own constants), for those who read them.
AGENT_PORT = agent_constants.DEFAULT_SERVING_PORT
HEARTBEAT_KEY_PREFIX = agent_constants.HEARTBEAT_KEY_PREFIX
HEARTBEAT_TTL_S = agent_constants.HEARTBEAT_TTL_S


def redis_users(pools: Sequence[GpuPoolConfig], secrets: StackSecrets) -> list[RedisUser]:
    """The nodes' Redis user in every region with pools: SET of their own records and ZADD to the
    region's index (fleet_agent.heartbeat), nothing else."""
    regions = frozenset(p.region for p in pools)
    if not regions:
        return []

    def access(region: str) -> str:
        prefix = f"{HEARTBEAT_KEY_PREFIX}:{region}"
        return f"on ~{prefix}:node:* ~{prefix}:nodes -@all +set +zadd"

    return [RedisUser("nodes", NODE_REDIS_USER, secrets.require(NODE_REDIS_PASSWORD.key), regions, access)]


def pool_hostname(pool: GpuPoolConfig, domain: str) -> str:
    """The pool's name for the gateway: an alias of its internal load balancer."""
    return f"{pool.name}.pools.{domain}"


def gateway_backends(pools: Sequence[GpuPoolConfig], domain: str) -> list[GatewayBackend]:
    """How the gateways reach the pools, and what a token from each costs, known from config before either
    is declared."""
    backends = []
    for pool in pools:
        cost = token_cost(pool)
        backends.append(
            GatewayBackend(
                name=pool.name,
                region=pool.region,
                model=pool.model,
                api_base=f"http://{pool_hostname(pool, domain)}/v1",
                input_cost_per_token=cost.input_usd_per_token if cost else None,
                output_cost_per_token=cost.output_usd_per_token if cost else None,
            )
        )
    return backends


@dataclass(frozen=True)
class GpuPoolsOutputs:
    pools: dict[str, GpuNodePoolOutputs] = field(default_factory=dict)
    image_arns: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    config: tuple[GpuPoolConfig, ...] = ()

    def exports(self) -> dict[str, Any]:
        return {
            "gpuPools": {
                name: {
                    "region": pool.region,
                    "endpoint": f"http://{pool.hostname}",
                    "autoScalingGroup": pool.group_name,
                    "loadBalancer": pool.load_balancer_dns_name,
                }
                for name, pool in self.pools.items()
            },
            "nodeImages": self.image_arns,
        }

    def budgets(self) -> dict[str, Any]:
        if not self.config:
            return {}
        timings = {name: pool.timings.figures() for name, pool in self.pools.items()}
        return {
            **stack_budget(self.config),
            "gpuScaling": scaling_budget(self.config),
            "gpuPoolTimings": timings,
        }


def declare(
    stack: StackContext,
    *,
    pools: Sequence[GpuPoolConfig],
    image: NodeImageConfig,
    domain: str,
    request_timeout_s: int,
    networks: NetworkOutputs,
    planes: ControlPlaneOutputs,
    data: DataTierOutputs,
    secrets: StackSecrets,
    store: ModelStoreOutputs,
    topic_arns: Mapping[str, pulumi.Input[str]],
) -> GpuPoolsOutputs:
    """The node image (`node-image`, built in the primary region) and a pool per config entry
    (`pool-<name>`), each in its region's network, reached from that region's gateway, its nodes mounting
    their model from the region's model store."""
    if not pools:
        return GpuPoolsOutputs()
    regions = list(networks.regions)
    build_region = regions[0]
    build_net = networks.regions[build_region]
    engines = sorted({pool.engine for pool in pools})
    node_image = NodeImage(
        "node-image",
        NodeImageArgs(
            config=image,
            stack=stack,
            region=build_net.region,
            subnet_id=build_net.private_subnet_ids.apply(lambda ids: ids[0]),
            vpc_id=build_net.vpc_id,
            engines=engines,
            distribution_regions=[r for r in regions if any(p.region == r for p in pools)],
            deletion_protection=stack.deletion_protection,
        ),
    ).outputs
    api_key = secrets.require(POOL_API_KEY.key)
    redis_password = secrets.require(NODE_REDIS_PASSWORD.key)
    zone_id = aws.route53.get_zone_output(
        name=domain, private_zone=False, opts=pulumi.InvokeOutputOptions(provider=build_net.region.provider)
    ).zone_id
    built: dict[str, GpuNodePoolOutputs] = {}
    for pool in pools:
        net, plane = networks.regions[pool.region], planes.regions[pool.region]
        built[pool.name] = GpuNodePool(
            f"pool-{pool.name}",
            GpuNodePoolArgs(
                pool=pool,
                stack=stack,
                region=net.region,
                vpc_id=net.vpc_id,
                private_subnet_ids=net.private_subnet_ids,
                ami_id=node_image.amis[pool.engine][pool.region],
                gateway_security_group_id=plane.gateway_security_group_id,
                redis_security_group_id=plane.redis_security_group_id,
                redis_host=plane.redis_endpoint,
                kms_key_arn=data.kms_key_arns[pool.region],
                api_key=api_key,
                redis_user=NODE_REDIS_USER,
                redis_password=redis_password,
                zone_id=zone_id,
                hostname=pool_hostname(pool, domain),
                request_timeout_s=request_timeout_s,
                deletion_protection=stack.deletion_protection,
                timings=pool_timings(
                    pool,
                    model_gib=store.config.model(pool.model).size_gib,
                    request_timeout_s=request_timeout_s,
                ),
                topic_arn=topic_arns[pool.region],
                mount=store.mount(pool.region, pool.model),
                store_access=store.access(pool.region),
            ),
        ).outputs
    return GpuPoolsOutputs(pools=built, image_arns=node_image.image_arns, config=tuple(pools))
