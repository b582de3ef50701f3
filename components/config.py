"""The stack configuration: one model of every `inference-fleet:*` key, validated once, before any resource.

Values arrive the way the Pulumi engine hands them to a program (PULUMI_CONFIG: every value a string,
objects and lists as JSON). Field types are checked by pydantic; rules that span fields (regions, CIDRs,
GPU offerings) run after it, each naming the key it is about. Every problem becomes one line:
`<key path>: <what was given>; <what is allowed>`, raised as a ConfigError, which Pulumi prints without
a traceback.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pulumi
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from components.catalog import (
    AURORA_GLOBAL_INSTANCE_FAMILIES,
    AURORA_INSTANCE_CLASSES,
    AURORA_POSTGRES_MAJOR_VERSIONS,
    AWS_REGIONS,
    CLOUD_RUN_GPUS,
    DEFAULT_GATEWAY_IMAGE,
    ELASTICACHE_NODE_TYPES,
    FARGATE_CPU_MEMORY,
    GATEWAY_PROVIDERS,
    GATEWAY_ROUTING_STRATEGIES,
    GCP_REGIONS,
    GPU_INSTANCE_TYPES,
    LOG_RETENTION_DAYS,
    ROUTE53_CHECKER_REGIONS,
    ROUTE53_MIN_CHECKER_REGIONS,
)
from components.failover_budget import FailoverBudget, failover_budget

PROJECT = "inference-fleet"
REQUIRED_TAGS = ("owner", "cost-center")


class ConfigError(pulumi.RunError):
    """The stack configuration is invalid; each line names one key and what is wrong with it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _one_of(allowed: typing.Iterable[object]) -> str:
    return ", ".join(str(a) for a in allowed)


def _aws_region(value: str) -> str:
    if value not in AWS_REGIONS:
        raise ValueError(f"got {value!r}; allowed: {_one_of(sorted(AWS_REGIONS))}")
    return value


def _gcp_region(value: str) -> str:
    if value not in GCP_REGIONS:
        raise ValueError(
            f"got {value!r}; allowed (regions with Cloud Run GPUs): {_one_of(sorted(GCP_REGIONS))}"
        )
    return value


def _vpc_cidr(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value)
    except ValueError:
        raise ValueError(f"got {value!r}; expected an IPv4 network such as 10.10.0.0/16") from None
    if not 16 <= net.prefixlen <= 20:
        raise ValueError(
            f"got {value!r}; a VPC is /16 to /20 here (AWS allows /16 at most; six subnets need /20 at least)"
        )
    if not net.is_private:
        raise ValueError(f"got {value!r}; expected a private (RFC 1918) range such as 10.10.0.0/16")
    return str(net)


_DNS_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN_RE = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})+$")
_GCP_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")


def _domain(value: str) -> str:
    if not _DOMAIN_RE.match(value):
        raise ValueError(f"got {value!r}; expected a lower-case DNS name such as fleet.example.com")
    return value


def _gcp_project(value: str) -> str:
    if not _GCP_PROJECT_RE.match(value):
        raise ValueError(
            f"got {value!r}; a GCP project id is 6-30 lower-case letters, digits or hyphens, "
            "starting with a letter"
        )
    return value


def _slug(value: str) -> str:
    if not _SLUG_RE.match(value):
        raise ValueError(
            f"got {value!r}; expected 2-32 lower-case letters, digits or hyphens, starting with a letter"
        )
    return value


def _gpu_instance_type(value: str) -> str:
    if value not in GPU_INSTANCE_TYPES:
        raise ValueError(f"got {value!r}; allowed: {_one_of(GPU_INSTANCE_TYPES)}")
    return value


def _log_retention(value: int) -> int:
    if value not in LOG_RETENTION_DAYS:
        raise ValueError(f"got {value}; CloudWatch Logs allows: {_one_of(LOG_RETENTION_DAYS)}")
    return value


def _tags(value: dict[str, str]) -> dict[str, str]:
    for key, tag in value.items():
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
            raise ValueError(f"tag key {key!r}: 1-128 characters, not starting with 'aws:'")
        if len(tag) > 256:
            raise ValueError(f"tag {key!r}: value longer than 256 characters")
    missing = [t for t in REQUIRED_TAGS if t not in value]
    if missing:
        raise ValueError(
            f"missing required tag(s) {_one_of(missing)}; every stack names: {_one_of(REQUIRED_TAGS)}"
        )
    return value


