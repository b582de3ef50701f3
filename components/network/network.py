"""RegionalNetwork: the VPC every other component in an AWS region is built on."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.core.context import RegionContext
from components.core.iam import scoped_role


@dataclass(frozen=True)
class RegionalNetworkArgs:
    region: RegionContext
    cidr: str
    availability_zones: int
    nat_per_az: bool
    flow_log_retention_days: int


@dataclass(frozen=True)
class RegionalNetworkOutputs:
    """One region's network as the components built on it see it."""

    region: RegionContext
    cidr: str
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]
    private_route_table_ids: pulumi.Output[list[str]]
    availability_zones: pulumi.Output[list[str]]
    # The private subnets' CIDRs, known before anything is created (peers route and admit by them).
    private_cidrs: list[str]


def subnet_plan(cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Private and public subnet CIDRs, one each per zone.

    The VPC is cut into eight equal blocks: blocks 0-5 are the private subnets (workloads, where almost
    every address goes), block 7 is cut again into eight public subnets (load balancers and NAT only).
    That fits six zones from any /16 to /20, and leaves block 6 free for later needs.
    """
    vpc = ipaddress.IPv4Network(cidr)
    blocks = list(vpc.subnets(prefixlen_diff=3))
    public = list(blocks[7].subnets(prefixlen_diff=3))
    return [str(b) for b in blocks[:zones]], [str(b) for b in public[:zones]]


class RegionalNetwork(pulumi.ComponentResource):
    """A VPC across several zones: public and private subnets, NAT, an S3 gateway endpoint, flow logs.

    Every child goes through the region's provider.
    """

    outputs: RegionalNetworkOutputs

    def __init__(
        self, name: str, args: RegionalNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "inference-fleet:network:RegionalNetwork",
            name,
            None,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[args.region.provider])),
        )
        net = args
        child = pulumi.ResourceOptions(parent=self)

        zones = aws.get_availability_zones_output(
            state="available",
            # Local and Wavelength zones are opt-in and carry no GPU capacity; leave them out.
            filters=[
                aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])
            ],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        zone_names = [
            zones.names.apply(lambda names, i=i: sorted(names)[i]) for i in range(net.availability_zones)
        ]
        private_cidrs, public_cidrs = subnet_plan(net.cidr, net.availability_zones)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=net.cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        # The default security group allows all traffic between its members; empty it so nothing relies on it.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg", vpc_id=vpc.id, tags={"Name": f"{name}-default"}, opts=child
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{name}-igw"}, opts=child)

        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=vpc.id, tags={"Name": f"{name}-public"}, opts=child
        )
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )

        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        for i, zone in enumerate(zone_names):
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=public_cidrs[i],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-public-{i}", "kubernetes.io/role/elb": "1", "subnet-tier": "public"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=public.id, route_table_id=public_rt.id, opts=child
            )
            public_subnets.append(public)
            private_subnets.append(
                aws.ec2.Subnet(
                    f"{name}-private-{i}",
                    vpc_id=vpc.id,
                    cidr_block=private_cidrs[i],
                    availability_zone=zone,
                    tags={
                        "Name": f"{name}-private-{i}",
                        "kubernetes.io/role/internal-elb": "1",
                        "subnet-tier": "private",
                    },
                    opts=child,
                )
            )

        nat_gateways: list[aws.ec2.NatGateway] = []
        for i in range(net.availability_zones if net.nat_per_az else 1):
            eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags={"Name": f"{name}-nat-{i}"}, opts=child)
            nat_gateways.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=public_subnets[i].id,
                    tags={"Name": f"{name}-nat-{i}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
            )

        private_rts: list[aws.ec2.RouteTable] = []
        for i, subnet in enumerate(private_subnets):
            rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{i}", vpc_id=vpc.id, tags={"Name": f"{name}-private-{i}"}, opts=child
            )
            # Each zone leaves through its own NAT where there is one per zone, so a zone outage stays local.
            aws.ec2.Route(
                f"{name}-private-default-{i}",
                route_table_id=rt.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nat_gateways[i % len(nat_gateways)].id,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=rt.id, opts=child
            )
            private_rts.append(rt)

        # Model weights and artefacts come from S3: keep that traffic off the NAT gateways (cost, throughput).
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{net.region.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_rts],
            tags={"Name": f"{name}-s3"},
            opts=child,
        )

        self._flow_logs(name, net, vpc)

        self.outputs = RegionalNetworkOutputs(
            region=net.region,
            cidr=net.cidr,
            vpc_id=vpc.id,
            private_subnet_ids=pulumi.Output.all(*[s.id for s in private_subnets]),
            public_subnet_ids=pulumi.Output.all(*[s.id for s in public_subnets]),
            private_route_table_ids=pulumi.Output.all(*[rt.id for rt in private_rts]),
            availability_zones=pulumi.Output.all(*zone_names),
            private_cidrs=private_cidrs,
        )
        out = self.outputs
        self.register_outputs(
            {
                "vpcId": out.vpc_id,
                "cidr": out.cidr,
                "privateSubnetIds": out.private_subnet_ids,
                "publicSubnetIds": out.public_subnet_ids,
                "privateRouteTableIds": out.private_route_table_ids,
                "availabilityZones": out.availability_zones,
            }
        )

    def _flow_logs(self, name: str, net: RegionalNetworkArgs, vpc: aws.ec2.Vpc) -> None:
        child = pulumi.ResourceOptions(parent=self)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            retention_in_days=net.flow_log_retention_days,
            tags={"Name": f"{name}-flow-logs"},
            opts=child,
        )
        region = net.region.region
        role = scoped_role(
            f"{name}-flow-logs",
            "vpc-flow-logs.amazonaws.com",
            account,
            [
                {
                    "Effect": "Allow",
                    "Action": [
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogGroups",
                        "logs:DescribeLogStreams",
                    ],
                    "Resource": [group.arn, pulumi.Output.concat(group.arn, ":*")],
                }
            ],
            child,
            # Only this account's flow logs may assume the role (confused-deputy guard).
            source_arn_like=pulumi.Output.concat("arn:aws:ec2:", region, ":", account, ":vpc-flow-log/*"),
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags={"Name": f"{name}-flow-log"},
            opts=child,
        )
