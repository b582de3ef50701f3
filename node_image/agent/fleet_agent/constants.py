"""Every period, grace, threshold and well-known value the agent uses, in one place.

Config defaults point here, so changing a default is a one-line change that the tests and the
benches see at once. Seconds unless the name says otherwise.
"""

from __future__ import annotations

AGENT_NAME = "fleet-agent"
DEFAULT_CONFIG_PATH = "/etc/fleet-agent/agent.toml"
ENV_PREFIX = "FLEET_AGENT__"  # FLEET_AGENT__ENGINE__KIND=vllm overrides [engine] kind
ENV_API_KEY = "FLEET_AGENT_API_KEY"

# --- Probes -------------------------------------------------------------------------------------
# Faster than Kubernetes' defaults (10 s period, threshold 3) because the load balancer that reads
# /readyz has its own period on top, and a wedged engine should be out of rotation within 15 s.
ENGINE_HEALTH_PERIOD_S = 2.0
ENGINE_HEALTH_TIMEOUT_S = 1.0
ENGINE_HEALTH_FAILURE_THRESHOLD = 3
MODEL_CHECK_PERIOD_S = 5.0
MODEL_CHECK_TIMEOUT_S = 5.0
MODEL_PRELOAD_TIMEOUT_S = 900.0  # a 70B model from a cold JuiceFS cache takes minutes
CANARY_PERIOD_S = 30.0
CANARY_TIMEOUT_S = 15.0
CANARY_FAILURE_THRESHOLD = 2
GPU_CHECK_PERIOD_S = 5.0
PROGRESS_CHECK_PERIOD_S = 1.0
# Requests waiting and no token produced for this long means the engine is wedged.
PROGRESS_WINDOW_S = 20.0
# Degraded for a wedge this long, the engine is restarted (spawn mode or attach with restart_command).
WEDGE_RESTART_AFTER_S = 8.0
# A model load longer than this is a failed start (SkyServe's initial grace is 1200 s).
STARTUP_TIMEOUT_S = 1200.0

# --- Supervisor ---------------------------------------------------------------------------------
RESTART_BACKOFF_INITIAL_S = 1.0
RESTART_BACKOFF_MAX_S = 60.0
# An engine up and healthy this long has its backoff reset.
RESTART_BACKOFF_RESET_AFTER_S = 120.0
CRASH_LOOP_RESTARTS = 3
CRASH_LOOP_WINDOW_S = 300.0
ENGINE_STOP_GRACE_S = 15.0  # a drain's stop: SIGTERM, then SIGKILL after this
# A restart's stop: the engine is wedged or dead, its requests are lost either way, and a wedged
# process seldom honours SIGTERM, so it gets little time before SIGKILL.
ENGINE_RESTART_GRACE_S = 3.0

# --- Proxy --------------------------------------------------------------------------------------
RETRY_AFTER_S = 5  # what a 503 tells the client (or the gateway) to wait
MAX_REQUEST_BODY_BYTES = 32 * 1024 * 1024
UPSTREAM_CONNECT_TIMEOUT_S = 5.0
# Generation may pause between tokens (long prefill, a queue); the progress check, not a read
# timeout, is what decides that an engine is wedged.
UPSTREAM_READ_TIMEOUT_S = 600.0
UPSTREAM_MAX_CONNECTIONS = 512
# A stream that has begun and then gets no byte from the engine for this long is broken off, visibly to
# the client (an error event, then the connection dropped). Longer than any pause a healthy engine makes
# between tokens (vLLM recomputing a preempted request, a long prefill batched in), and longer than the
# progress check's wedge restart (PROGRESS_WINDOW_S + WEDGE_RESTART_AFTER_S), which ends a stream of a
# wedged engine first; this catches one stream stalled while others flow, or an engine not restarted.
STREAM_STALL_TIMEOUT_S = 60.0
# A whole (non-streaming) answer up to this size is read from the engine before its head is passed on, so
# an engine that breaks it off still gets the client a 502, not a 200 with half a body.
BUFFERED_RESPONSE_MAX_BYTES = 8 * 1024 * 1024
REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_MAX_LEN = 128