def _in(allowed: typing.Sequence[str], what: str = "allowed") -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"got {value!r}; {what}: {_one_of(allowed)}")
        return value

    return check


# registry[:port]/path[:tag][@sha256:digest]; a tag alone passes here, the policy pack judges pinning.
_IMAGE_RE = re.compile(
    r"^(?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
_MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}[a-z0-9]$")
_PROVIDER_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")
_ENGINE_VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")


def _image(value: str) -> str:
    if not _IMAGE_RE.match(value):
        example = "ghcr.io/berriai/litellm-database@sha256:<digest>"
        raise ValueError(f"got {value!r}; expected an image reference such as {example}")
    return value


def _model_name(value: str) -> str:
    if not _MODEL_NAME_RE.match(value):
        raise ValueError(
            f"got {value!r}; expected 2-64 lower-case letters, digits, '.', '-' or '_' (a name clients send)"
        )
    return value


def _provider_model(value: str) -> str:
    if not _PROVIDER_MODEL_RE.match(value):
        raise ValueError(f"got {value!r}; expected the provider's model id, such as meta-llama/Llama-3.3-70B")
    return value


def _engine_version(value: str) -> str:
    m = _ENGINE_VERSION_RE.match(value)
    if m is None or int(m.group(1)) not in AURORA_POSTGRES_MAJOR_VERSIONS:
        majors = _one_of(AURORA_POSTGRES_MAJOR_VERSIONS)
        raise ValueError(
            f"got {value!r}; expected an Aurora PostgreSQL version <major>.<minor>, major {majors}"
        )
    return value


AwsRegionName = Annotated[str, AfterValidator(_aws_region)]
GcpRegionName = Annotated[str, AfterValidator(_gcp_region)]
VpcCidr = Annotated[str, AfterValidator(_vpc_cidr)]
DomainName = Annotated[str, AfterValidator(_domain)]
GcpProjectId = Annotated[str, AfterValidator(_gcp_project)]
Slug = Annotated[str, AfterValidator(_slug)]
GpuInstanceTypeName = Annotated[str, AfterValidator(_gpu_instance_type)]
LogRetentionDays = Annotated[int, AfterValidator(_log_retention)]
Tags = Annotated[dict[str, str], AfterValidator(_tags)]
CloudRunGpuName = Literal["nvidia-l4"]
ImageRef = Annotated[str, AfterValidator(_image)]
ModelName = Annotated[str, AfterValidator(_model_name)]
ProviderModelId = Annotated[str, AfterValidator(_provider_model)]
GatewayProvider = Annotated[str, AfterValidator(_in(GATEWAY_PROVIDERS))]
RoutingStrategy = Annotated[str, AfterValidator(_in(GATEWAY_ROUTING_STRATEGIES))]
CheckerRegion = Annotated[str, AfterValidator(_in(ROUTE53_CHECKER_REGIONS, "Route53 checks from"))]
ElastiCacheNodeType = Annotated[str, AfterValidator(_in(ELASTICACHE_NODE_TYPES))]
AuroraInstanceClass = Annotated[str, AfterValidator(_in(AURORA_INSTANCE_CLASSES))]
AuroraEngineVersion = Annotated[str, AfterValidator(_engine_version)]


