"""RegionPeering: a VPC peering between two control-plane regions, routed from their private subnets.

It carries one kind of traffic today: the standby region's gateway writing to the Aurora writer in the
other region through the global writer endpoint (security groups admit nothing else). The regions' CIDRs
are validated as distinct, which peering requires.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.network.network import RegionalNetworkOutputs


@dataclass(frozen=True)
class RegionPeeringArgs:
    requester: RegionalNetworkOutputs
    accepter: RegionalNetworkOutputs


class RegionPeering(pulumi.ComponentResource):
    """Requested from one region, accepted in the other; each side's private route tables reach the other."""

    peering_connection_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegionPeeringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "inference-fleet:network:RegionPeering",
            name,
            None,
            # Its type until it lined up with its package: the URNs in the stacks' state keep it.
            pulumi.ResourceOptions.merge(
                opts,
                pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="inference-fleet:peering:RegionPeering")]),
            ),
        )
        requester, accepter = args.requester, args.accepter
        connection = aws.ec2.VpcPeeringConnection(
            f"{name}-request",
            vpc_id=requester.vpc_id,
            peer_vpc_id=accepter.vpc_id,
            peer_region=accepter.region.region,
            tags={"Name": name},
            opts=requester.region.options(self),
        )
        accepted = aws.ec2.VpcPeeringConnectionAccepter(
            f"{name}-accept",
            vpc_peering_connection_id=connection.id,
            auto_accept=True,
            tags={"Name": name},
            opts=accepter.region.options(self),
        )
        for side, other in ((requester, accepter), (accepter, requester)):
            for i in range(len(side.private_cidrs)):
                aws.ec2.Route(
                    f"{name}-{side.region.region}-{i}",
                    route_table_id=side.private_route_table_ids.apply(lambda ids, i=i: ids[i]),
                    destination_cidr_block=other.cidr,
                    vpc_peering_connection_id=accepted.vpc_peering_connection_id,
                    opts=side.region.options(self),
                )
        self.peering_connection_id = connection.id
        self.register_outputs({"peeringConnectionId": self.peering_connection_id})
