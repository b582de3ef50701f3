"""The stack's config: the root model composes the capabilities' sections under the stack-file keys.

Nothing but composition and the stack-wide facts (tier, regions, domain) lives here; each section and
its rules belong to the capability that uses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal

import pulumi
from pydantic import BeforeValidator, Field

from components import control_plane, controller, data_tier, gpu_pools, kubernetes, model_store
from components.alerts import AlertsConfig
from components.batch import BatchJobConfig
from components.control_plane import GatewayConfig, RedisConfig
from components.controller import ControllerConfig
from components.core.config import (
    PROJECT,
    Problem,
    RootSection,
    SecretSpec,
    Section,
    StackSecrets,
    StackView,
    TopKey,
    rule,
    stack_rule,
)
from components.core.fields import (
    AwsRegionName,
    DomainName,
    GcpProjectId,
    GcpRegionName,
    LogRetentionDays,
    Tags,
)
from components.core.loader import parse_config
from components.data_tier import DatabaseConfig
from components.failover import DnsConfig, FailoverConfig
from components.gpu_pools import GpuPoolConfig, NodeImageConfig
from components.kubernetes import KubernetesConfig
from components.model_store import ModelStoreConfig
from components.network import NetworkConfig
from components.observability import CostBudgetConfig, MonitoringConfig, SloConfig

SECRETS: list[SecretSpec] = [
    *control_plane.SECRETS,
    *data_tier.SECRETS,
    *gpu_pools.SECRETS,
    *model_store.SECRETS,
    *controller.SECRETS,
    *kubernetes.SECRETS,
]


def _empty_allowed(schema: dict[str, Any]) -> None:
    """Pulumi.yaml declares the key with default "", which means none: editors must accept it."""
    schema.setdefault("anyOf", []).append({"const": ""})


class ControlPlaneConfig(Section):
    """`controlPlane`: the gateway and its Redis, the database, the API record and its failover."""

    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    dns: DnsConfig = Field(default_factory=DnsConfig)
    failover: FailoverConfig = Field(default_factory=FailoverConfig)

    # It set every capability's log retention, not only the control plane's.
    moved_keys: ClassVar[dict[str, str]] = {"logRetentionDays": "logRetentionDays"}


class FleetConfig(RootSection):
    """Every `inference-fleet:*` key of a stack."""

    secret_keys: ClassVar[tuple[str, ...]] = tuple(s.key for s in SECRETS)

    tier: Literal["dev", "prod"] = Field(
        description="dev or prod: prod requires a standby region, per-zone NAT and prod-sized parts",
        examples=["prod"],
    )
    domain: DomainName = Field(
        description="DNS zone the API is served under (api.<domain>); at most 60 characters",
        examples=["fleet.example.com"],
    )
    primary_region: AwsRegionName = Field(
        default="us-east-1", description="AWS region of the active control plane"
    )
    # Pulumi.yaml declares this key with default "" (a declared key without default is required).
    standby_region: Annotated[AwsRegionName | None, BeforeValidator(lambda v: v or None)] = Field(
        default=None,
        description="AWS region of the passive control plane; empty for none; required in prod",
        examples=["us-west-2"],
        json_schema_extra=_empty_allowed,
    )
    # Pulumi.yaml declares it with default "": only stacks with batch jobs need one (a rule says so).
    gcp_project_id: Annotated[GcpProjectId | None, BeforeValidator(lambda v: v or None)] = Field(
        default=None,
        alias="gcpProject",
        description="GCP project of the batch side; required with batchJobs, usually set in ESC",
        json_schema_extra=_empty_allowed,
    )
    gcp_region: GcpRegionName = Field(default="us-central1", description="GCP region of the batch jobs")
    tags: Tags = Field(
        description="tags on every resource; must name owner and cost-center",
        examples=[{"owner": "ml-platform", "cost-center": "inference"}],
    )
    log_retention_days: LogRetentionDays = Field(
        default=30,
        description="CloudWatch retention of every log group the stack declares (gateway and ALB access "
        "logs, the functions' logs)",
    )
    network: NetworkConfig = Field(description="one VPC per control-plane region")
    gpu_pools: list[GpuPoolConfig] = Field(default_factory=list, description="GPU node pools")
    node_image: NodeImageConfig = Field(default_factory=NodeImageConfig)
    model_store: ModelStoreConfig = Field(default_factory=ModelStoreConfig)
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
    batch_jobs: list[BatchJobConfig] = Field(
        default_factory=list, description="Cloud Run GPU jobs fed by Cloud Tasks (GCP)"
    )
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    control_plane: ControlPlaneConfig = Field(default_factory=ControlPlaneConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    slo: SloConfig = Field(default_factory=SloConfig)
    cost_budget: CostBudgetConfig = Field(default_factory=CostBudgetConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)

    @property
    def gcp_project(self) -> str:
        """The GCP project of the batch side; empty where the stack has no batch jobs and names none."""
        return self.gcp_project_id or ""

    @property
    def control_plane_regions(self) -> list[str]:
        """Primary first, then the standby where there is one."""
        return [self.primary_region, *([self.standby_region] if self.standby_region else [])]

    @property
    def gpu_regions(self) -> list[str]:
        """The control-plane regions with GPU pools, in their order: each gets a model store."""
        return [r for r in self.control_plane_regions if any(p.region == r for p in self.gpu_pools)]

    @property
    def store_regions(self) -> list[str]:
        """The regions whose model store something mounts: GPU pools' and Kubernetes clusters'."""
        mounted = set(self.gpu_regions) | set(self.kubernetes.store_regions())
        return [r for r in self.control_plane_regions if r in mounted]


@rule(FleetConfig)
def _control_plane_regions(c: FleetConfig, view: StackView) -> Iterator[Problem]:
    if c.tier == "prod" and c.standby_region is None:
        yield "standbyRegion", "required in prod: the control plane runs active-passive across two regions"
    if c.standby_region is not None and c.standby_region == c.primary_region:
        yield (
            "standbyRegion",
            f"got {c.standby_region!r}, the same as primaryRegion; the standby must be another region",
        )


@stack_rule
def _gcp_project_where_used(view: StackView) -> Iterator[Problem]:
    if view.all(BatchJobConfig) and view.gcp_project is None:
        yield (
            TopKey("gcpProject"),
            "required with batchJobs (their GCP project) but not set; set it in the stack file "
            f"(config: {PROJECT}:gcpProject) or in an ESC environment the stack imports "
            f"(values.pulumiConfig: {PROJECT}:gcpProject)",
        )


def parse_stack_config(
    raw: Mapping[str, str], secret_keys: set[str], stack: str | None = None
) -> FleetConfig:
    """Validate config as the engine passes it (`project:key -> string`), or raise ConfigError; `stack`
    names the stack file in messages that say where a key goes."""
    return parse_config(FleetConfig, raw, secret_keys, SECRETS, stack)


def load_stack_config() -> tuple[FleetConfig, StackSecrets]:
    """This stack's config as the engine passed it, validated; and its secrets, read on demand."""
    raw = pulumi.runtime.get_config_env()
    secret_keys = set(pulumi.runtime.get_config_secret_keys_env())
    return parse_stack_config(raw, secret_keys, pulumi.get_stack()), StackSecrets(SECRETS)


__all__ = [
    "PROJECT",
    "SECRETS",
    "ControlPlaneConfig",
    "FleetConfig",
    "load_stack_config",
    "parse_stack_config",
]
