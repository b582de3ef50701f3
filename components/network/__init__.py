"""The network capability: a VPC per control-plane region, and the peering between the two regions.

Published: `NetworkConfig`, `NetworkOutputs` (and its per-region `RegionalNetworkOutputs`), `declare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.core.context import StackContext
from components.network.config import NetworkConfig
from components.network.network import (
    RegionalNetwork,
    RegionalNetworkArgs,
    RegionalNetworkOutputs,
    subnet_plan,
)
from components.network.peering import RegionPeering, RegionPeeringArgs

__all__ = [
    "NetworkConfig",
    "NetworkOutputs",
    "RegionalNetwork",
    "RegionalNetworkArgs",
    "RegionalNetworkOutputs",
    "declare",
    "subnet_plan",
]


@dataclass(frozen=True)
class NetworkOutputs:
    """Every control-plane region's network, primary first."""

    regions: dict[str, RegionalNetworkOutputs]

    def remote_private_cidrs(self, region: str) -> list[str]:
        """The other regions' private subnets: where peers reach this region's services from."""
        return [cidr for other, net in self.regions.items() if other != region for cidr in net.private_cidrs]

    def exports(self) -> dict[str, Any]:
        return {
            "networks": {
                region: {
                    "vpcId": net.vpc_id,
                    "privateSubnetIds": net.private_subnet_ids,
                    "zones": net.availability_zones,
                }
                for region, net in self.regions.items()
            }
        }

    def budgets(self) -> dict[str, Any]:
        return {}


def declare(stack: StackContext, *, config: NetworkConfig, regions: list[str]) -> NetworkOutputs:
    """A network per region (`network-<region>`), and a peering between the first two."""
    networks = {
        region: RegionalNetwork(
            f"network-{region}",
            RegionalNetworkArgs(
                region=stack.region(region),
                cidr=config.cidrs[region],
                availability_zones=config.availability_zones,
                nat_per_az=config.nat_per_az(stack.tier),
                flow_log_retention_days=config.flow_log_retention_days,
            ),
        ).outputs
        for region in regions
    }
    if len(regions) == 2:
        primary, standby = regions
        RegionPeering(
            f"peering-{primary}-{standby}",
            RegionPeeringArgs(requester=networks[primary], accepter=networks[standby]),
        )
    return NetworkOutputs(networks)
