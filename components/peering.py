"""RegionPeering: a VPC peering between two control-plane regions, routed from their private subnets.

It carries one kind of traffic today: the standby region's gateway writing to the Aurora writer in the
other region through the global writer endpoint (security groups admit nothing else). The regions' CIDRs
are validated as distinct, which peering requires.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import RegionNetwork
from components.network import subnet_plan


@dataclass(frozen=True)
class PeeringSide:
    network: RegionNetwork
    provider: aws.Provider
    vpc_id: pulumi.Input[str]
    private_route_table_ids: pulumi.Output[list[str]]

    @property
    def private_cidrs(self) -> list[str]:
        return subnet_plan(self.network.cidr, self.network.availability_zones)[0]


@dataclass(frozen=True)
class RegionPeeringArgs:
    requester: PeeringSide
    accepter: PeeringSide


class RegionPeering(pulumi.ComponentResource):
    """Requested from one region, accepted in the other; each side's private route tables reach the other."""

    peering_connection_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegionPeeringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("inference-fleet:peering:RegionPeering", name, None, opts)
        requester, accepter = args.requester, args.accepter
        connection = aws.ec2.VpcPeeringConnection(
            f"{name}-request",
            vpc_id=requester.vpc_id,
            peer_vpc_id=accepter.vpc_id,
            peer_region=accepter.network.region,
            tags={"Name": name},
            opts=pulumi.ResourceOptions(parent=self, provider=requester.provider),
        )
        accepted = aws.ec2.VpcPeeringConnectionAccepter(
            f"{name}-accept",
            vpc_peering_connection_id=connection.id,
            auto_accept=True,
            tags={"Name": name},
            opts=pulumi.ResourceOptions(parent=self, provider=accepter.provider),
        )
        for side, other in ((requester, accepter), (accepter, requester)):
            for i in range(side.network.availability_zones):
                aws.ec2.Route(
                    f"{name}-{side.network.region}-{i}",
                    route_table_id=side.private_route_table_ids.apply(lambda ids, i=i: ids[i]),
                    destination_cidr_block=other.network.cidr,
                    vpc_peering_connection_id=accepted.vpc_peering_connection_id,
                    opts=pulumi.ResourceOptions(parent=self, provider=side.provider),
                )
        self.peering_connection_id = connection.id
        self.register_outputs({"peeringConnectionId": self.peering_connection_id})
