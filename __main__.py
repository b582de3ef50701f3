"""inference-fleet: read the validated stack config, compose the components, export what they built."""

import pulumi

from components.catalog import ROUTE53_METRICS_REGION
from components.config import load_stack_config
from components.control_plane import (
    DatabaseAccess,
    GatewaySecrets,
    RegionalControlPlane,
    RegionalControlPlaneArgs,
)
from components.data_tier import (
    DATABASE_NAME,
    DATABASE_PORT,
    MASTER_USERNAME,
    DataTier,
    DataTierArgs,
    DataTierRegion,
)
from components.failover_dns import FailoverDns, FailoverDnsArgs, RegionEndpoint
from components.network import RegionalNetwork, RegionalNetworkArgs
from components.peering import PeeringSide, RegionPeering, RegionPeeringArgs
from components.promotion import AuroraPromotion, AuroraPromotionArgs, PromotionSide
from components.providers import aws_provider

config, secrets = load_stack_config()
stack = pulumi.get_stack()
tags = config.tags_for(stack)
regions = config.control_plane_regions
primary, standby = config.primary_region, config.standby_region

providers = {region: aws_provider(region, tags) for region in regions}
networks: dict[str, RegionalNetwork] = {}
peering_sides: dict[str, PeeringSide] = {}
for network in config.regional_networks():
    net = RegionalNetwork(
        f"network-{network.region}",
        RegionalNetworkArgs(network=network),
        opts=pulumi.ResourceOptions(providers=[providers[network.region]]),
    )
    networks[network.region] = net
    peering_sides[network.region] = PeeringSide(
        network=network,
        provider=providers[network.region],
        vpc_id=net.vpc_id,
        private_route_table_ids=net.private_route_table_ids,
    )

# Where the other region's gateway reaches the database from (and the database's writer may be).
remote_cidrs: dict[str, list[str]] = {region: [] for region in regions}
if standby is not None:
    RegionPeering(
        f"peering-{primary}-{standby}",
        RegionPeeringArgs(requester=peering_sides[primary], accepter=peering_sides[standby]),
    )
    remote_cidrs = {
        primary: peering_sides[standby].private_cidrs,
        standby: peering_sides[primary].private_cidrs,
    }

data = DataTier(
    "data",
    DataTierArgs(
        spec=config.data_tier(),
        stack=stack,
        regions=[
            DataTierRegion(
                region=region,
                provider=providers[region],
                vpc_id=networks[region].vpc_id,
                private_subnet_ids=networks[region].private_subnet_ids,
                remote_client_cidrs=remote_cidrs[region],
            )
            for region in regions
        ],
        master_password=secrets.require("databasePassword"),
    ),
)

gateway_secrets = GatewaySecrets(
    master_key=secrets.require("gatewayMasterKey"),
    provider_api_keys=secrets.require_object("providerApiKeys"),
    database_password=secrets.require("databasePassword"),
    redis_auth_token=secrets.require("redisAuthToken"),
)
control_planes: dict[str, RegionalControlPlane] = {}
for plane in config.regional_control_planes():  # the primary first: the others reuse its ACM records
    region = plane.region
    control_planes[region] = RegionalControlPlane(
        f"control-plane-{region}",
        RegionalControlPlaneArgs(
            plane=plane,
            stack=stack,
            vpc_id=networks[region].vpc_id,
            public_subnet_ids=networks[region].public_subnet_ids,
            private_subnet_ids=networks[region].private_subnet_ids,
            kms_key_arn=data.kms_key_arns[region],
            database=DatabaseAccess(
                endpoint=data.writer_endpoint,
                port=DATABASE_PORT,
                name=DATABASE_NAME,
                username=MASTER_USERNAME,
                security_group_id=data.security_group_ids[region],
                remote_cidrs=remote_cidrs[region],
            ),
            secrets=gateway_secrets,
            shared_validation_fqdns=(
                None if plane.role == "primary" else control_planes[primary].shared_validation_fqdns
            ),
        ),
        opts=pulumi.ResourceOptions(providers=[providers[region]]),
    )


def endpoint(region: str) -> RegionEndpoint:
    cp = control_planes[region]
    return RegionEndpoint(region, cp.regional_name, cp.alb_dns_name, cp.alb_zone_id)


cp_config = config.control_plane
dns = FailoverDns(
    "dns",
    FailoverDnsArgs(
        domain=config.domain,
        api_name=f"api.{config.domain}",
        primary=endpoint(primary),
        standby=endpoint(standby) if standby else None,
        dns=cp_config.dns,
        failover=cp_config.failover,
    ),
    opts=pulumi.ResourceOptions(providers=[providers[primary]]),
)

failover: dict[str, object] = {}
budgets: dict[str, int] = {}
if standby is not None and dns.budget is not None:
    assert data.global_cluster_id is not None and data.global_cluster_arn is not None
    alarm_provider = providers.get(ROUTE53_METRICS_REGION) or aws_provider(ROUTE53_METRICS_REGION, tags)
    promotion = AuroraPromotion(
        "promotion",
        AuroraPromotionArgs(
            stack=stack,
            primary_health_check_id=dns.health_check_ids[primary],
            promote_after_seconds=cp_config.failover.promote_after_seconds,
            log_retention_days=cp_config.log_retention_days,
            alarm_side=PromotionSide(ROUTE53_METRICS_REGION, alarm_provider),
            function_side=PromotionSide(standby, providers[standby]),
            global_cluster_id=data.global_cluster_id,
            global_cluster_arn=data.global_cluster_arn,
            target_cluster_arn=data.cluster_arns[standby],
            member_cluster_arns=list(data.cluster_arns.values()),
        ),
    )
    budgets = {
        "worstCaseFailoverSeconds": dns.budget.worst_case_seconds,
        "failoverRtoSeconds": cp_config.failover.rto_seconds,
    }
    failover = {
        "worstCaseSeconds": dns.budget.worst_case_seconds,
        "detectionSeconds": dns.budget.detection_seconds,
        "dnsTtlSeconds": dns.budget.dns_ttl_seconds,
        "rtoSeconds": cp_config.failover.rto_seconds,
        "promoteDatabaseAfterSeconds": cp_config.failover.promote_after_seconds,
        "promotionFunction": promotion.function_name,
        "promotionRecord": promotion.record_parameter,
        "promotionFailures": promotion.failure_queue_url,
        # A planned move of the writer (no data loss), e.g. before maintenance in the primary region.
        "switchoverCommand": pulumi.Output.concat(
            "aws rds switchover-global-cluster --region ",
            standby,
            " --global-cluster-identifier ",
            data.global_cluster_id,
            " --target-db-cluster-identifier ",
            data.cluster_arns[standby],
        ),
    }

pulumi.export("tier", config.tier)
pulumi.export("primaryRegion", primary)
pulumi.export("standbyRegion", standby)
pulumi.export(
    "networks",
    {
        region: {
            "vpcId": net.vpc_id,
            "privateSubnetIds": net.private_subnet_ids,
            "zones": net.availability_zones,
        }
        for region, net in networks.items()
    },
)
pulumi.export("apiUrl", dns.api_url)
pulumi.export("gatewayUrls", {region: cp.gateway_url for region, cp in control_planes.items()})
pulumi.export("healthCheckIds", dns.health_check_ids)
pulumi.export(
    "database",
    {
        "writerEndpoint": data.writer_endpoint,
        "globalClusterId": data.global_cluster_id,
        "clusterEndpoints": data.cluster_endpoints,
        "readerEndpoints": data.reader_endpoints,
    },
)
pulumi.export("failover", failover)
pulumi.export("budgets", budgets)
