"""RegionalNetwork as the program declares it: one VPC per control-plane region, wired for zone failures."""

from __future__ import annotations

import ipaddress
import json

import pytest

from components.core.catalog.resource_types import (
    AWS_PROVIDER,
    DEFAULT_SECURITY_GROUP,
    FLOW_LOG,
    IAM_ROLE,
    IAM_ROLE_POLICY,
    INTERNET_GATEWAY,
    LOG_GROUP,
    NAT_GATEWAY,
    ROUTE,
    ROUTE_TABLE_ASSOCIATION,
    SUBNET,
    VPC,
    VPC_ENDPOINT,
)
from components.network import subnet_plan
from fleet.harness import RecordedResource, Rendering

NETWORK = "inference-fleet:network:RegionalNetwork"


def in_network(rendering: Rendering, region: str, resource_type: str) -> list[RecordedResource]:
    component = rendering.one(NETWORK, f"network-{region}")
    return [r for r in rendering.descendants(component) if r.type == resource_type]


def test_prod_builds_a_network_per_region_under_its_own_provider(render):
    prod = render("prod")
    vpcs = {vpc.name: vpc for vpc in prod.of_type(VPC)}
    assert set(vpcs) == {"network-us-east-1-vpc", "network-us-west-2-vpc"}
    assert vpcs["network-us-east-1-vpc"].inputs["cidrBlock"] == "10.10.0.0/16"
    assert vpcs["network-us-west-2-vpc"].inputs["cidrBlock"] == "10.20.0.0/16"

    providers = {vpc.provider for vpc in vpcs.values()}
    assert len(providers) == 2
    for region in ("us-east-1", "us-west-2"):
        provider = prod.one(AWS_PROVIDER, f"aws-{region}")
        assert provider.inputs["region"] == region
        assert all(
            r.provider == provider.urn for r in prod.descendants(prod.one(NETWORK, f"network-{region}"))
        )


def test_dev_builds_one_region(render):
    dev = render("dev")
    assert [n.name for n in dev.of_type(NETWORK)] == ["network-us-east-1"]
    assert len(dev.of_type(AWS_PROVIDER)) == 1


def test_every_cloud_resource_names_an_explicit_provider(render):
    for stack in ("dev", "prod"):
        rendering = render(stack)
        for r in rendering.resources:
            if r.custom and not r.type.startswith("pulumi:providers:"):
                assert r.provider, f"{r.type} {r.name} uses a default provider"


def test_provider_default_tags_carry_the_stack_tags(render):
    provider = render("prod").one(AWS_PROVIDER, "aws-us-east-1")
    tags = json.loads(provider.inputs["defaultTags"])["tags"]
    assert tags == {
        "owner": "ml-platform",
        "cost-center": "inference",
        "project": "inference-fleet",
        "stack": "prod",
        "tier": "prod",
        "managed-by": "pulumi",
    }


def test_children_are_parented_to_their_network_and_named_after_it(render):
    prod = render("prod")
    for component in prod.of_type(NETWORK):
        children = prod.children(component)
        assert len(children) >= 30
        assert all(child.name.startswith(f"{component.name}-") for child in children)
        assert prod.top_component(children[0]) == component


@pytest.mark.parametrize("region", ["us-east-1", "us-west-2"])
def test_subnets_span_three_zones_inside_the_vpc(render, region):
    prod = render("prod")
    vpc = in_network(prod, region, VPC)[0]
    subnets = in_network(prod, region, SUBNET)
    public = [s for s in subnets if s.inputs["tags"]["subnet-tier"] == "public"]
    private = [s for s in subnets if s.inputs["tags"]["subnet-tier"] == "private"]
    assert len(public) == len(private) == 3
    assert {s.inputs["availabilityZone"] for s in public} == {f"{region}{z}" for z in "abc"}
    assert {s.inputs["availabilityZone"] for s in private} == {f"{region}{z}" for z in "abc"}
    assert all(s.inputs["vpcId"] == vpc.id for s in subnets)
    assert not any(s.inputs.get("mapPublicIpOnLaunch") for s in public)

    cidr = ipaddress.IPv4Network(vpc.inputs["cidrBlock"])
    nets = [ipaddress.IPv4Network(s.inputs["cidrBlock"]) for s in subnets]
    assert all(n.subnet_of(cidr) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])


