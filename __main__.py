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
    observability,
)
from components.core.context import StackContext
from components.core.outputs import publish
from components.stack import load_stack_config

config, secrets = load_stack_config()
stack = StackContext.create(config.tier, config.tags)
regions = config.control_plane_regions
cp = config.control_plane

networks = network.declare(stack, config=config.network, regions=regions)
topics = alerts.declare(stack, config=config.alerts, regions=regions)
alarm_topics, log_days = topics.topic_arns, config.log_retention_days
timeout = cp.gateway.request_timeout_seconds  # a request's longest; the pools' load balancers idle as long
data = data_tier.declare(
    stack,
    config=cp.database,
    networks=networks,
    master_password=secrets.require("databasePassword"),
    gateway_password=secrets.require("gatewayDatabasePassword"),
    log_retention_days=log_days,
    topic_arns=alarm_topics,
)
# Each region's gateway routes to its own GPU pools (and Kubernetes-served models) first; how it reaches
# them is known from config.
backends = gpu_pools.gateway_backends(config.gpu_pools, config.domain)
backends += kubernetes.gateway_backends(config.kubernetes, config.domain, regions)
pool_api_key = secrets.require(gpu_pools.POOL_API_KEY.key) if backends else None
# The gateway's Redis takes the nodes' heartbeats and the fleet controller, each as its own ACL user.
redis_users = [
    *gpu_pools.redis_users(config.gpu_pools, secrets),
    *controller.redis_users(config.gpu_pools, secrets),
]
planes = control_plane.declare(
    stack,
    domain=config.domain,
    gateway=cp.gateway,
    redis=cp.redis,
    log_retention_days=log_days,
    networks=networks,
    data=data,
    secrets=secrets,
    topic_arns=alarm_topics,
    backends=backends,
    pool_api_key=pool_api_key,
    redis_users=redis_users,
    # What Route53 hears from a region that serves only through serverless endpoints.
    serverless_only_healthy=cp.failover.serverless_only == "healthy",
)
# Model weights: a JuiceFS volume per region with GPU pools, a bucket for the batch jobs.
store = model_store.declare(
    stack,
    config=config.model_store,
    networks=networks,
    kms_key_arns=data.kms_key_arns,
    secrets=secrets,
    log_retention_days=log_days,
    regions=config.store_regions,
    gcp=(config.gcp_project, config.gcp_region) if config.batch_jobs else None,
)
pools = gpu_pools.declare(
    stack,
    pools=config.gpu_pools,
    image=config.node_image,
    domain=config.domain,
    request_timeout_s=timeout,
    networks=networks,
    planes=planes,
    data=data,
    secrets=secrets,
    store=store,
    topic_arns=alarm_topics,
)
resilience = failover.declare(
    stack,
    domain=config.domain,
    dns=cp.dns,
    failover=cp.failover,
    planes=planes,
    networks=networks,
    data=data,
    topic_arns=alarm_topics,
    log_retention_days=log_days,
)
fleet = controller.declare(
    stack,
    config=config.controller,
    pools=pools,
    networks=networks,
    planes=planes,
    data=data,
    topic_arns=alarm_topics,
    log_retention_days=log_days,
    secrets=secrets,
)
batch_jobs = batch.declare(
    stack, project=config.gcp_project, region=config.gcp_region, jobs=config.batch_jobs, store=store
)
# Models served on existing GPU clusters: the same image and agent, mounting the region's model store.
served = kubernetes.declare(
    stack,
    config=config.kubernetes,
    domain=config.domain,
    gateway=cp.gateway,
    networks=networks,
    store=store,
    secrets=secrets,
    api_key=pool_api_key,
)

# What the stack promises and costs: SLO burn-rate alarms, the dashboards, the budget from the estimate.
estimate = observability.stack_cost(
    tier=config.tier,
    regions=regions,
    network=config.network,
    gateway=cp.gateway,
    redis=cp.redis,
    database=cp.database,
    pools=config.gpu_pools,
    model_store=config.model_store,
    store_regions=config.store_regions,
    kubernetes=config.kubernetes,
    batch_jobs=config.batch_jobs,
    gcp_region=config.gcp_region,
)
watched = observability.declare(
    stack,
    slo=config.slo,
    cost_budget=config.cost_budget,
    monitoring=config.monitoring,
    estimate=estimate,
    pools=tuple(config.gpu_pools),
    topics=topics,
    networks=networks,
    planes=planes,
    built_pools=pools,
    resilience=resilience,
)

publish(
    [networks, topics, data, planes, store, pools, fleet, resilience, batch_jobs, served, watched],
    tier=config.tier,
    primaryRegion=config.primary_region,
    standbyRegion=config.standby_region,
)
