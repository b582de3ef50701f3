"""The `gpuPools` and `nodeImage` sections: GPU node pools checked against what each region offers, what
the tier allows and what Auto Scaling accepts, and the pre-baked image they boot.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from components.control_plane import GatewayConfig
from components.core.catalog.aws import (
    AWS_REGIONS,
    GPU_INSTANCE_TYPES,
    TIER_MAX_GPUS,
    TIER_MAX_POOL_NODES,
    TIER_MAX_SPOT_SHARE,
)
from components.core.config import (
    Problem,
    SecretSpec,
    Section,
    StackShape,
    StackView,
    TopKey,
    one_of,
    rule,
    stack_rule,
)
from components.core.fields import AwsRegionName, Slug, elasticache_password, listed
from components.core.node_image import EngineModelId, EngineName
from components.kubernetes import ServedModelConfig
from components.model_store import ModelStoreConfig

# A pool's load balancer and target group are auto-named `pool-<name>-lb-<7 hex>`: the API's 32
# characters leave 16 for the pool's name.
MAX_POOL_NAME_LENGTH = 16
# Engine flags the node's agent sets itself (from the pool's model, the node's GPUs and its own port).
AGENT_OWNED_ENGINE_FLAGS = ("--host", "--port", "--served-model-name", "--tensor-parallel-size")
# vLLM's cap on requests it runs at once: the node's agent sets it from `scaling.concurrency`.
CONCURRENCY_FLAG = "--max-num-seqs"
# Canonical's Ubuntu 24.04 image for the build region, pinned to a release serial: Image Builder resolves
# the public parameter when it bakes. 20260714 is a published noble serial (ubuntu-noble-24.04-amd64-
# server-20260714); move it deliberately, as a new serial rebuilds every node.
DEFAULT_PARENT_IMAGE = (
    "ssm:/aws/service/canonical/ubuntu/server/24.04/stable/20260714/amd64/hvm/ebs-gp3/ami-id"
)
_PINNED_PARENT = re.compile(
    r"^(ami-[0-9a-f]{8,17}"
    r"|ssm:/aws/service/canonical/ubuntu/server/24\.04/stable/\d{8}(\.\d+)?/amd64/hvm/ebs-gp3/ami-id"
    r"|arn:aws:imagebuilder:[a-z0-9-]+:aws:image/ubuntu-server-24-lts-x86/\d+\.\d+\.\d+)$"
)


def _gpu_instance_type(value: str) -> str:
    if value not in GPU_INSTANCE_TYPES:
        raise ValueError(f"got {value!r}; allowed: {one_of(GPU_INSTANCE_TYPES)}")
    return value


def _parent_image(value: str) -> str:
    if not _PINNED_PARENT.match(value):
        raise ValueError(
            f"got {value!r}; expected a pinned Ubuntu 24.04 amd64 parent: an AMI id in the primary region, "
            "Canonical's dated parameter ssm:/aws/service/canonical/ubuntu/server/24.04/stable/<serial>/"
            "amd64/hvm/ebs-gp3/ami-id, or an Image Builder image ARN with a full version (not 'current' "
            "or x.x.x: a moving parent rebuilds every node when it moves)"
        )
    return value


GpuInstanceTypeName = Annotated[str, AfterValidator(_gpu_instance_type), listed(GPU_INSTANCE_TYPES)]
ParentImage = Annotated[str, AfterValidator(_parent_image)]


class WarmPoolConfig(Section):
    """Pre-initialised nodes kept beside the group (model already on the node's disk), for fast scale-out."""

    min_size: int = Field(default=1, ge=0, le=1000)
    state: Literal["Stopped", "Running", "Hibernated"] = "Stopped"


# Requests a node runs at once when a pool does not set `scaling.concurrency`: vLLM's batch cap
# (--max-num-seqs; vLLM's own default, 256, is a throughput setting far past where an 8B model on one 24 GB
# GPU keeps a p95 under 2 s) and Ollama's OLLAMA_NUM_PARALLEL (the image's unit has always set 4).
DEFAULT_CONCURRENCY: dict[str, int] = {"vllm": 32, "ollama": 4}
# Target tracking's own scale-in acts after 15 one-minute datapoints below its target (AWS manages that
# alarm; 15 is what users observe, cloudandclear.uk, terraform-provider-aws#42553): a pool's idle period
# cannot hold its last node longer than that.
MAX_IDLE_MINUTES = 15


class PoolScalingConfig(Section):
    """How a pool follows its load (components/gpu_pools/scaling.py): target tracking on the requests at a
    node, faster steps on a queue, from and back to zero where `minSize` is 0."""

    concurrency: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="requests a node runs at once (vLLM --max-num-seqs, Ollama OLLAMA_NUM_PARALLEL); more "
        "wait in the engine's queue. Default: vllm 32, ollama 4",
    )
    target_utilization: int = Field(
        default=70, ge=10, le=100, description="percent of `concurrency` the requests at a node are kept at"
    )
    node_ready_seconds: int = Field(
        default=300,
        ge=30,
        le=3600,
        description="launch to serving (the nodes publish it as NodeReadySeconds): the instance warmup",
    )
    idle_minutes: int = Field(
        default=10,
        ge=1,
        le=MAX_IDLE_MINUTES,
        description="minSize 0 only: minutes without a request before the pool goes back to zero",
    )


