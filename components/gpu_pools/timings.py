"""How long a pool's nodes take to become ready, to be seen dead, and to leave: each a worst case from what
the config declares, every term named and its source cited. The pool declares from these figures (its
launch hook's timeout, its target group's health check and deregistration delay, its terminate hook's
timeout, the instance refresh's pacing) and the plan's budgets show them (`gpuPoolTimings`).

Ready (a new node, launch to InService; InService means ready: the agent completes the launch hook):

    boot           EC2 launch to the agent listening: about 25 s for a non-GPU instance (3P:
                   github.com/brevdev/ec2-coldboot-research); a GPU node also loads the NVIDIA driver
                   and mounts the store: allowed BOOT_ALLOWANCE_S (not measured here: no GPU instance)
    storeTransfer  the model's weights from the store into the node's cache, at the slowest of the pool's
                   types' baseline network bandwidth (catalog GPU_BASELINE_GBPS, DescribeInstanceTypes):
                   the agent's warmup reads with STORE_WARMUP_THREADS readers, so the network card, not
                   one S3 connection, is the bound; size from modelStore.models[].sizeGib, else the GPU
                   memory of the smallest node of the pool (a model the engine serves fits in it)
    engineStart    weights from the local cache into GPU memory, CUDA graphs: ENGINE_START_ALLOWANCE_S by
                   engine (no GPU engine runs on these machines; measure with bench/gpu_node.py)

The warm-up limit the fleet controller gives a node that answers "starting" or "warming" is storeTransfer +
engineStart; the launch hook's timeout adds boot.

Dead (the target group stops routing to a node whose agent is gone):

    interval x unhealthyThreshold   5 s x 2, both the API's minimums (elbv2 CreateTargetGroup:
                                    HealthCheckIntervalSeconds 5-300, UnhealthyThresholdCount 2-10): a
                                    refused probe fails at once, the death comes just after a passing one
    timeout                         2 s (HealthCheckTimeoutSeconds 2-120), added when the host does not
                                    answer at all (the last probe fails only at its timeout)

Leaving (scale-in, instance refresh, replacement; Auto Scaling deregisters the node from the target group
first and waits out the deregistration delay, then holds it in Terminating:Wait for the terminate hook:
ASG User Guide, lifecycle-hooks-overview):

    deregistration  in-flight requests finish on the deregistering target, up to the deregistration delay
                    = the load balancer's letting go (LB_LEAVE_S) + the gateway's request timeout (a
                    request routed while it lets go, which the gateway still waits for, is never cut;
                    elbv2 deregistration_delay.timeout_seconds 0-3600; none in flight: at once)
    lifecycleDrain  the agent's own drain in Terminating:Wait: its leave (LB_LEAVE_S), the same request
                    timeout, its reserve for hooks and the engine's stop (DRAIN_RESERVE_S); its lifecycle
                    action kept open with RecordLifecycleActionHeartbeat every third of the hook's
                    HeartbeatTimeout; it waits for the same requests (one begun before the deregistration
                    ends within the request timeout of it), so the two do not add up
    engineStop      the engine's stop grace (fleet_agent.constants.ENGINE_STOP_GRACE_S)
    hookTimeout     an agent that died mid-drain holds the node at most one HeartbeatTimeout

Spot keeps its two minutes (the interruption notice, EC2 User Guide spot-instance-termination-notices): a
lifecycle hook cannot hold a reclaimed instance (ASG User Guide, lifecycle-hooks), so the agent leaves the
load balancer, drains until the notice's time less its reserve, and stops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from components.core.catalog.aws import GPU_BASELINE_GBPS, GPU_INSTANCE_TYPES
from components.gpu_pools.config import GpuPoolConfig
from fleet_agent import constants as agent_constants

GIGABITS_PER_GIB = 8 * 1024**3 / 1e9
BOOT_ALLOWANCE_S = 180
ENGINE_START_ALLOWANCE_S = {"vllm": 300, "ollama": 120}
# Target group health check: the API's minimums (elbv2 CreateTargetGroup), so a dead node leaves in 10 s.
HEALTH_CHECK_INTERVAL_S = 5
HEALTH_CHECK_TIMEOUT_S = 2
UNHEALTHY_THRESHOLD = 2
HEALTHY_THRESHOLD = 2
# Terminate hook: enough for an agent that sends no heartbeat to drain on its SIGTERM budget and stop its
# engine; a lifecycle drain as long as a request is kept open by the agent's heartbeats, a third of this
# apart; a dead agent holds its node no longer than this.
TERMINATE_HOOK_HEARTBEAT_S = int(
    agent_constants.DRAIN_TIMEOUT_S + agent_constants.ENGINE_STOP_GRACE_S + agent_constants.DRAIN_RESERVE_S
)
HEARTBEAT_SHARE = 1 / 3
# PutLifecycleHook: HeartbeatTimeout 30-7200 s; the action ends by GlobalTimeout, 100 x HeartbeatTimeout
# or 48 h, whichever is smaller (botocore autoscaling model, LifecycleHook.GlobalTimeout).
HOOK_TIMEOUT_RANGE_S = (30, 7200)
GLOBAL_TIMEOUT_HEARTBEATS = 100
GLOBAL_TIMEOUT_MAX_S = 172800
SPOT_NOTICE_S = 120


@dataclass(frozen=True)
class ReadinessBudget:
    model_gib: float
    model_size_source: str
    store_gbps: float
    slowest_type: str
    boot_s: float
    engine_start_s: float

    @property
    def store_transfer_s(self) -> float:
        return self.model_gib * GIGABITS_PER_GIB / self.store_gbps

    @property
    def warm_limit_s(self) -> int:
        """How long a node that answers may be on its way to ready (the controller's warm-up limit)."""
        return math.ceil(self.store_transfer_s + self.engine_start_s)

    @property
    def launch_hook_timeout_s(self) -> int:
        """Launch to ready: the launch hook's HeartbeatTimeout (ABANDON past it: the group replaces it)."""
        low, high = HOOK_TIMEOUT_RANGE_S
        return min(high, max(low, math.ceil(self.boot_s + self.warm_limit_s)))

    def figures(self) -> dict[str, Any]:
        return {
            "launchToReadySeconds": self.launch_hook_timeout_s,
            "warmUpLimitSeconds": self.warm_limit_s,
            "termsSeconds": {
                "boot": self.boot_s,
                "storeTransfer": round(self.store_transfer_s, 1),
                "engineStart": self.engine_start_s,
            },
            "modelGib": self.model_gib,
            "modelSize": self.model_size_source,
            "storeGbps": self.store_gbps,
            "storeGbpsOf": f"{self.slowest_type} baseline (catalog GPU_BASELINE_GBPS)",
        }


@dataclass(frozen=True)
class DeadNodeBudget:
    interval_s: int = HEALTH_CHECK_INTERVAL_S
    timeout_s: int = HEALTH_CHECK_TIMEOUT_S
    unhealthy_threshold: int = UNHEALTHY_THRESHOLD

    @property
    def refused_s(self) -> int:
        return self.interval_s * self.unhealthy_threshold

    @property
    def unanswered_s(self) -> int:
        return self.refused_s + self.timeout_s

    def figures(self) -> dict[str, Any]:
        return {
            "deadNodeOutOfRotationSeconds": self.refused_s,
            "silentHostOutOfRotationSeconds": self.unanswered_s,
            "termsSeconds": {
                "interval": self.interval_s,
                "unhealthyThreshold": self.unhealthy_threshold,
                "timeout": self.timeout_s,
            },
            "source": "elbv2 CreateTargetGroup minimums: interval 5, timeout 2, unhealthy threshold 2",
        }


@dataclass(frozen=True)
class DrainBudget:
    request_timeout_s: int
    hook_heartbeat_s: int = TERMINATE_HOOK_HEARTBEAT_S
    engine_stop_s: float = agent_constants.ENGINE_STOP_GRACE_S

    @property
    def deregistration_delay_s(self) -> int:
        """The gateway's request timeout for a request the load balancer still routed while it let go."""
        return int(agent_constants.LB_LEAVE_S + self.request_timeout_s)

    @property
    def lifecycle_drain_s(self) -> int:
        """The agent's drain budget when the group takes the node (its `drain.lifecycle_timeout_s`), from its
        notice to its engine stopped: its leave (the load balancer letting go), a request accepted at the
        leave's end running the gateway's whole request timeout, then its reserve (hooks, engine stop)."""
        return int(agent_constants.LB_LEAVE_S + self.request_timeout_s + agent_constants.DRAIN_RESERVE_S)

    @property
    def global_timeout_s(self) -> int:
        return min(GLOBAL_TIMEOUT_MAX_S, GLOBAL_TIMEOUT_HEARTBEATS * self.hook_heartbeat_s)

    @property
    def leave_s(self) -> float:
        return max(self.deregistration_delay_s, self.lifecycle_drain_s) + self.engine_stop_s

    def figures(self) -> dict[str, Any]:
        return {
            "scaleInLeaveSeconds": self.leave_s,
            "termsSeconds": {
                "deregistration": self.deregistration_delay_s,
                "lifecycleDrain": self.lifecycle_drain_s,
                "engineStop": self.engine_stop_s,
            },
            "terminateHook": {
                "heartbeatTimeoutSeconds": self.hook_heartbeat_s,
                "agentHeartbeatEverySeconds": round(self.hook_heartbeat_s * HEARTBEAT_SHARE, 1),
                "globalTimeoutSeconds": self.global_timeout_s,
                "deadAgentHoldsNodeSeconds": self.hook_heartbeat_s,
            },
            "spot": {
                "noticeSeconds": SPOT_NOTICE_S,
                "drainSeconds": SPOT_NOTICE_S - agent_constants.DRAIN_RESERVE_S,
                "reserveSeconds": agent_constants.DRAIN_RESERVE_S,
                "longerRequestsCut": "a request still running at the notice's time less the reserve",
            },
        }


@dataclass(frozen=True)
class PoolTimings:
    readiness: ReadinessBudget
    dead_node: DeadNodeBudget
    drain: DrainBudget

    def figures(self) -> dict[str, Any]:
        return {
            "ready": self.readiness.figures(),
            "dead": self.dead_node.figures(),
            "leave": self.drain.figures(),
        }


def readiness_budget(pool: GpuPoolConfig, model_gib: float | None) -> ReadinessBudget:
    slowest = min(pool.instance_types, key=lambda t: GPU_BASELINE_GBPS[t])
    if model_gib is None:
        smallest = min(pool.instance_types, key=lambda t: _gpu_memory_gib(t))
        model_gib, source = float(_gpu_memory_gib(smallest)), f"at most the GPU memory of {smallest}"
    else:
        source = "modelStore.models[].sizeGib"
    return ReadinessBudget(
        model_gib=model_gib,
        model_size_source=source,
        store_gbps=GPU_BASELINE_GBPS[slowest],
        slowest_type=slowest,
        boot_s=BOOT_ALLOWANCE_S,
        engine_start_s=ENGINE_START_ALLOWANCE_S[pool.engine],
    )


def pool_timings(pool: GpuPoolConfig, *, model_gib: float | None, request_timeout_s: int) -> PoolTimings:
    return PoolTimings(
        readiness=readiness_budget(pool, model_gib),
        dead_node=DeadNodeBudget(),
        drain=DrainBudget(request_timeout_s=request_timeout_s),
    )


def _gpu_memory_gib(instance_type: str) -> int:
    spec = GPU_INSTANCE_TYPES[instance_type]
    return spec.gpus * spec.gpu_memory_gib
