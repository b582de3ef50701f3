"""What one region's control plane is built from: its slice of the config, the stack's secrets the gateway
needs, and how it reaches the data tier. The edge, the gateway's Redis and the gateway service all read it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi

from components.control_plane.config import GatewayConfig, RedisConfig
from components.control_plane.gateway_config import GatewayBackend


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
    # The key the gateway presents to the fleet's own backends; None where the stack has none.
    pool_api_key: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class DatabaseAccess:
    """How the gateway reaches the data tier in its region."""

    # The global writer (wherever it is) and this region's own reader endpoint: reads and key lookups go
    # to the reader, so a region keeps checking keys while the writer's region is gone.
    endpoint: pulumi.Input[str]
    reader_endpoint: pulumi.Input[str]
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
    # The fleet's own backends (GPU pools, Kubernetes-served models) this region's gateway routes to first.
    backends: tuple[GatewayBackend, ...] = ()
    # Whether region health counts serving only through serverless endpoints as serving (Route53 then
    # keeps the region), or as failing (the API moves to a region whose own pools serve).
    serverless_only_healthy: bool = False

    @property
    def api_name(self) -> str:
        """The name clients use; served by whichever region DNS points at."""
        return f"api.{self.domain}"

    @property
    def regional_name(self) -> str:
        """This region's own name for the gateway: health checks and operators reach one region by it."""
        return f"{self.region}.api.{self.domain}"