class FleetModel(BaseModel):
    """Base of every config section: camelCase keys as in the stack files, unknown keys refused."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True)


class NetworkConfig(FleetModel):
    cidrs: dict[AwsRegionName, VpcCidr] = Field(
        description="VPC CIDR per AWS region, e.g. {us-east-1: 10.10.0.0/16}"
    )
    availability_zones: int = Field(default=3, ge=3, le=6, description="Zones per region (3-6)")
    nat_gateways: Literal["per-az", "single"] | None = Field(
        default=None, description="per-az (default in prod) or single (default in dev)"
    )
    flow_log_retention_days: LogRetentionDays = Field(default=90, description="VPC flow log retention")


class GpuPoolConfig(FleetModel):
    name: Slug
    region: AwsRegionName
    instance_types: list[GpuInstanceTypeName] = Field(min_length=1, max_length=20)
    min_size: int = Field(default=0, ge=0, le=1000)
    max_size: int = Field(ge=1, le=1000)
    on_demand_base: int = Field(default=0, ge=0, le=1000)


class BatchJobConfig(FleetModel):
    name: Slug
    gpu: CloudRunGpuName = "nvidia-l4"
    cpu: int = Field(default=4, ge=1)
    memory_gib: int = Field(default=16, ge=1)


class ServerlessEndpointConfig(FleetModel):
    """A provider-hosted model the gateway can send requests to, and what it costs."""

    name: ModelName
    provider: GatewayProvider
    model: ProviderModelId
    input_cost_per_million_tokens: float = Field(ge=0, le=1000)
    output_cost_per_million_tokens: float = Field(ge=0, le=1000)


class GatewayRouteConfig(FleetModel):
    """A model name clients ask for: the endpoints that serve it, then the fallbacks tried in order."""

    model: ModelName
    endpoints: list[ModelName] = Field(min_length=1, max_length=20)
    fallbacks: list[ModelName] = Field(default_factory=list, max_length=10)


class GatewayConfig(FleetModel):
    """The LiteLLM gateway: its image, task size and counts, and the routing it is rendered with."""

    image: ImageRef = DEFAULT_GATEWAY_IMAGE
    cpu: int = Field(default=512, description="Fargate CPU units: 256, 512, 1024, 2048, 4096, 8192, 16384")
    memory_mib: int = Field(default=1024, description="Fargate memory, paired with cpu")
    min_tasks: int = Field(default=1, ge=1, le=200)
    max_tasks: int = Field(default=2, ge=1, le=200)
    standby_min_tasks: int = Field(default=1, ge=1, le=200)
    standby_max_tasks: int = Field(default=2, ge=1, le=200)
    target_requests_per_task: int = Field(
        default=600, ge=10, le=100_000, description="ALB requests per task per minute autoscaling holds"
    )
    routing_strategy: RoutingStrategy = "simple-shuffle"
    num_retries: int = Field(default=2, ge=0, le=10)
    request_timeout_seconds: int = Field(default=600, ge=10, le=3600)
    allowed_fails: int = Field(default=3, ge=1, le=100)
    cooldown_seconds: int = Field(default=30, ge=1, le=3600)
    routes: list[GatewayRouteConfig] = Field(default_factory=list)
    serverless_endpoints: list[ServerlessEndpointConfig] = Field(default_factory=list)


class RedisConfig(FleetModel):
    node_type: ElastiCacheNodeType = "cache.t4g.micro"
    replicas: int = Field(
        default=0, ge=0, le=5, description="replica nodes besides the primary; >= 1 is Multi-AZ"
    )


class DatabaseConfig(FleetModel):
    instance_class: AuroraInstanceClass = "db.t4g.medium"
    instances: int = Field(default=1, ge=1, le=15, description="instances in the primary region's cluster")
    standby_instances: int = Field(default=1, ge=1, le=15, description="instances in the standby's cluster")
    engine_version: AuroraEngineVersion = "16.6"
    backup_retention_days: int = Field(default=1, ge=1, le=35)


class DnsConfig(FleetModel):
    """The API record: cname (its own TTL) or alias (free queries, but resolvers hold it the ALB's 60 s)."""

    record_type: Literal["cname", "alias"] = "cname"
    ttl_seconds: int = Field(default=15, ge=5, le=3600, description="TTL of a cname record")


class FailoverConfig(FleetModel):
    health_check_interval_seconds: Literal[10, 30] = 10
    failure_threshold: int = Field(default=3, ge=1, le=10)
    checker_regions: list[CheckerRegion] = Field(
        default_factory=lambda: ["us-east-1", "us-west-2", "eu-west-1"], max_length=8
    )
    rto_seconds: int = Field(default=60, ge=1, le=3600)
    promote_after_seconds: int = Field(
        default=60,
        ge=60,
        le=3600,
        description="the primary's health check failing this long promotes the standby DB",
    )


class ControlPlaneConfig(FleetModel):
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    dns: DnsConfig = Field(default_factory=DnsConfig)
    failover: FailoverConfig = Field(default_factory=FailoverConfig)
    log_retention_days: LogRetentionDays = Field(default=30, description="gateway logs and ALB access logs")


class FleetConfig(FleetModel):
    """Every `inference-fleet:*` key of a stack."""

    tier: Literal["dev", "prod"]
    domain: DomainName
    primary_region: AwsRegionName = "us-east-1"
    # Pulumi.yaml declares this key with default "" (a declared key without default is required).
    standby_region: Annotated[AwsRegionName | None, BeforeValidator(lambda v: v or None)] = None
    gcp_project: GcpProjectId
    gcp_region: GcpRegionName = "us-central1"
    tags: Tags
    network: NetworkConfig
    gpu_pools: list[GpuPoolConfig] = Field(default_factory=list)
    batch_jobs: list[BatchJobConfig] = Field(default_factory=list)
    control_plane: ControlPlaneConfig = Field(default_factory=ControlPlaneConfig)

    @property
    def control_plane_regions(self) -> list[str]:
        """Primary first, then the standby where there is one."""
        return [self.primary_region, *([self.standby_region] if self.standby_region else [])]

    @property
    def nat_per_az(self) -> bool:
        mode = self.network.nat_gateways or ("per-az" if self.tier == "prod" else "single")
        return mode == "per-az"

    def regional_networks(self) -> list[RegionNetwork]:
        return [
            RegionNetwork(
                region=region,
                cidr=self.network.cidrs[region],
                availability_zones=self.network.availability_zones,
                nat_per_az=self.nat_per_az,
                flow_log_retention_days=self.network.flow_log_retention_days,
            )
            for region in self.control_plane_regions
        ]

    @property
    def deletion_protection(self) -> bool:
        """prod keeps its database and load balancers from being deleted by a stray `pulumi destroy`."""
        return self.tier == "prod"

    @property
    def failover_budget(self) -> FailoverBudget | None:
        """Worst-case DNS failover of the failover pair; None without a standby (a plain record)."""
        if self.standby_region is None:
            return None
        cp = self.control_plane
        return failover_budget(
            cp.failover.health_check_interval_seconds,
            cp.failover.failure_threshold,
            cp.dns.record_type,
            cp.dns.ttl_seconds,
        )

    def regional_control_planes(self) -> list[RegionControlPlane]:
        cp = self.control_plane
        planes = []
        for region in self.control_plane_regions:
            primary = region == self.primary_region
            gateway = cp.gateway
            planes.append(
                RegionControlPlane(
                    region=region,
                    role="primary" if primary else "standby",
                    domain=self.domain,
                    gateway=gateway,
                    min_tasks=gateway.min_tasks if primary else gateway.standby_min_tasks,
                    max_tasks=gateway.max_tasks if primary else gateway.standby_max_tasks,
                    redis=cp.redis,
                    log_retention_days=cp.log_retention_days,
                    deletion_protection=self.deletion_protection,
                )
            )
        return planes

    def data_tier(self) -> DataTierSpec:
        return DataTierSpec(
            primary_region=self.primary_region,
            standby_region=self.standby_region,
            database=self.control_plane.database,
            deletion_protection=self.deletion_protection,
        )

    def tags_for(self, stack: str) -> dict[str, str]:
        """The configured tags plus the ones every resource carries for cost and ownership reports."""
        return {**self.tags, "project": PROJECT, "stack": stack, "tier": self.tier, "managed-by": "pulumi"}


@dataclass(frozen=True)
class RegionNetwork:
    """The slice of the config one regional network is built from."""

    region: str
    cidr: str
    availability_zones: int
    nat_per_az: bool
    flow_log_retention_days: int


@dataclass(frozen=True)
class RegionControlPlane:
    """The slice of the config one region's control plane is built from."""

    region: str
    role: Literal["primary", "standby"]
    domain: str
    gateway: GatewayConfig
    min_tasks: int
    max_tasks: int
    redis: RedisConfig
    log_retention_days: int
    deletion_protection: bool

    @property
    def api_name(self) -> str:
        """The name clients use; served by whichever region DNS points at."""
        return f"api.{self.domain}"

    @property
    def regional_name(self) -> str:
        """This region's own name for the gateway: health checks and operators reach one region by it."""
        return f"{self.region}.api.{self.domain}"


@dataclass(frozen=True)
class DataTierSpec:
    """The slice of the config the data tier is built from."""

    primary_region: str
    standby_region: str | None
    database: DatabaseConfig
    deletion_protection: bool

    @property
    def regions(self) -> list[str]:
        return [self.primary_region, *([self.standby_region] if self.standby_region else [])]


# Secrets never enter the model: they are read with the secret getters so they stay secret in state.
# Each must arrive marked secret (ESC `fn::secret`, or `pulumi config set --secret`).
SECRET_KEYS: dict[str, str] = {
    "gatewayMasterKey": "LiteLLM master key for the gateway",
    "providerApiKeys": "object of serverless fallback provider name -> API key",
    "databasePassword": 'master password of the Aurora cluster: 8-128 printable ASCII, no / " @ or space',
    "redisAuthToken": "auth token of the gateway's Redis: 16-128 printable ASCII, no / \" @ or space",
}


# --- reading and checking -------------------------------------------------------------------------


def load_stack_config() -> tuple[FleetConfig, FleetSecrets]:
    """Read this stack's config as the engine passed it, validated; raise ConfigError on any problem."""
    raw = pulumi.runtime.get_config_env()
    secret_keys = set(pulumi.runtime.get_config_secret_keys_env())
    config = parse_config(raw, secret_keys)
    return config, FleetSecrets(pulumi.Config(PROJECT))


def parse_config(raw: Mapping[str, str], secret_keys: set[str]) -> FleetConfig:
    """Validate `project:key -> string` config into a FleetConfig, or raise ConfigError."""
    prefix = f"{PROJECT}:"
    values: dict[str, Any] = {}
    problems: list[str] = []
    for full_key, text in raw.items():
        if not full_key.startswith(prefix):
            continue  # provider and engine settings (aws:, gcp:, pulumi:) are not ours to check
        key = full_key.removeprefix(prefix)
        if key in SECRET_KEYS:
            if full_key not in secret_keys:
                problems.append(
                    f"{full_key}: given in plain text; it is a secret ({SECRET_KEYS[key]}): set it with "
                    f"fn::secret in the stack's ESC environment or `pulumi config set --secret {key}`"
                )
            continue
        try:
            values[key] = _decode(key, text)
        except ValueError as e:
            problems.append(f"{full_key}: {e}")
    if problems:
        raise ConfigError(problems)
    try:
        config = FleetConfig.model_validate(values)
    except ValidationError as e:
        raise ConfigError([_describe(err) for err in e.errors()]) from None
    problems = [f"{prefix}{path}: {message}" for path, message in _cross_field_problems(config)]
    if problems:
        raise ConfigError(problems)
    return config


def _decode(key: str, text: str) -> Any:
    """Objects and lists come JSON-encoded; scalars stay strings for pydantic to coerce and check."""
    field = FleetConfig.model_fields.get(_to_snake(key))
    if field is None or not _is_structured(field.annotation):
        return text
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError):
        raise ValueError(f"got {text!r}; expected a YAML mapping or list") from None


