"""The `network` section: one VPC per control-plane region."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from components.core.catalog.aws import AWS_REGIONS
from components.core.config import Problem, Section, StackView, one_of, rule
from components.core.fields import AwsRegionName, LogRetentionDays, VpcCidr


class NetworkConfig(Section):
    cidrs: dict[AwsRegionName, VpcCidr] = Field(
        description="VPC CIDR per AWS region, e.g. {us-east-1: 10.10.0.0/16}"
    )
    availability_zones: int = Field(default=3, ge=3, le=6, description="Zones per region (3-6)")
    nat_gateways: Literal["per-az", "single"] | None = Field(
        default=None, description="per-az (default in prod) or single (default in dev)"
    )
    flow_log_retention_days: LogRetentionDays = Field(default=90, description="VPC flow log retention")

    def nat_per_az(self, tier: str) -> bool:
        mode = self.nat_gateways or ("per-az" if tier == "prod" else "single")
        return mode == "per-az"


@rule(NetworkConfig)
def _covers_the_regions(net: NetworkConfig, view: StackView) -> Iterator[Problem]:
    regions = view.control_plane_regions
    for region in regions:
        if region not in net.cidrs:
            yield f"cidrs.{region}", f"not set; region {region} runs a control plane and needs a VPC CIDR"
    for region in net.cidrs:
        if region not in regions:
            yield f"cidrs.{region}", f"region {region} is not a control-plane region; used: {one_of(regions)}"
    nets = [(r, ipaddress.IPv4Network(cidr)) for r, cidr in net.cidrs.items()]
    for i, (region, block) in enumerate(nets):
        for other, other_block in nets[:i]:
            if block.overlaps(other_block):
                yield (
                    f"cidrs.{region}",
                    f"got {str(block)!r}, which overlaps {other}'s {str(other_block)!r}; "
                    "regions need distinct ranges",
                )


@rule(NetworkConfig)
def _zones_exist(net: NetworkConfig, view: StackView) -> Iterator[Problem]:
    for region in view.control_plane_regions:
        offered = AWS_REGIONS[region].availability_zones
        if net.availability_zones > offered:
            yield "availabilityZones", f"got {net.availability_zones}; {region} offers {offered} zones"


@rule(NetworkConfig)
def _prod_nat_per_zone(net: NetworkConfig, view: StackView) -> Iterator[Problem]:
    if view.tier == "prod" and net.nat_gateways == "single":
        yield "natGateways", "got 'single'; prod needs per-az so one zone's outage leaves egress up"
