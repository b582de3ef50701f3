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
