"""inference-fleet: read the validated stack config, declare each capability in order, publish what they
built. Each capability gets its config section, the stack and the published outputs of what it builds on.
"""

from components import alerts, control_plane, data_tier, failover, network
from components.core.context import StackContext
from components.core.outputs import publish
from components.stack import load_stack_config

config, secrets = load_stack_config()
stack = StackContext.create(config.tier, config.tags)
regions = config.control_plane_regions
cp = config.control_plane

networks = network.declare(stack, config.network, regions)
topics = alerts.declare(stack, config.alerts, regions)
data = data_tier.declare_database(
    stack,
    cp.database,
    networks,
    master_password=secrets.require("databasePassword"),
    gateway_password=secrets.require("gatewayDatabasePassword"),
    log_retention_days=cp.log_retention_days,
    topic_arns=topics.topic_arns,
)
planes = control_plane.declare(
    stack,
    config.domain,
    cp.gateway,
    cp.redis,
    cp.log_retention_days,
    networks,
    data,
    secrets,
    topics.topic_arns,
)
resilience = failover.declare(
    stack,
    config.domain,
    cp.dns,
    cp.failover,
    planes,
    networks,
    data,
    topics.topic_arns,
    cp.log_retention_days,
)

publish(
    [networks, topics, data, planes, resilience],
    tier=config.tier,
    primaryRegion=config.primary_region,
    standbyRegion=config.standby_region,
)