# --- Preemption ---------------------------------------------------------------------------------
AWS_IMDS_URL = "http://169.254.169.254"
# AWS's node-termination-handler polls every 2 s; half a second keeps notice-to-unready under 1 s
# at four requests a second to a link-local service.
AWS_POLL_PERIOD_S = 0.5
AWS_TOKEN_TTL_S = 21600
# Auto Scaling target lifecycle states (IMDS autoscaling/target-lifecycle-state) that take the instance
# out of service: terminated (scale-in, instance refresh, replacement) or returned to a warm pool.
AWS_LEAVING_LIFECYCLE_STATES: frozenset[str] = frozenset(
    {"Terminated", "Warmed:Stopped", "Warmed:Hibernated", "Warmed:Running", "Warmed:Terminated"}
)
GCE_METADATA_URL = "http://metadata.google.internal"
GCE_WAIT_TIMEOUT_S = 60  # wait_for_change hangs this long, then the watch is renewed
GCE_PREEMPTED_GRACE_S = 25.0  # Spot VMs get ~30 s from soft-off to hard-off
METADATA_TIMEOUT_S = 2.0
METADATA_ERROR_BACKOFF_S = 5.0

# --- Drain --------------------------------------------------------------------------------------
DRAIN_TIMEOUT_S = 90.0  # longest drain on SIGTERM; systemd's TimeoutStopSec must exceed it
# Longest drain when the Auto Scaling group takes the node (scale-in, instance refresh, replacement); a
# pool's user data sets it from the gateway's request timeout, so a request that may last that long is
# never cut. The lifecycle hook's heartbeats keep the group waiting.
LIFECYCLE_DRAIN_TIMEOUT_S = DRAIN_TIMEOUT_S
# Kept free before a notice's deadline for the drained-hooks and the engine stop.
DRAIN_RESERVE_S = 15.0
HOOK_TIMEOUT_S = 5.0
HOOK_ATTEMPTS = 3
# The AWS drained-hook asks again this often while Auto Scaling has no lifecycle action open for the
# instance yet (a spot notice reaches the node and the group at about the same time).
LIFECYCLE_ACTION_RETRY_S = 2.0
DRAIN_POLL_S = 0.05
# A lifecycle action is kept open with a heartbeat this often, as a share of the hook's heartbeat timeout:
# two heartbeats may fail before the group acts on the hook's default result.
LIFECYCLE_HEARTBEAT_SHARE = 1 / 3

# --- Load balancer ------------------------------------------------------------------------------
# A leaving node (spot notice, scale-in, refresh) deregisters itself from its target groups, then keeps
# serving what still arrives for this long before it refuses work: ELB's API answers at once, its load
# balancer nodes stop routing to the target a little later (not documented; measure it), and a load
# balancer that learns only from the readiness check needs its unhealthy threshold x interval (2 x 5 s
# on the pools' target groups). Counted from the deregistration; without one, from readiness off.
LB_LEAVE_S = 10.0

# --- Launch -------------------------------------------------------------------------------------
# A node not ready this long after the agent started never will be: the Auto Scaling launch lifecycle
# action is abandoned, and the group replaces the node. Cold model store, weights and engine start.
LAUNCH_READY_TIMEOUT_S = STARTUP_TIMEOUT_S

# --- Scaling -----------------------------------------------------------------------------------
# Scale-in protection is released once no request has been in flight for this long: one protect and one
# release call per busy spell (not per request) while a node stays busy, and a node that is idle only
# between two requests is not offered to a scale-in.
SCALE_IN_RELEASE_AFTER_S = 30.0
# A group above its desired capacity this long has waited enough for an idle node: protection yields (a busy
# node taken then drains first). Two minutes of extra GPU against a scale-in that never comes while traffic
# keeps every node busy (bench/autoscale.py).
SCALE_IN_YIELD_AFTER_S = 120.0
SCALE_IN_GROUP_CHECK_S = 30.0  # DescribeAutoScalingGroups this often, per node
# Windows of metrics kept for the next PutMetricData while CloudWatch refuses or cannot be reached (one
# minute at the default period); older ones are dropped and counted.
CLOUDWATCH_PENDING_WINDOWS = 6

# --- Kubernetes ---------------------------------------------------------------------------------
# In a pod the node is the pod: its name (the downward API, set under these names by the workload's
# manifest) is the node id, and the kubelet's SIGTERM, after the pod's preStop hook, is the drain signal.
# The kubelet sets KUBERNETES_SERVICE_HOST in every container.
K8S_SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"
K8S_POD_NAME_ENV = "FLEET_POD_NAME"
K8S_POD_NAMESPACE_ENV = "FLEET_POD_NAMESPACE"
K8S_NODE_NAME_ENV = "FLEET_NODE_NAME"

# --- Heartbeat ----------------------------------------------------------------------------------
HEARTBEAT_PERIOD_S = 5.0
HEARTBEAT_TTL_S = 15.0  # three missed beats and the record is gone: the node went silent
HEARTBEAT_KEY_PREFIX = "fleet"
REDIS_TIMEOUT_S = 1.0