def default_route_target(rendering: Rendering, subnet: RecordedResource) -> RecordedResource:
    """Follow subnet -> association -> route table -> 0.0.0.0/0 route -> its target."""
    association = next(
        a for a in rendering.of_type(ROUTE_TABLE_ASSOCIATION) if a.inputs["subnetId"] == subnet.id
    )
    route = next(
        r
        for r in rendering.of_type(ROUTE)
        if r.inputs["routeTableId"] == association.inputs["routeTableId"]
        and r.inputs["destinationCidrBlock"] == "0.0.0.0/0"
    )
    return rendering.by_id(route.inputs.get("natGatewayId") or route.inputs["gatewayId"])


def test_prod_private_subnets_leave_through_the_nat_in_their_own_zone(render):
    prod = render("prod")
    region = "us-east-1"
    nats = in_network(prod, region, NAT_GATEWAY)
    assert len(nats) == 3
    for subnet in in_network(prod, region, SUBNET):
        target = default_route_target(prod, subnet)
        if subnet.inputs["tags"]["subnet-tier"] == "public":
            assert target.type == INTERNET_GATEWAY
            continue
        assert target.type == NAT_GATEWAY
        nat_subnet = prod.by_id(target.inputs["subnetId"])
        assert nat_subnet.inputs["tags"]["subnet-tier"] == "public"
        assert nat_subnet.inputs["availabilityZone"] == subnet.inputs["availabilityZone"]


def test_dev_shares_one_nat(render):
    dev = render("dev")
    (nat,) = in_network(dev, "us-east-1", NAT_GATEWAY)
    private = [
        s for s in in_network(dev, "us-east-1", SUBNET) if s.inputs["tags"]["subnet-tier"] == "private"
    ]
    assert {default_route_target(dev, s).urn for s in private} == {nat.urn}


def test_s3_gateway_endpoint_serves_the_private_route_tables(render):
    prod = render("prod")
    (endpoint,) = in_network(prod, "us-west-2", VPC_ENDPOINT)
    assert endpoint.inputs["serviceName"] == "com.amazonaws.us-west-2.s3"
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    private_tables = {
        a.inputs["routeTableId"]
        for a in in_network(prod, "us-west-2", ROUTE_TABLE_ASSOCIATION)
        if prod.by_id(a.inputs["subnetId"]).inputs["tags"]["subnet-tier"] == "private"
    }
    assert set(endpoint.inputs["routeTableIds"]) == private_tables
    assert len(private_tables) == 3


def test_flow_logs_reach_a_log_group_through_a_scoped_role(render):
    prod = render("prod")
    (flow_log,) = in_network(prod, "us-east-1", FLOW_LOG)
    (group,) = in_network(prod, "us-east-1", LOG_GROUP)
    (role,) = in_network(prod, "us-east-1", IAM_ROLE)
    (policy,) = in_network(prod, "us-east-1", IAM_ROLE_POLICY)
    vpc = in_network(prod, "us-east-1", VPC)[0]

    assert flow_log.inputs["vpcId"] == vpc.id
    assert flow_log.inputs["trafficType"] == "ALL"
    assert group.inputs["retentionInDays"] == 365
    assert flow_log.inputs["logDestination"] == group.outputs["arn"]
    assert flow_log.inputs["iamRoleArn"] == role.outputs["arn"]

    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    statement = json.loads(policy.inputs["policy"])["Statement"][0]
    assert statement["Resource"] == [group.outputs["arn"], group.outputs["arn"] + ":*"]
    assert "*" not in statement["Action"]


def test_default_security_group_is_emptied(render):
    (group,) = in_network(render("prod"), "us-east-1", DEFAULT_SECURITY_GROUP)
    assert not group.inputs.get("ingress") and not group.inputs.get("egress")


@pytest.mark.parametrize(("cidr", "zones"), [("10.10.0.0/16", 3), ("10.10.0.0/16", 6), ("172.16.32.0/20", 6)])
def test_subnet_plan_fits_every_zone_without_overlap(cidr, zones):
    private, public = subnet_plan(cidr, zones)
    nets = [ipaddress.IPv4Network(n) for n in private + public]
    assert len(private) == len(public) == zones
    assert all(n.subnet_of(ipaddress.IPv4Network(cidr)) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert all(
        ipaddress.IPv4Network(p).num_addresses > ipaddress.IPv4Network(q).num_addresses
        for p, q in zip(private, public, strict=True)
    )
