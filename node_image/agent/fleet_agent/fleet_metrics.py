"""The fleet's CloudWatch metrics: one contract for whoever publishes them (the agent, the fleet controller)
and whoever acts on or shows them (scaling policies, alarms, dashboards in the Pulumi program).

Every node metric carries exactly the dimensions in NODE_DIMENSIONS: an alarm or a scaling policy matches a
metric only with its whole dimension set, so the set is part of the name.
"""

from __future__ import annotations

# --- Published by each node's agent ---------------------------------------------------------------
NODE_NAMESPACE = "inference-fleet/nodes"
POOL_DIMENSION = "Pool"  # the GPU pool's name (config `gpuPools[].name`)
MODEL_DIMENSION = "Model"  # the model the node serves (the gateway's model name for the pool)
NODE_DIMENSIONS = (POOL_DIMENSION, MODEL_DIMENSION)

# Requests at the node now: in flight at the engine plus waiting in its queue. Its pool-wide Average is
# the per-node load that target tracking keeps at the pool's target.
LOAD = "Load"  # Count
REQUESTS_IN_FLIGHT = "RequestsInFlight"  # Count
REQUESTS_WAITING = "RequestsWaiting"  # Count
TIME_TO_FIRST_TOKEN = "TimeToFirstToken"  # Seconds, one value per request (percentiles)
REQUEST_LATENCY = "RequestLatency"  # Seconds, one value per request (percentiles)
TOKENS_PER_SECOND = "TokensPerSecond"  # Count/Second, generated tokens
KV_CACHE_USAGE = "KvCacheUsage"  # Percent, where the engine reports it
GPU_UTILIZATION = "GpuUtilization"  # Percent, busiest GPU of the node
GPU_MEMORY_USED = "GpuMemoryUsed"  # Bytes, all GPUs of the node
# Seconds from the instance's boot to the agent's first "ready": one value per node start, the measured
# time to ready that a pool's `scaling.nodeReadySeconds` (instance warmup, the scaling budget) comes from.
NODE_READY_SECONDS = "NodeReadySeconds"  # Seconds

# How the agents publish them (fleet_agent/cloudwatch.py): one PutMetricData per node every
# PUBLISH_PERIOD_S, at 1-second storage resolution, each datum covering one wall-clock-aligned window of
# the period. An alarm or a scaling policy may use any period that is a multiple of it (10, 20, 30, 60 s).
# Load, RequestsInFlight, RequestsWaiting, KvCacheUsage and the GPU metrics are sampled every
# SAMPLE_PERIOD_S (Load as the peak of the second, so no request is too short to be seen); only a node
# that takes requests (ready) publishes Load, RequestsInFlight and RequestsWaiting, so the pool's Average
# is the load per serving node and a booting node does not pull it down.
PUBLISH_PERIOD_S = 10
SAMPLE_PERIOD_S = 1
STORAGE_RESOLUTION_S = 1

# The units they carry (CloudWatch StandardUnit): an alarm that names a unit matches only these.
UNITS: dict[str, str] = {
    LOAD: "Count",
    REQUESTS_IN_FLIGHT: "Count",
    REQUESTS_WAITING: "Count",
    TIME_TO_FIRST_TOKEN: "Seconds",
    REQUEST_LATENCY: "Seconds",
    TOKENS_PER_SECOND: "Count/Second",
    KV_CACHE_USAGE: "Percent",
    GPU_UTILIZATION: "Percent",
    GPU_MEMORY_USED: "Bytes",
    NODE_READY_SECONDS: "Seconds",
}

# The same metrics on the agent's Prometheus endpoint (`/metrics`; Kubernetes, Managed Prometheus), with
# the dimensions as the labels `pool` and `model`. The two latency metrics are histograms there.
PROMETHEUS_NAMES: dict[str, str] = {
    LOAD: "fleet_node_load",
    REQUESTS_IN_FLIGHT: "fleet_node_requests_in_flight",
    REQUESTS_WAITING: "fleet_node_requests_waiting",
    TIME_TO_FIRST_TOKEN: "fleet_node_time_to_first_token_seconds",
    REQUEST_LATENCY: "fleet_node_request_latency_seconds",
    TOKENS_PER_SECOND: "fleet_node_tokens_per_second",
    KV_CACHE_USAGE: "fleet_node_kv_cache_usage_percent",
    GPU_UTILIZATION: "fleet_node_gpu_utilization_percent",
    GPU_MEMORY_USED: "fleet_node_gpu_memory_used_bytes",
    NODE_READY_SECONDS: "fleet_node_ready_seconds",
}
PROMETHEUS_LABELS = ("pool", "model")  # NODE_DIMENSIONS, as Prometheus spells labels

# --- Published by the fleet controller (functions/fleet_controller) ---------------------------------
CONTROLLER_NAMESPACE = "inference-fleet/controller"
READY_NODES = "ReadyNodes"  # Count per pool (dimension Pool only): nodes whose agent says ready

# --- Published by the standby region's failover prober (functions/failover_prober) -------------------
# It cannot import fleet_agent: functions/failover_prober/settings.py keeps the same names, and a test holds
# them equal (tests/functions/test_settings_contracts.py).
FAILOVER_NAMESPACE = "inference-fleet/failover"
FAILOVER_STACK_DIMENSION = "Stack"
WITNESSES_DEGRADED = "WitnessesDegraded"  # 1 per observation while a witness is unknown or they disagree
WRITER_IN_STANDBY = "WriterInStandby"  # 1 per run while the database writer is the standby region's