def _to_snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _is_structured(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_structured(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_structured(a) for a in typing.get_args(annotation))
    return origin in (list, dict) or (isinstance(annotation, type) and issubclass(annotation, BaseModel))


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            path += f".{part}" if path else str(part)
    return f"{PROJECT}:{path}"


def _describe(err: ErrorDetails) -> str:
    loc = err["loc"]
    path = _key_path(loc)
    given = err.get("input")
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"{path}: required but not set"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"{path}: unknown key; {hint}allowed: {_one_of(allowed)}"
    if kind == "value_error":
        return f"{path}: {err['msg'].removeprefix('Value error, ')}"
    if kind == "literal_error":
        return f"{path}: got {given!r}; allowed: {ctx.get('expected')}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{path}: got {given!r}; {err['msg'].lower()}"
    if kind in ("too_short", "too_long"):
        return f"{path}: {err['msg'].lower()}"
    expected = {
        "int_parsing": "an integer",
        "int_type": "an integer",
        "int_from_float": "a whole number",
        "bool_parsing": "true or false",
        "bool_type": "true or false",
        "string_type": "a string",
        "dict_type": "a mapping of keys to values",
        "model_type": "a mapping of keys to values",
        "model_attributes_type": "a mapping of keys to values",
        "list_type": "a list",
    }.get(kind)
    if expected:
        return f"{path}: got {given!r}; expected {expected}"
    return f"{path}: got {given!r}; {err['msg']}"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The camelCase keys a section at `loc` accepts, for the 'did you mean' hint."""
    model: Any = FleetConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for name, f in model.model_fields.items() if to_camel(name) == part), None)
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    names = [to_camel(name) for name in model.model_fields]
    return names + list(SECRET_KEYS) if model is FleetConfig else names


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


CrossFieldRule = Callable[[FleetConfig], Iterator[tuple[str, str]]]
_RULES: list[CrossFieldRule] = []


def _rule(fn: CrossFieldRule) -> CrossFieldRule:
    _RULES.append(fn)
    return fn


def _cross_field_problems(config: FleetConfig) -> list[tuple[str, str]]:
    """Problems of the first rule that finds any: later rules assume the earlier ones hold."""
    for rule in _RULES:
        problems = list(rule(config))
        if problems:
            return problems
    return []


@_rule
def _control_plane_regions(c: FleetConfig) -> Iterator[tuple[str, str]]:
    if c.tier == "prod" and c.standby_region is None:
        yield "standbyRegion", "required in prod: the control plane runs active-passive across two regions"
    if c.standby_region is not None and c.standby_region == c.primary_region:
        yield (
            "standbyRegion",
            f"got {c.standby_region!r}, the same as primaryRegion; the standby must be another region",
        )


@_rule
def _network_covers_regions(c: FleetConfig) -> Iterator[tuple[str, str]]:
    used = set(c.control_plane_regions)
    for region in c.control_plane_regions:
        if region not in c.network.cidrs:
            yield (
                f"network.cidrs.{region}",
                f"not set; region {region} runs a control plane and needs a VPC CIDR",
            )
    for region in c.network.cidrs:
        if region not in used:
            yield (
                f"network.cidrs.{region}",
                f"region {region} is not a control-plane region; used: {_one_of(c.control_plane_regions)}",
            )
    nets = [(r, ipaddress.IPv4Network(cidr)) for r, cidr in c.network.cidrs.items()]
    for i, (region, net) in enumerate(nets):
        for other, other_net in nets[:i]:
            if net.overlaps(other_net):
                yield (
                    f"network.cidrs.{region}",
                    f"got {str(net)!r}, which overlaps {other}'s {str(other_net)!r}; "
                    "regions need distinct ranges",
                )


@_rule
def _zones_exist(c: FleetConfig) -> Iterator[tuple[str, str]]:
    for region in c.control_plane_regions:
        offered = AWS_REGIONS[region].availability_zones
        if c.network.availability_zones > offered:
            yield (
                "network.availabilityZones",
                f"got {c.network.availability_zones}; {region} offers {offered} zones",
            )


@_rule
def _prod_nat_per_zone(c: FleetConfig) -> Iterator[tuple[str, str]]:
    if c.tier == "prod" and c.network.nat_gateways == "single":
        yield "network.natGateways", "got 'single'; prod needs per-az so one zone's outage leaves egress up"


@_rule
def _gpu_pools_fit(c: FleetConfig) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for i, pool in enumerate(c.gpu_pools):
        at = f"gpuPools[{i}]"
        if pool.name in seen:
            yield f"{at}.name", f"got {pool.name!r} twice; pool names are unique"
        seen.add(pool.name)
        if pool.region not in c.control_plane_regions:
            yield (
                f"{at}.region",
                f"got {pool.region!r}; pools run in control-plane regions: "
                f"{_one_of(c.control_plane_regions)}",
            )
        region = AWS_REGIONS[pool.region]
        for j, instance_type in enumerate(pool.instance_types):
            if not region.offers(instance_type):
                offered = [t for t in GPU_INSTANCE_TYPES if region.offers(t)]
                yield (
                    f"{at}.instanceTypes[{j}]",
                    f"{instance_type} is not offered in {pool.region}; offered there: {_one_of(offered)}",
                )
        if pool.min_size > pool.max_size:
            yield f"{at}.minSize", f"got {pool.min_size}; at most maxSize ({pool.max_size})"
        if pool.on_demand_base > pool.max_size:
            yield f"{at}.onDemandBase", f"got {pool.on_demand_base}; at most maxSize ({pool.max_size})"


@_rule
def _batch_jobs_fit(c: FleetConfig) -> Iterator[tuple[str, str]]:
    for i, job in enumerate(c.batch_jobs):
        at = f"batchJobs[{i}]"
        gpu = CLOUD_RUN_GPUS[job.gpu]
        if c.gcp_region not in gpu.regions:
            yield (
                f"{at}.gpu",
                f"{job.gpu} is not offered in {c.gcp_region}; offered in: {_one_of(sorted(gpu.regions))}",
            )
        if not gpu.min_cpu <= job.cpu <= gpu.max_cpu:
            yield (
                f"{at}.cpu",
                f"got {job.cpu}; a Cloud Run job with {job.gpu} takes {gpu.min_cpu}-{gpu.max_cpu} CPU",
            )
        if not gpu.min_memory_gib <= job.memory_gib <= gpu.max_memory_gib:
            yield (
                f"{at}.memoryGib",
                f"got {job.memory_gib}; a Cloud Run job with {job.gpu} takes "
                f"{gpu.min_memory_gib}-{gpu.max_memory_gib} GiB",
            )


@_rule
def _gateway_fits(c: FleetConfig) -> Iterator[tuple[str, str]]:
    gw = c.control_plane.gateway
    at = "controlPlane.gateway"
    if gw.cpu not in FARGATE_CPU_MEMORY:
        yield f"{at}.cpu", f"got {gw.cpu}; Fargate takes: {_one_of(FARGATE_CPU_MEMORY)}"
    elif gw.memory_mib not in FARGATE_CPU_MEMORY[gw.cpu]:
        memory = FARGATE_CPU_MEMORY[gw.cpu]
        yield (
            f"{at}.memoryMib",
            f"got {gw.memory_mib}; with cpu {gw.cpu} Fargate takes {memory[0]}-{memory[-1]} MiB "
            f"in steps of {memory[1] - memory[0]}",
        )
    if gw.min_tasks > gw.max_tasks:
        yield f"{at}.minTasks", f"got {gw.min_tasks}; at most maxTasks ({gw.max_tasks})"
    if gw.standby_min_tasks > gw.standby_max_tasks:
        yield (
            f"{at}.standbyMinTasks",
            f"got {gw.standby_min_tasks}; at most standbyMaxTasks ({gw.standby_max_tasks})",
        )
    if c.tier == "prod" and gw.min_tasks < 2:
        yield (
            f"{at}.minTasks",
            f"got {gw.min_tasks}; prod runs at least 2 so losing a zone leaves the gateway up",
        )
    if c.standby_region is None:
        for key in ("standby_min_tasks", "standby_max_tasks"):
            if key in gw.model_fields_set:
                yield (
                    f"{at}.{to_camel(key)}",
                    "set, but there is no standbyRegion to run a standby gateway in",
                )

    endpoints = {e.name: e for e in gw.serverless_endpoints}
    for i, endpoint in enumerate(gw.serverless_endpoints):
        if [e.name for e in gw.serverless_endpoints].index(endpoint.name) != i:
            yield (
                f"{at}.serverlessEndpoints[{i}].name",
                f"got {endpoint.name!r} twice; endpoint names are unique",
            )
    seen: set[str] = set()
    for i, route in enumerate(gw.routes):
        here = f"{at}.routes[{i}]"
        if route.model in seen:
            yield f"{here}.model", f"got {route.model!r} twice; each model has one route"
        seen.add(route.model)
        if route.model in endpoints:
            yield (
                f"{here}.model",
                f"got {route.model!r}, also a serverless endpoint's name; the two must differ",
            )
        for field, names in (("endpoints", route.endpoints), ("fallbacks", route.fallbacks)):
            for j, name in enumerate(names):
                if name not in endpoints:
                    known = _one_of(endpoints) or "(none declared)"
                    yield f"{here}.{field}[{j}]", f"got {name!r}; declared serverlessEndpoints: {known}"
                elif names.index(name) != j:
                    yield f"{here}.{field}[{j}]", f"got {name!r} twice"
        for j, name in enumerate(route.fallbacks):
            if name in route.endpoints:
                yield (
                    f"{here}.fallbacks[{j}]",
                    f"got {name!r}, which already serves the route; fall back elsewhere",
                )


@_rule
def _data_tier_fits(c: FleetConfig) -> Iterator[tuple[str, str]]:
    cp = c.control_plane
    db, redis = cp.database, cp.redis
    if c.tier == "prod":
        if redis.replicas < 1:
            yield (
                "controlPlane.redis.replicas",
                f"got {redis.replicas}; prod keeps at least 1 replica in another zone (Multi-AZ failover)",
            )
        if db.instances < 2:
            yield (
                "controlPlane.database.instances",
                f"got {db.instances}; prod runs a writer and at least 1 reader in another zone",
            )
        if db.backup_retention_days < 7:
            yield (
                "controlPlane.database.backupRetentionDays",
                f"got {db.backup_retention_days}; prod keeps 7-35",
            )
    if c.standby_region is not None:
        family = db.instance_class.rsplit(".", 1)[0]
        if family not in AURORA_GLOBAL_INSTANCE_FAMILIES:
            allowed = _one_of(
                c for c in AURORA_INSTANCE_CLASSES if c.rsplit(".", 1)[0] in AURORA_GLOBAL_INSTANCE_FAMILIES
            )
            yield (
                "controlPlane.database.instanceClass",
                f"got {db.instance_class!r}; a global database (two regions) takes memory-optimized classes: "
                f"{allowed}",
            )
    elif "standby_instances" in db.model_fields_set:
        yield (
            "controlPlane.database.standbyInstances",
            "set, but there is no standbyRegion to hold a secondary cluster",
        )


@_rule
def _failover_meets_rto(c: FleetConfig) -> Iterator[tuple[str, str]]:
    cp = c.control_plane
    fo = cp.failover
    budget = c.failover_budget
    if budget is None:
        if "failover" in cp.model_fields_set:
            yield (
                "controlPlane.failover",
                "set, but there is no standbyRegion to fail over to; one region serves a plain record",
            )
        return
    regions = fo.checker_regions
    if len(set(regions)) != len(regions):
        yield "controlPlane.failover.checkerRegions", f"got {regions}; each region once"
    elif len(regions) < ROUTE53_MIN_CHECKER_REGIONS:
        yield (
            "controlPlane.failover.checkerRegions",
            f"got {len(regions)} region(s); Route53 checks from at least {ROUTE53_MIN_CHECKER_REGIONS}",
        )
    if budget.worst_case_seconds > fo.rto_seconds:
        ttl_source = "an alias to an ALB is held" if cp.dns.record_type == "alias" else "the record's TTL"
        room = fo.rto_seconds - budget.detection_seconds
        if room <= 0:
            hint = "detection alone exceeds it: lower healthCheckIntervalSeconds or failureThreshold"
        elif cp.dns.record_type == "alias":
            hint = f"use dns.recordType cname with dns.ttlSeconds at most {room}"
        else:
            hint = f"lower dns.ttlSeconds to at most {room}, or detect faster"
        yield (
            "controlPlane.failover.rtoSeconds",
            f"got {fo.rto_seconds}, but failover can take {budget.worst_case_seconds} s "
            f"({fo.health_check_interval_seconds} s x {fo.failure_threshold} failed checks to detect "
            f"+ {budget.dns_ttl_seconds} s {ttl_source}); {hint}",
        )


class FleetSecrets:
    """The stack's secrets as secret Outputs, read only when a component needs one."""

    def __init__(self, config: pulumi.Config) -> None:
        self._config = config

    def require(self, key: str) -> pulumi.Output[str]:
        self._check(key)
        return self._config.require_secret(key)

    def require_object(self, key: str) -> pulumi.Output[Any]:
        self._check(key)
        return self._config.require_secret_object(key)

    def _check(self, key: str) -> None:
        if key not in SECRET_KEYS:
            raise KeyError(f"{key} is not a declared secret; declared: {_one_of(SECRET_KEYS)}")
        if self._config.get(key) is None:
            raise ConfigError(
                [f"{PROJECT}:{key}: required but not set ({SECRET_KEYS[key]}); set it with fn::secret in ESC"]
            )