class PoolThroughputConfig(Section):
    """`gpuPools[].throughput`: tokens a node sustains at its target load, which price the pool's tokens for
    the gateway's spend tracking (a token costs the node-seconds it takes). Measure them (the dashboards'
    tokens per second per pool) and set them; unset, planning defaults per engine and GPU apply
    (POOL_THROUGHPUT_DEFAULTS), and the plan says so."""

    input_tokens_per_second: float | None = Field(
        default=None, gt=0, le=10_000_000, description="prompt tokens per second a node processes"
    )
    output_tokens_per_second: float | None = Field(
        default=None, gt=0, le=1_000_000, description="generated tokens per second a node produces"
    )


# Planning defaults per GPU of a node, not measurements: vLLM batches many requests (continuous batching,
# prefill far faster than decode); Ollama runs a few at once (OLLAMA_NUM_PARALLEL). Prompt, generated.
POOL_THROUGHPUT_DEFAULTS: dict[str, tuple[float, float]] = {
    "vllm": (8000.0, 1500.0),
    "ollama": (1500.0, 150.0),
}


class GpuPoolConfig(Section):
    """A GPU node pool: an Auto Scaling group of one engine serving one model, behind its own internal
    load balancer, with an on-demand floor and spot above it."""

    list_key = "name"

    name: Slug
    region: AwsRegionName
    engine: EngineName
    model: EngineModelId = Field(
        description="what the engine serves: a Hugging Face id (vllm) or tag (ollama)"
    )
    instance_types: list[GpuInstanceTypeName] = Field(min_length=1, max_length=20)
    min_size: int = Field(default=0, ge=0, le=1000)
    max_size: int = Field(ge=1, le=1000)
    on_demand_base: int = Field(default=0, ge=0, le=1000, description="nodes always on-demand")
    spot_percentage: int = Field(
        default=100, ge=0, le=100, description="share of the nodes above the on-demand base that run on spot"
    )
    disk_gib: int = Field(default=200, ge=60, le=16384, description="encrypted gp3 root volume")
    engine_args: list[str] = Field(default_factory=list, max_length=40)
    warm_pool: WarmPoolConfig | None = None
    scaling: PoolScalingConfig = PoolScalingConfig()
    throughput: PoolThroughputConfig = Field(default_factory=PoolThroughputConfig)

    @classmethod
    def shape_defaults(cls, shape: StackShape) -> dict[str, Any]:
        return {"on_demand_base": 1} if shape.tier == "prod" else {}  # prod's rule: a floor under spot

    @property
    def gpus_per_node(self) -> int:
        """GPUs on each node (every type of a pool carries the same number; a rule checks it)."""
        return max(GPU_INSTANCE_TYPES[t].gpus for t in self.instance_types)

    @property
    def concurrency(self) -> int:
        """Requests a node runs at once: what its engine is started with and what its scaling targets."""
        return self.scaling.concurrency or DEFAULT_CONCURRENCY[self.engine]

    @property
    def target_load(self) -> float:
        """Requests at a node that target tracking keeps the pool's average at."""
        return round(self.concurrency * self.scaling.target_utilization / 100, 2)

    @property
    def gpus_at_max(self) -> int:
        """GPUs the pool runs at its max size, counting the largest type it may launch."""
        return self.max_size * self.gpus_per_node

    def on_demand_nodes(self, nodes: int) -> int:
        """On-demand nodes among `nodes`: the base, then the on-demand share above it, rounded up as Auto
        Scaling rounds (in favour of on-demand)."""
        base = min(nodes, self.on_demand_base)
        above = nodes - base
        return base + -(-above * (100 - self.spot_percentage) // 100)

    def spot_share_at_max(self) -> float:
        return (self.max_size - self.on_demand_nodes(self.max_size)) / self.max_size

    def tokens_per_second(self) -> tuple[float, float, bool]:
        """(prompt, generated) tokens per second of one node, and whether both were configured."""
        per_gpu_in, per_gpu_out = POOL_THROUGHPUT_DEFAULTS[self.engine]
        given = self.throughput
        return (
            given.input_tokens_per_second or per_gpu_in * self.gpus_per_node,
            given.output_tokens_per_second or per_gpu_out * self.gpus_per_node,
            given.input_tokens_per_second is not None and given.output_tokens_per_second is not None,
        )

    @property
    def uses_spot(self) -> bool:
        return self.spot_percentage > 0 and self.max_size > self.on_demand_base


class NodeImageConfig(Section):
    """`nodeImage`: the pre-baked GPU node image, built by EC2 Image Builder in the primary region from
    node_image/recipe and distributed to every region with pools."""

    parent_image: ParentImage = DEFAULT_PARENT_IMAGE
    root_volume_gib: int = Field(default=100, ge=60, le=2048, description="the image's root volume")
    # A GPU instance, so the image's test phase runs nvidia-smi against a real GPU.
    build_instance_type: GpuInstanceTypeName = "g6.xlarge"


@rule(GpuPoolConfig)
def _pool_fits(pool: GpuPoolConfig, view: StackView) -> Iterator[Problem]:
    regions = view.control_plane_regions
    if pool.region not in regions:
        yield "region", f"got {pool.region!r}; pools run in control-plane regions: {one_of(regions)}"
    if len(pool.name) > MAX_POOL_NAME_LENGTH:
        yield (
            "name",
            f"got {len(pool.name)} characters; at most {MAX_POOL_NAME_LENGTH}: it names the pool's load "
            "balancer and target group, which elbv2 caps at 32 characters with their suffixes",
        )
    region = AWS_REGIONS[pool.region]
    for j, instance_type in enumerate(pool.instance_types):
        if not region.offers(instance_type):
            offered = [t for t in GPU_INSTANCE_TYPES if region.offers(t)]
            yield (
                f"instanceTypes[{j}]",
                f"{instance_type} is not offered in {pool.region}; offered there: {one_of(offered)}",
            )
    gpus = {t: GPU_INSTANCE_TYPES[t].gpus for t in pool.instance_types}
    if len(set(gpus.values())) > 1:
        counts = ", ".join(f"{t}: {n}" for t, n in gpus.items())
        yield (
            "instanceTypes",
            f"mixes GPU counts ({counts}); every type of a pool carries the same number of GPUs (the engine "
            "is started with one tensor-parallel size)",
        )
    if pool.min_size > pool.max_size:
        yield "minSize", f"got {pool.min_size}; at most maxSize ({pool.max_size})"
    if pool.on_demand_base > pool.max_size:
        yield "onDemandBase", f"got {pool.on_demand_base}; at most maxSize ({pool.max_size})"
    cap = TIER_MAX_POOL_NODES.get(view.tier)
    if cap is not None and pool.max_size > cap:
        yield "maxSize", f"got {pool.max_size}; a {view.tier} pool runs at most {cap} nodes"
    if pool.engine_args and pool.engine != "vllm":
        yield (
            "engineArgs",
            f"set for {pool.engine}; only vllm takes engine arguments (Ollama runs as the node's unit)",
        )
    for j, arg in enumerate(pool.engine_args):
        flag = arg.split("=", 1)[0]
        if flag == CONCURRENCY_FLAG:
            yield (
                f"engineArgs[{j}]",
                f"got {flag!r}; set scaling.concurrency instead (the node's engine is started with it, and "
                "the pool's scaling target follows it)",
            )
        elif flag in AGENT_OWNED_ENGINE_FLAGS:
            yield (
                f"engineArgs[{j}]",
                f"got {flag!r}; the node's agent sets {one_of(AGENT_OWNED_ENGINE_FLAGS)}",
            )


@rule(GpuPoolConfig)
def _pool_capacity_mix(pool: GpuPoolConfig, view: StackView) -> Iterator[Problem]:
    """The on-demand floor, the spot share and the warm pool (after the sizes hold)."""
    cap = TIER_MAX_SPOT_SHARE.get(view.tier)
    share = pool.spot_share_at_max()
    if view.tier == "prod" and pool.uses_spot and pool.on_demand_base < 1:
        yield (
            "onDemandBase",
            f"got {pool.on_demand_base}; a prod pool on spot keeps at least 1 on-demand node, so a spot "
            "reclaim of every node cannot take its model offline",
        )
    elif cap is not None and share > cap:
        yield (
            "spotPercentage",
            f"got {pool.spot_percentage}, {share:.0%} of the nodes on spot at maxSize; a {view.tier} pool "
            f"runs at most {cap:.0%} (raise onDemandBase or lower spotPercentage)",
        )
    if pool.warm_pool is not None:
        if pool.uses_spot or len(pool.instance_types) > 1:
            yield (
                "warmPool",
                "set on a pool with spot or several instance types; Auto Scaling keeps warm pools only for "
                "groups of one on-demand type (PutWarmPool refuses a mixed instances policy or spot)",
            )
        elif pool.warm_pool.min_size + pool.max_size > 1000:
            yield "warmPool.minSize", f"got {pool.warm_pool.min_size}; with maxSize at most 1000 nodes"


@rule(GpuPoolConfig)
def _pool_scaling(pool: GpuPoolConfig, view: StackView) -> Iterator[Problem]:
    if "idle_minutes" in pool.scaling.model_fields_set and pool.min_size > 0:
        yield (
            "scaling.idleMinutes",
            f"set on a pool with minSize {pool.min_size}; a pool goes back to zero only from minSize 0",
        )


@rule(NodeImageConfig)
def _build_instance_offered(image: NodeImageConfig, view: StackView) -> Iterator[Problem]:
    region = AWS_REGIONS[view.primary_region]
    if not region.offers(image.build_instance_type):
        offered = [t for t in GPU_INSTANCE_TYPES if region.offers(t) and GPU_INSTANCE_TYPES[t].gpus == 1]
        yield (
            "buildInstanceType",
            f"{image.build_instance_type} is not offered in {view.primary_region}, where the image is built; "
            f"offered there: {one_of(offered)}",
        )


@stack_rule
def _gpus_within_the_tier_cap(view: StackView) -> Iterator[Problem]:
    pools = view.all(GpuPoolConfig)
    cap = TIER_MAX_GPUS.get(view.tier)
    total = sum(pool.gpus_at_max for _, pool in pools)
    if cap is not None and total > cap:
        parts = ", ".join(f"{pool.name}: {pool.gpus_at_max}" for _, pool in pools)
        yield (
            TopKey("gpuPools"),
            f"{total} GPUs at full scale ({parts}); a {view.tier} stack runs at most {cap}",
        )


@stack_rule
def _routes_name_declared_pools(view: StackView) -> Iterator[Problem]:
    pools = [pool.name for _, pool in view.all(GpuPoolConfig)]
    # A route's own backends: GPU pools, and models served on Kubernetes clusters (one name space).
    served = [model.name for _, model in view.all(ServedModelConfig)]
    for path, model in view.all(ServedModelConfig):
        if model.name in pools:
            yield TopKey(f"{path}.name"), f"got {model.name!r}, also a GPU pool's name; names are unique"
    for gateway_path, gateway in view.all(GatewayConfig):
        for i, route in enumerate(gateway.routes):
            for j, name in enumerate(route.pools):
                if name not in pools and name not in served:
                    known = f"declared gpuPools: {one_of(pools) or '(none)'}"
                    if served:
                        known += f"; Kubernetes models: {one_of(served)}"
                    yield TopKey(f"{gateway_path}.routes[{i}].pools[{j}]"), f"got {name!r}; {known}"


@stack_rule
def _pools_serve_stored_models(view: StackView) -> Iterator[Problem]:
    """A pool's weights come from the model store: its model must be one the store holds (the node checks
    the store's manifest of it before it serves)."""
    stored = view.section(ModelStoreConfig).names
    for path, pool in view.all(GpuPoolConfig):
        if pool.model not in stored:
            yield (
                TopKey(f"{path}.model"),
                f"got {pool.model!r}, which modelStore.models does not list; the store holds: "
                f"{one_of(stored) or '(none)'} (add it there, and load it with `fleet models sync`)",
            )


def _api_key(value: object) -> str | None:
    text = value if isinstance(value, str) else ""
    if len(text) < 24 or not text.isascii() or any(c.isspace() for c in text):
        return f"expected at least 24 ASCII characters without spaces; got {len(text)} characters"
    return None


NODE_REDIS_PASSWORD = SecretSpec(
    "nodeRedisPassword",
    "password of the pool nodes' own Redis user, for their heartbeats (openssl rand -hex 32)",
    check=elasticache_password("a user password"),
    needed=lambda view: bool(view.all(GpuPoolConfig)),
)
POOL_API_KEY = SecretSpec(
    "poolApiKey",
    "API key the gateway presents to the GPU pools' agents (openssl rand -hex 32)",
    check=_api_key,
    needed=lambda view: bool(view.all(GpuPoolConfig) or view.all(ServedModelConfig)),
)
