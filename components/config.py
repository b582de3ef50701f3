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
    AWS_REGIONS,
    CLOUD_RUN_GPUS,
    GCP_REGIONS,
    GPU_INSTANCE_TYPES,
    LOG_RETENTION_DAYS,
)

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


# Secrets never enter the model: they are read with the secret getters so they stay secret in state.
# Each must arrive marked secret (ESC `fn::secret`, or `pulumi config set --secret`).
SECRET_KEYS: dict[str, str] = {
    "gatewayMasterKey": "LiteLLM master key for the gateway",
    "providerApiKeys": "object of serverless fallback provider name -> API key",
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
