"""inference-fleet: read the validated stack config, declare each capability in order, publish what they
built. Each capability gets its config section, the stack and the published outputs of what it builds on.
"""

from components import (
    alerts,
    batch,
    control_plane,
    controller,
    data_tier,
    failover,
    gpu_pools,
    kubernetes,
    model_store,
    network,
)
from components.core.context import StackContext
from components.core.outputs import publish
from components.stack import load_stack_config

config, secrets = load_stack_config()
stack = StackContext.create(config.tier, config.tags)
regions = config.control_plane_regions
cp = config.control_plane

networks = network.declare(stack, config.network, regions)
topics = alerts.declare(stack, config.alerts, regions)
alarm_topics, log_days = topics.topic_arns, config.log_retention_days
timeout = cp.gateway.request_timeout_seconds  # a request's longest; the pools' load balancers idle as long
data = data_tier.declare_database(
    stack,
    cp.database,
    networks,
    master_password=secrets.require("databasePassword"),
    gateway_password=secrets.require("gatewayDatabasePassword"),
    log_retention_days=log_days,
    topic_arns=alarm_topics,
)
# Each region's gateway routes to its own GPU pools (and Kubernetes-served models) first; how it reaches
# them is known from config.
deployments = gpu_pools.gateway_deployments(config.gpu_pools, config.domain)
deployments += kubernetes.gateway_deployments(config.kubernetes, config.domain, regions)
pool_api_key = secrets.require(gpu_pools.POOL_API_KEY.key) if deployments else None
# The gateway's Redis takes the nodes' heartbeats and the fleet controller, each as its own ACL user.
redis_users = [
    *gpu_pools.redis_users(config.gpu_pools, secrets),
    *controller.redis_users(config.gpu_pools, secrets),
]
planes = control_plane.declare(
    stack,
    config.domain,
    cp.gateway,
    cp.redis,
    log_days,
    networks,
    data,
    secrets,
    alarm_topics,
    pools=deployments,
    pool_api_key=pool_api_key,
    redis_users=redis_users,
)
# Model weights: a JuiceFS volume per region with GPU pools, a bucket for the batch jobs.
store = model_store.declare(
    stack,
    config.model_store,
    networks,
    data.kms_key_arns,
    secrets,
    log_days,
    regions=config.store_regions,
    gcp=(config.gcp_project, config.gcp_region) if config.batch_jobs else None,
)
pools = gpu_pools.declare(
    stack, config.gpu_pools, config.node_image, config.domain, timeout, networks, planes, data, secrets, store
)
resilience = failover.declare(
    stack, config.domain, cp.dns, cp.failover, planes, networks, data, alarm_topics, log_days
)
fleet = controller.declare(
    stack, config.controller, pools, networks, planes, data, alarm_topics, log_days, secrets
)
batch_jobs = batch.declare(stack, config.gcp_project, config.gcp_region, config.batch_jobs, store)
# Models served on existing GPU clusters: the same image and agent, mounting the region's model store.
served = kubernetes.declare(
    stack, config.kubernetes, config.domain, cp.gateway, networks, store, secrets, pool_api_key
)

publish(
    [networks, topics, data, planes, store, pools, fleet, resilience, batch_jobs, served],
    tier=config.tier,
    primaryRegion=config.primary_region,
    standbyRegion=config.standby_region,
)
