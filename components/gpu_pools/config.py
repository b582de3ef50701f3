"""The `gpuPools` section: GPU node pools, checked against what each region offers and the tier allows.

Validated now; the node-pool component lands with the GPU pools capability.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from pydantic import AfterValidator, Field

from components.core.catalog.aws import AWS_REGIONS, GPU_INSTANCE_TYPES, TIER_MAX_GPUS, TIER_MAX_POOL_NODES
from components.core.config import Problem, Section, StackView, TopKey, one_of, rule, stack_rule
from components.core.fields import AwsRegionName, Slug


def _gpu_instance_type(value: str) -> str:
    if value not in GPU_INSTANCE_TYPES:
        raise ValueError(f"got {value!r}; allowed: {one_of(GPU_INSTANCE_TYPES)}")
    return value


GpuInstanceTypeName = Annotated[str, AfterValidator(_gpu_instance_type)]


class GpuPoolConfig(Section):
    list_key = "name"

    name: Slug
    region: AwsRegionName
    instance_types: list[GpuInstanceTypeName] = Field(min_length=1, max_length=20)
    min_size: int = Field(default=0, ge=0, le=1000)
    max_size: int = Field(ge=1, le=1000)
    on_demand_base: int = Field(default=0, ge=0, le=1000)

    @property
    def gpus_at_max(self) -> int:
        """GPUs the pool runs at its max size, counting the largest type it may launch."""
        return self.max_size * max(GPU_INSTANCE_TYPES[t].gpus for t in self.instance_types)


@rule(GpuPoolConfig)
def _pool_fits(pool: GpuPoolConfig, view: StackView) -> Iterator[Problem]:
    regions = view.control_plane_regions
    if pool.region not in regions:
        yield "region", f"got {pool.region!r}; pools run in control-plane regions: {one_of(regions)}"
    region = AWS_REGIONS[pool.region]
    for j, instance_type in enumerate(pool.instance_types):
        if not region.offers(instance_type):
            offered = [t for t in GPU_INSTANCE_TYPES if region.offers(t)]
            yield (
                f"instanceTypes[{j}]",
                f"{instance_type} is not offered in {pool.region}; offered there: {one_of(offered)}",
            )
    if pool.min_size > pool.max_size:
        yield "minSize", f"got {pool.min_size}; at most maxSize ({pool.max_size})"
    if pool.on_demand_base > pool.max_size:
        yield "onDemandBase", f"got {pool.on_demand_base}; at most maxSize ({pool.max_size})"
    cap = TIER_MAX_POOL_NODES.get(view.tier)
    if cap is not None and pool.max_size > cap:
        yield "maxSize", f"got {pool.max_size}; a {view.tier} pool runs at most {cap} nodes"


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
