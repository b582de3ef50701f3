"""The cloud, as far as a render needs it: deterministic ids and plausible computed outputs.

Ids look like the cloud's own (vpc-…, subnet-…), ARNs carry the resource's region and a fixed account,
and the few functions the program calls (zones, caller identity) answer from the catalog, so the
program's stack outputs render as they would after `pulumi up`. A function the mocks do not know is an
error naming its token, never a silent empty answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pulumi

from components.catalog import AWS_REGIONS

ACCOUNT_ID = "123456789012"

_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg-",
    "aws:ec2/flowLog:FlowLog": "fl-",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt-",
    "aws:ec2/vpcPeeringConnection:VpcPeeringConnection": "pcx-",
    "aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter": "pcx-",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr-",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr-",
}

# Inputs that carry a resource's physical name where the input is not called `name`.
_NAME_INPUT = {
    "aws:rds/globalCluster:GlobalCluster": "globalClusterIdentifier",
    "aws:rds/cluster:Cluster": "clusterIdentifier",
    "aws:s3/bucket:Bucket": "bucket",
    "aws:elasticache/replicationGroup:ReplicationGroup": "replicationGroupId",
    "aws:ecs/taskDefinition:TaskDefinition": "family",
}
# Resources whose cloud id is their name (as the provider reports it).
_ID_IS_NAME = {
    "aws:rds/globalCluster:GlobalCluster",
    "aws:rds/cluster:Cluster",
    "aws:s3/bucket:Bucket",
    "aws:elasticache/replicationGroup:ReplicationGroup",
    "aws:iam/role:Role",
    "aws:lambda/function:Function",
    "aws:cloudwatch/metricAlarm:MetricAlarm",
    "aws:ssm/parameter:Parameter",
}

# Computed outputs beyond id/arn/name that components read, by resource type.
ExtraOutputs = Callable[["_Context"], dict[str, Any]]
EXTRA_OUTPUTS: dict[str, ExtraOutputs] = {}


def extra_outputs(resource_type: str) -> Callable[[ExtraOutputs], ExtraOutputs]:
    def register(fn: ExtraOutputs) -> ExtraOutputs:
        EXTRA_OUTPUTS[resource_type] = fn
        return fn

    return register


class _Context:
    def __init__(self, args: pulumi.runtime.MockResourceArgs, region: str, resource_id: str, physical: str):
        self.args = args
        self.inputs: dict[str, Any] = args.inputs
        self.region = region
        self.id = resource_id
        self.physical_name = physical


@extra_outputs("aws:ec2/eip:Eip")
def _eip(ctx: _Context) -> dict[str, Any]:
    octet = int(_digest(ctx.args.name)[:2], 16)
    return {"publicIp": f"203.0.113.{octet}", "allocationId": ctx.id}


@extra_outputs("aws:ec2/vpc:Vpc")
def _vpc(ctx: _Context) -> dict[str, Any]:
    return {
        "defaultRouteTableId": f"rtb-{_digest(ctx.id)[:17]}",
        "mainRouteTableId": f"rtb-{_digest(ctx.id)[:17]}",
    }


# --- control plane: load balancers, certificates, DNS, databases, caches, functions ----------------------


@extra_outputs("aws:lb/loadBalancer:LoadBalancer")
def _load_balancer(ctx: _Context) -> dict[str, Any]:
    suffix = f"app/{ctx.physical_name[:32]}/{_digest(ctx.id)[:16]}"
    return {
        "arn": f"arn:aws:elasticloadbalancing:{ctx.region}:{ACCOUNT_ID}:loadbalancer/{suffix}",
        "arnSuffix": suffix,
        "dnsName": f"{ctx.physical_name[:32]}-{int(_digest(ctx.id)[:8], 16)}.{ctx.region}.elb.amazonaws.com",
        "zoneId": _ALB_ZONE_IDS.get(ctx.region, "Z" + _digest(ctx.region)[:13].upper()),
    }


@extra_outputs("aws:lb/targetGroup:TargetGroup")
def _target_group(ctx: _Context) -> dict[str, Any]:
    suffix = f"targetgroup/{ctx.physical_name[:32]}/{_digest(ctx.id)[:16]}"
    return {"arn": f"arn:aws:elasticloadbalancing:{ctx.region}:{ACCOUNT_ID}:{suffix}", "arnSuffix": suffix}


@extra_outputs("aws:acm/certificate:Certificate")
def _certificate(ctx: _Context) -> dict[str, Any]:
    # ACM asks for the same validation record for a name in every region of an account.
    names = [ctx.inputs.get("domainName"), *(ctx.inputs.get("subjectAlternativeNames") or [])]
    return {
        "arn": f"arn:aws:acm:{ctx.region}:{ACCOUNT_ID}:certificate/{_uuid(ctx.id)}",
        "domainValidationOptions": [
            {
                "domainName": name,
                "resourceRecordName": f"_{_digest(ACCOUNT_ID + str(name))[:32]}.{name}.",
                "resourceRecordType": "CNAME",
                "resourceRecordValue": f"_{_digest(str(name))[:32]}.validations.aws.",
            }
            for name in names
        ],
    }


@extra_outputs("aws:route53/record:Record")
def _record(ctx: _Context) -> dict[str, Any]:
    name = ctx.inputs.get("name")
    return {"fqdn": name.rstrip(".") if isinstance(name, str) else name}


@extra_outputs("aws:route53/healthCheck:HealthCheck")
def _health_check(ctx: _Context) -> dict[str, Any]:
    return {"arn": f"arn:aws:route53:::healthcheck/{ctx.id}"}


@extra_outputs("aws:rds/globalCluster:GlobalCluster")
def _global_cluster(ctx: _Context) -> dict[str, Any]:
    return {
        "arn": f"arn:aws:rds::{ACCOUNT_ID}:global-cluster:{ctx.id}",
        "endpoint": f"{ctx.id}.global-{_digest(ctx.id)[:10]}.global.rds.amazonaws.com",
        "globalClusterResourceId": f"cluster-{_digest(ctx.id)[:20]}",
    }


@extra_outputs("aws:rds/cluster:Cluster")
def _rds_cluster(ctx: _Context) -> dict[str, Any]:
    host = f"{_digest(ACCOUNT_ID + ctx.region)[:12]}.{ctx.region}.rds.amazonaws.com"
    return {
        "arn": f"arn:aws:rds:{ctx.region}:{ACCOUNT_ID}:cluster:{ctx.id}",
        "clusterIdentifier": ctx.id,
        "endpoint": f"{ctx.id}.cluster-{host}",
        "readerEndpoint": f"{ctx.id}.cluster-ro-{host}",
    }


@extra_outputs("aws:elasticache/replicationGroup:ReplicationGroup")
def _replication_group(ctx: _Context) -> dict[str, Any]:
    host = f"{ctx.id}.{_digest(ctx.id)[:6]}.{_short_region(ctx.region)}.cache.amazonaws.com"
    return {
        "arn": f"arn:aws:elasticache:{ctx.region}:{ACCOUNT_ID}:replicationgroup:{ctx.id}",
        "primaryEndpointAddress": f"master.{host}",
        "readerEndpointAddress": f"replica.{host}",
    }


@extra_outputs("aws:kms/key:Key")
def _kms_key(ctx: _Context) -> dict[str, Any]:
    key_id = _uuid(ctx.id)
    return {"keyId": key_id, "arn": f"arn:aws:kms:{ctx.region}:{ACCOUNT_ID}:key/{key_id}"}


@extra_outputs("aws:secretsmanager/secret:Secret")
def _secret(ctx: _Context) -> dict[str, Any]:
    return {
        "arn": f"arn:aws:secretsmanager:{ctx.region}:{ACCOUNT_ID}:secret:{ctx.physical_name}-{ctx.id[-6:]}"
    }


@extra_outputs("aws:lambda/function:Function")
def _function(ctx: _Context) -> dict[str, Any]:
    arn = f"arn:aws:lambda:{ctx.region}:{ACCOUNT_ID}:function:{ctx.physical_name}"
    return {
        "arn": arn,
        "invokeArn": f"arn:aws:apigateway:{ctx.region}:lambda:path/2015-03-31/functions/{arn}",
    }


@extra_outputs("aws:cloudwatch/metricAlarm:MetricAlarm")
def _metric_alarm(ctx: _Context) -> dict[str, Any]:
    return {"arn": f"arn:aws:cloudwatch:{ctx.region}:{ACCOUNT_ID}:alarm:{ctx.physical_name}"}


@extra_outputs("aws:cloudwatch/eventRule:EventRule")
def _event_rule(ctx: _Context) -> dict[str, Any]:
    return {"arn": f"arn:aws:events:{ctx.region}:{ACCOUNT_ID}:rule/{ctx.physical_name}"}


@extra_outputs("aws:sqs/queue:Queue")
def _queue(ctx: _Context) -> dict[str, Any]:
    return {
        "arn": f"arn:aws:sqs:{ctx.region}:{ACCOUNT_ID}:{ctx.physical_name}",
        "url": f"https://sqs.{ctx.region}.amazonaws.com/{ACCOUNT_ID}/{ctx.physical_name}",
    }


@extra_outputs("aws:ssm/parameter:Parameter")
def _parameter(ctx: _Context) -> dict[str, Any]:
    return {"arn": f"arn:aws:ssm:{ctx.region}:{ACCOUNT_ID}:parameter{ctx.physical_name}"}


@extra_outputs("aws:s3/bucket:Bucket")
def _bucket(ctx: _Context) -> dict[str, Any]:
    return {"arn": f"arn:aws:s3:::{ctx.id}", "bucketDomainName": f"{ctx.id}.s3.amazonaws.com"}


# Route53 zone ids of ALBs per region (an alias record names the target's zone).
_ALB_ZONE_IDS = {
    "us-east-1": "Z35SXDOTRQ7X7K",
    "us-east-2": "Z3AADJGX6KTTL2",
    "us-west-1": "Z368ELLRRE2KJ0",
    "us-west-2": "Z1H1FL5HABSF5",
    "eu-west-1": "Z32O12XQLNTSW2",
    "eu-central-1": "Z215JYRZR1TBD5",
}
# The account ELB writes access logs from, in regions older than August 2022.
_ELB_ACCOUNTS = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "eu-west-1": "156460612806",
    "eu-central-1": "054676820928",
}


def _uuid(text: str) -> str:
    d = _digest(text)
    return f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}"


def _short_region(region: str) -> str:
    """us-east-1 -> use1, as ElastiCache endpoints spell it."""
    area, direction, number = region.split("-")
    return f"{area[:2]}{direction[0]}{number}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _service_and_kind(resource_type: str) -> tuple[str, str]:
    """`aws:ec2/natGateway:NatGateway` -> ("ec2", "nat-gateway")."""
    module = resource_type.split(":")[1]
    service, _, kind = module.partition("/")
    kebab = "".join(f"-{c.lower()}" if c.isupper() else c for c in kind)
    return service, kebab


class FleetMocks(pulumi.runtime.Mocks):
    """Mocks for every resource type the program declares."""

    def __init__(self) -> None:
        self._provider_regions: dict[str, str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        digest = _digest(f"{args.typ}::{args.name}")
        if args.typ.startswith("pulumi:providers:"):
            provider_id = f"{args.name}-{digest[:8]}"
            region = args.inputs.get("region")
            if isinstance(region, str):
                self._provider_regions[provider_id] = region
            return provider_id, dict(args.inputs)

        region = self._region_of(args.provider, args.inputs)
        named = args.inputs.get(_NAME_INPUT.get(args.typ, "name"))
        physical = named if isinstance(named, str) else f"{args.name}-{digest[:7]}"
        resource_id = (
            physical
            if args.typ in _ID_IS_NAME
            else f"{_ID_PREFIX.get(args.typ, args.name + '-')}{digest[:17]}"
        )
        outputs: dict[str, Any] = {"name": physical, **args.inputs}
        if args.typ.startswith("aws:"):
            service, kind = _service_and_kind(args.typ)
            scope = "" if service == "iam" else region
            outputs.setdefault("arn", f"arn:aws:{service}:{scope}:{ACCOUNT_ID}:{kind}/{physical}")
            outputs.setdefault("region", region)
        extra = EXTRA_OUTPUTS.get(args.typ)
        if extra is not None:
            outputs.update(extra(_Context(args, region, resource_id, physical)))
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        region = self._region_of(args.provider, args.args)
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            count = AWS_REGIONS[region].availability_zones
            suffixes = "abcdef"[:count]
            return {
                "names": [f"{region}{s}" for s in suffixes],
                "zoneIds": [
                    f"{region[:3]}{region.split('-')[1][:2]}{region[-1]}-az{i + 1}" for i in range(count)
                ],
                "id": region,
                "region": region,
            }
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/inference-fleet-deployer/pulumi",
                "userId": "AROAEXAMPLEDEPLOYER:pulumi",
                "id": ACCOUNT_ID,
            }
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": region, "region": region, "id": region, "endpoint": f"ec2.{region}.amazonaws.com"}
        if args.token == "aws:route53/getZone:getZone":
            name = str(args.args.get("name", "")).rstrip(".")
            zone_id = "Z" + _digest(name)[:20].upper()
            return {"zoneId": zone_id, "id": zone_id, "name": name, "privateZone": False}
        if args.token == "aws:elb/getServiceAccount:getServiceAccount":
            account = _ELB_ACCOUNTS.get(region, "000000000000")
            return {"arn": f"arn:aws:iam::{account}:root", "id": account, "region": region}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        raise NotImplementedError(
            f"fleet mocks: no answer for function {args.token}; add one in fleet/mocks.py"
        )

    def _region_of(self, provider_ref: str | None, inputs: dict[str, Any]) -> str:
        explicit = inputs.get("region")
        if isinstance(explicit, str):
            return explicit
        if provider_ref:
            return self._provider_regions.get(provider_ref.rsplit("::", 1)[-1], "")
        return ""
