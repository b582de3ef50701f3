"""inference-fleet: read the validated stack config, compose the components, export what they built."""

import pulumi

from components.config import load_stack_config
from components.network import RegionalNetwork, RegionalNetworkArgs
from components.providers import aws_provider

config, secrets = load_stack_config()
tags = config.tags_for(pulumi.get_stack())

networks: dict[str, RegionalNetwork] = {}
for network in config.regional_networks():
    provider = aws_provider(network.region, tags)
    networks[network.region] = RegionalNetwork(
        f"network-{network.region}",
        RegionalNetworkArgs(network=network),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )

pulumi.export("tier", config.tier)
pulumi.export("primaryRegion", config.primary_region)
pulumi.export("standbyRegion", config.standby_region)
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
pulumi.export("budgets", {})