# --- GPU ----------------------------------------------------------------------------------------
# Application-level XIDs: a user program's fault, not the GPU's. NVIDIA's k8s-device-plugin ignores
# the same set; every other XID reported as critical condemns the GPU until the node is replaced.
IGNORED_XIDS: frozenset[int] = frozenset({13, 31, 43, 45, 68, 109})
XID_DESCRIPTIONS: dict[int, str] = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "preemptive cleanup",
    48: "double-bit ECC error",
    63: "row remapping recorded",
    64: "row remapping failed",
    68: "video processor exception",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    109: "context switch timeout",
    119: "GSP RPC timeout",
    120: "GSP error",
}
# The model counts as on the GPU when the engine's processes hold at least this share of its weights'
# bytes in GPU memory (llama.cpp keeps its token embeddings in host memory; KV cache and buffers come on
# top). A CPU fallback holds nothing, or only a CUDA context of a few hundred MiB.
MODEL_ON_GPU_MIN_SHARE = 0.5
XID_FOR_DOUBLE_BIT_ECC_EVENT = 48  # NVML reports these as their own event type
XID_WAIT_TIMEOUT_MS = 1000  # the XID thread wakes this often to see whether it should stop
# Clock-event reasons that mean the hardware is protecting itself (nvmlClocksEventReason*).
THROTTLE_HW_SLOWDOWN = 0x08
THROTTLE_SW_THERMAL = 0x20
THROTTLE_HW_THERMAL = 0x40
THROTTLE_HW_POWER_BRAKE = 0x80
CRITICAL_THROTTLE_REASONS = THROTTLE_HW_SLOWDOWN | THROTTLE_HW_THERMAL | THROTTLE_HW_POWER_BRAKE
THROTTLE_NAMES: dict[int, str] = {
    THROTTLE_HW_SLOWDOWN: "hw_slowdown",
    THROTTLE_SW_THERMAL: "sw_thermal",
    THROTTLE_HW_THERMAL: "hw_thermal",
    THROTTLE_HW_POWER_BRAKE: "hw_power_brake",
}

# --- Model store (JuiceFS) ----------------------------------------------------------------------
# Where a node mounts the store's volume (read-only), and where JuiceFS keeps its block cache: under the
# model directory, which fleet-model-cache puts on the instance store (local NVMe) when there is one.
STORE_MOUNT_POINT = "/mnt/fleet-models"
STORE_CACHE_DIR = "/var/lib/fleet-models/juicefs-cache"
STORE_CACHE_SIZE_MIB = 200 * 1024
STORE_FREE_SPACE_RATIO = 0.1  # JuiceFS stops caching when the cache's disk has less free than this
# A read-only volume changes only when `fleet models sync` writes a new model version: metadata may be
# cached for long (JuiceFS's own advice for read-only mounts), so the engine's many small opens never
# wait on the metadata Redis.
STORE_METADATA_CACHE_S = 3600.0
STORE_METRICS_ADDRESS = "127.0.0.1:9567"  # the JuiceFS client's Prometheus endpoint
STORE_CHECK_PERIOD_S = 2.0
STORE_CHECK_TIMEOUT_S = 2.0  # a mount whose daemon does not answer this fast is stale
STORE_MOUNT_TIMEOUT_S = 30.0  # `juicefs mount -d` returns once the volume answers
STORE_ATTACH_GRACE_S = 60.0  # attach mode: how long the host's mount unit may take before a remount
STORE_REMOUNT_BACKOFF_S = 1.0  # doubles per failed remount, up to the max
STORE_REMOUNT_BACKOFF_MAX_S = 30.0
STORE_WARMUP_THREADS = 16
STORE_WARMUP_POLL_S = 2.0  # how often the warmup's progress is read (`juicefs warmup --check`)
# On a VM the host's unit mounts the store (`fleet-agent mount-store`); the agent may restart it (polkit).
STORE_UNIT = "fleet-model-store.service"
STORE_REMOUNT_COMMAND = ("systemctl", "restart", STORE_UNIT)

# --- Engines ------------------------------------------------------------------------------------
DEFAULT_ENGINE_PORTS = {"vllm": 8000, "ollama": 11434, "llamacpp": 8081}
DEFAULT_SERVING_PORT = 8080
# What a load balancer's health check reads: 200 only while the node should get traffic.
READINESS_PATH = "/readyz"
LIVENESS_PATH = "/livez"
CANARY_PROMPT = "ping"
