"""The controller capability: in every region with GPU pools, the fleet controller that watches each node
through four signals (heartbeats, its own poll, target health, Auto Scaling / EC2), replaces dead nodes,
restarts silent agents once, keeps each model's fewest ready replicas, and reconciles orphans and ghosts.

Published: `ControllerConfig`, `SECRETS`, `ControllerOutputs`, `redis_users` (the controller's ACL user on
each region's Redis), `budget_for` (death-to-replacement from the periods), `declare`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.control_plane import ControlPlaneOutputs, RedisUser
from components.controller.budget import DetectionBudget, budget_for, detection_budget
from components.controller.config import CONTROLLER_REDIS_PASSWORD, ControllerConfig, pool_minimums
from components.controller.controller import (
    ControlledPool,
    FleetController,
    FleetControllerArgs,
    FleetControllerOutputs,
)
from components.core.config import SecretSpec, StackSecrets
from components.core.context import StackContext
from components.data_tier import DataTierOutputs
from components.gpu_pools import (
    AGENT_PORT,
    HEARTBEAT_KEY_PREFIX,
    HEARTBEAT_TTL_S,
    GpuPoolConfig,
    GpuPoolsOutputs,
)
from components.network import NetworkOutputs

__all__ = ["SECRETS", "ControllerConfig", "ControllerOutputs", "budget_for", "declare", "redis_users"]

SECRETS: list[SecretSpec] = [CONTROLLER_REDIS_PASSWORD]
REDIS_USER_NAME = "fleet-controller"


def redis_users(pools: Sequence[GpuPoolConfig], secrets: StackSecrets) -> list[RedisUser]:
    """The controller's Redis user in every region with pools: the region's heartbeats (read, and
    removed for ghosts), its own memory and tick claims; nothing of the gateway's."""
    regions = frozenset(p.region for p in pools)
    if not regions:
        return []

    def access(region: str) -> str:
        # EVAL: its memory written and its lock released only by the tick that holds the lock (the
        # script's own GET/SET/PEXPIRE/DEL are checked against these rules too).
        commands = "+get +mget +set +del +zrange +zrem +eval +pexpire"
        return f"on ~{HEARTBEAT_KEY_PREFIX}:{region}:* -@all {commands}"

    password = secrets.require(CONTROLLER_REDIS_PASSWORD.key)
    return [RedisUser("controller", REDIS_USER_NAME, password, regions, access)]


@dataclass(frozen=True)
class ControllerOutputs:
    controllers: dict[str, FleetControllerOutputs] = field(default_factory=dict)
    budget: DetectionBudget | None = None

    def exports(self) -> dict[str, Any]:
        if not self.controllers:
            return {}
        return {
            "fleetControllers": {
                region: {
                    "function": c.function_name,
                    "schedule": c.schedule,
                    "restartDocument": c.restart_document,
                    "role": c.role_arn,
                }
                for region, c in self.controllers.items()
            }
        }

    def budgets(self) -> dict[str, Any]:
        return {"fleetController": self.budget.figures()} if self.budget else {}


def min_ready(config: ControllerConfig, pools: tuple[GpuPoolConfig, ...], region: str) -> dict[str, int]:
    """Model -> the fewest ready nodes it keeps in `region`: configured, else its pools' minSize there."""
    defaults = {model: n for (r, model), n in pool_minimums(list(pools)).items() if r == region}
    chosen = {m: config.min_ready_replicas.get(m, n) for m, n in defaults.items()}
    return {m: n for m, n in chosen.items() if n > 0}


def declare(
    stack: StackContext,
    *,
    config: ControllerConfig,
    pools: GpuPoolsOutputs,
    networks: NetworkOutputs,
    planes: ControlPlaneOutputs,
    data: DataTierOutputs,
    topic_arns: Mapping[str, pulumi.Input[str]],
    log_retention_days: int,
    secrets: StackSecrets,
) -> ControllerOutputs:
    """A controller (`controller-<region>`) in every region with pools, watching that region's pools."""
    if not pools.pools:
        return ControllerOutputs()
    redis_password = secrets.require(CONTROLLER_REDIS_PASSWORD.key)
    built: dict[str, FleetControllerOutputs] = {}
    for region in sorted({p.region for p in pools.pools.values()}, key=list(networks.regions).index):
        net, plane = networks.regions[region], planes.regions[region]
        mine = [p for p in pools.pools.values() if p.region == region]
        built[region] = FleetController(
            f"controller-{region}",
            FleetControllerArgs(
                config=config,
                stack=stack,
                region=net.region,
                vpc_id=net.vpc_id,
                private_subnet_ids=net.private_subnet_ids,
                pools=[
                    ControlledPool(
                        name=p.name,
                        group_name=p.group_name,
                        model=p.model,
                        target_group_arn=p.target_group_arn,
                        node_security_group_id=p.node_security_group_id,
                        warm_limit_s=p.warm_limit_s,
                    )
                    for p in mine
                ],
                redis_host=plane.redis_endpoint,
                redis_security_group_id=plane.redis_security_group_id,
                redis_user=REDIS_USER_NAME,
                redis_password=redis_password,
                agent_port=AGENT_PORT,
                heartbeat_key_prefix=HEARTBEAT_KEY_PREFIX,
                kms_key_arn=data.kms_key_arns[region],
                topic_arn=topic_arns[region],
                min_ready=min_ready(config, pools.config, region),
                log_retention_days=log_retention_days,
            ),
        ).outputs
    return ControllerOutputs(built, detection_budget(config, HEARTBEAT_TTL_S))
