"""The control plane capability: per region, the public ALB, the LiteLLM gateway on Fargate and its Redis.

Published: `GatewayConfig`, `RedisConfig`, the gateway's `SECRETS`, `GatewayBackend` (how the gateway
reaches one of the fleet's own backends: a GPU pool or a Kubernetes-served model), `RedisUser` (a client of
the region's Redis besides the gateway, with an ACL user of its own), `ControlPlaneOutputs` (and its
per-region `RegionalControlPlaneOutputs`), `declare`, `GATEWAY_TIMINGS` (what the failover budgets read of
the gateway: its ALB's client keep-alive, its takeover alarm, its database watchdog), and `gateway_metrics`
(the gateway's CloudWatch namespace and metric names, for alarms and dashboards).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.control_plane import gateway_metrics
from components.control_plane.config import (
    GATEWAY_MASTER_KEY,
    GATEWAY_SALT_KEY,
    GHCR_CREDENTIALS,
    PROVIDER_API_KEYS,
    REDIS_AUTH_TOKEN,
    GatewayConfig,
    RedisConfig,
)
from components.control_plane.control_plane import (
    RegionalControlPlane,
    RegionalControlPlaneArgs,
    RegionalControlPlaneOutputs,
)
from components.control_plane.gateway_config import GatewayBackend
from components.control_plane.image_mirror import mirrored
from components.control_plane.redis_users import RedisUser
from components.control_plane.region import ControlPlaneRegion, DatabaseAccess, GatewaySecrets
from components.control_plane.timings import GATEWAY_TIMINGS, GatewayTimings
from components.core.config import SecretSpec, StackSecrets
from components.core.context import StackContext
from components.data_tier import GATEWAY_DATABASE_PASSWORD, DataTierOutputs
from components.network import NetworkOutputs

__all__ = [
    "GATEWAY_TIMINGS",
    "SECRETS",
    "ControlPlaneOutputs",
    "GatewayBackend",
    "GatewayConfig",
    "GatewayTimings",
    "RedisConfig",
    "RedisUser",
    "RegionalControlPlaneOutputs",
    "declare",
    "gateway_metrics",
]

SECRETS: list[SecretSpec] = [
    GATEWAY_MASTER_KEY,
    PROVIDER_API_KEYS,
    REDIS_AUTH_TOKEN,
    GATEWAY_SALT_KEY,
    GHCR_CREDENTIALS,
]


@dataclass(frozen=True)
class ControlPlaneOutputs:
    """Every region's control plane, primary first."""

    regions: dict[str, RegionalControlPlaneOutputs]

    def exports(self) -> dict[str, Any]:
        return {"gatewayUrls": {region: cp.gateway_url for region, cp in self.regions.items()}}

    def budgets(self) -> dict[str, Any]:
        return {}


def declare(
    stack: StackContext,
    *,
    domain: str,
    gateway: GatewayConfig,
    redis: RedisConfig,
    log_retention_days: int,
    networks: NetworkOutputs,
    data: DataTierOutputs,
    secrets: StackSecrets,
    topic_arns: Mapping[str, pulumi.Input[str]],
    backends: Sequence[GatewayBackend] = (),
    pool_api_key: pulumi.Output[str] | None = None,
    redis_users: Sequence[RedisUser] = (),
    serverless_only_healthy: bool = False,
) -> ControlPlaneOutputs:
    """A control plane per network region (`control-plane-<region>`); the first region is the primary.
    Each region's gateway routes to the `backends` of its own region first, and reads keys from the
    region's own database reader; its Redis takes `redis_users` besides the gateway. Its region health
    counts serving only through serverless endpoints as serving where `serverless_only_healthy`."""
    gateway_secrets = GatewaySecrets(
        master_key=secrets.require(GATEWAY_MASTER_KEY.key),
        provider_api_keys=secrets.require_object(PROVIDER_API_KEYS.key),
        database_password=secrets.require(GATEWAY_DATABASE_PASSWORD.key),
        redis_auth_token=secrets.require(REDIS_AUTH_TOKEN.key),
        pool_api_key=pool_api_key,
        salt_key=secrets.require(GATEWAY_SALT_KEY.key),
        registry_credentials=(
            secrets.require_object(GHCR_CREDENTIALS.key) if mirrored(gateway.image) else None
        ),
    )
    planes: dict[str, RegionalControlPlane] = {}
    primary: RegionalControlPlane | None = None
    for region, net in networks.regions.items():
        role = "primary" if primary is None else "standby"
        plane = RegionalControlPlane(
            f"control-plane-{region}",
            RegionalControlPlaneArgs(
                plane=ControlPlaneRegion(
                    region=region,
                    role=role,
                    domain=domain,
                    gateway=gateway,
                    min_tasks=gateway.min_tasks if role == "primary" else gateway.standby_min_tasks,
                    max_tasks=gateway.max_tasks if role == "primary" else gateway.standby_max_tasks,
                    primary_min_tasks=gateway.min_tasks,
                    redis=redis,
                    log_retention_days=log_retention_days,
                    deletion_protection=stack.deletion_protection,
                    backends=tuple(b for b in backends if b.region == region),
                    serverless_only_healthy=serverless_only_healthy,
                ),
                stack=stack,
                region=net.region,
                vpc_id=net.vpc_id,
                public_subnet_ids=net.public_subnet_ids,
                private_subnet_ids=net.private_subnet_ids,
                kms_key_arn=data.kms_key_arns[region],
                database=DatabaseAccess(
                    endpoint=data.writer_endpoint,
                    reader_endpoint=data.reader_endpoints[region],
                    port=data.port,
                    name=data.name,
                    username=data.gateway_username,
                    security_group_id=data.security_group_ids[region],
                    remote_cidrs=networks.remote_private_cidrs(region),
                ),
                secrets=gateway_secrets,
                topic_arn=topic_arns[region],
                # The primary writes the API name's ACM validation record; the others reuse it.
                shared_validation_fqdns=primary.shared_validation_fqdns if primary else None,
                redis_users=tuple(redis_users),
            ),
        )
        primary = primary or plane
        planes[region] = plane
    return ControlPlaneOutputs({region: plane.outputs for region, plane in planes.items()})
