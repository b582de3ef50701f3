"""What runs in a serving pod, derived from the agent's own config: the agent's config file (built and
validated with the agent's model), and every timing the manifests carry (probes, preStop, grace period,
progress deadline, the load balancer's health check and deregistration).

One source of truth: the agent's settings (`fleet_agent.config`, whose defaults are `fleet_agent.constants`)
decide how fast it answers, how long it may take to start and to drain; the manifests only translate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import tomli_w

from components.kubernetes.config import KubernetesClusterConfig, ServedModelConfig
from components.model_store import MountSpec
from fleet_agent import constants as agent_constants
from fleet_agent.config import AgentConfig

AGENT_CONFIG_DIR = "/etc/fleet-agent"
AGENT_CONFIG_FILE = "agent.toml"
AGENT_CONFIG_PATH = f"{AGENT_CONFIG_DIR}/{AGENT_CONFIG_FILE}"
API_KEY_DIR = "/etc/fleet-agent-secrets"
API_KEY_FILE = "api-key"
SERVING_PORT = agent_constants.DEFAULT_SERVING_PORT
PORT_NAME = "http"
STARTUP_PATH = "/startupz"
READINESS_PATH = agent_constants.READINESS_PATH
LIVENESS_PATH = agent_constants.LIVENESS_PATH
METRICS_PATH = "/metrics"
# The fleet user the image runs as (node_image/recipe/steps/base.sh), and its home: writable through an
# emptyDir, as are /tmp and /dev/shm, so the root filesystem stays read-only for both engines (vLLM writes
# its compile and Triton caches under the home, Ollama its key; /dev/shm carries NCCL between GPUs).
FLEET_UID = 10001
FLEET_HOME = "/var/lib/fleet-agent"
HF_HOME = f"{FLEET_HOME}/hf"

# The internal load balancer's health check on /readyz, as the GPU pools' target groups check it.
LB_HEALTH_INTERVAL_S = 10
LB_HEALTH_TIMEOUT_S = 5
LB_HEALTHY_THRESHOLD = 2
LB_UNHEALTHY_THRESHOLD = 2
# After the drain the process still closes its server and clients before it exits.
EXIT_MARGIN_S = 10


def _seconds(value: float) -> int:
    """A Kubernetes duration field takes whole seconds, at least 1; never round a bound down."""
    return max(1, math.ceil(value))


@dataclass(frozen=True)
class ProbeTiming:
    path: str
    period_s: int
    timeout_s: int
    failure_threshold: int

    @property
    def window_s(self) -> int:
        """How long the probe may fail before the kubelet acts."""
        return self.period_s * self.failure_threshold


@dataclass(frozen=True)
class PodTimings:
    """The manifests' timings, each derived from the agent's settings."""

    startup: ProbeTiming
    readiness: ProbeTiming
    liveness: ProbeTiming
    pre_stop_s: int
    drain_s: int  # the agent's drain deadline after SIGTERM
    grace_period_s: int
    progress_deadline_s: int

    @classmethod
    def of(cls, agent: AgentConfig) -> PodTimings:
        probes = agent.probes
        # The kubelet gives a start what the agent gives it: the engine healthy within startup_timeout_s,
        # then the model loaded within preload_timeout_s; /startupz turns 200 once the node was ready.
        start_window = probes.startup_timeout_s + probes.preload_timeout_s
        fast = _seconds(probes.health_period_s)
        startup = ProbeTiming(
            STARTUP_PATH, fast, _seconds(probes.health_timeout_s), math.ceil(start_window / fast)
        )
        # /readyz is already the agent's verdict over its own thresholds: one failure takes the pod out.
        readiness = ProbeTiming(READINESS_PATH, fast, _seconds(probes.health_timeout_s), 1)
        # An agent silent for as long as the fleet calls a node gone (its heartbeat TTL) is restarted.
        beat = _seconds(agent.heartbeat.period_s)
        liveness = ProbeTiming(LIVENESS_PATH, beat, beat, math.ceil(agent.heartbeat.ttl_s / beat))
        # The pod keeps serving while the load balancer stops sending it new connections (as long as its
        # health check takes to see a target gone), then the kubelet's SIGTERM starts the agent's drain.
        pre_stop = LB_HEALTH_INTERVAL_S * LB_UNHEALTHY_THRESHOLD
        drain = _seconds(agent.drain.timeout_s)
        return cls(
            startup=startup,
            readiness=readiness,
            liveness=liveness,
            pre_stop_s=pre_stop,
            drain_s=drain,
            grace_period_s=pre_stop + drain + EXIT_MARGIN_S,
            progress_deadline_s=startup.window_s + readiness.window_s,
        )


def store_table(spec: MountSpec, metadata_url: str) -> dict[str, Any]:
    """The agent's [model_store] in a pod: the JuiceFS CSI driver mounts the volume (attach mode, no
    remount command: the driver recovers its mount pod), the agent checks it and warms the model."""
    if spec.kind != "juicefs":
        raise ValueError(f"a Kubernetes pod mounts the JuiceFS store, not {spec.kind}")
    table: dict[str, Any] = {
        "volume": spec.volume,
        "meta_url": metadata_url,
        "mount_point": spec.mount_point,
        "mode": "attach",
        "model_dir": spec.path,
        "read_only": spec.read_only,
        "metadata_cache_s": float(spec.metadata_cache_s),
    }
    if spec.cache is not None:
        table |= {"cache_dir": spec.cache.directory, "cache_size_mib": spec.cache.size_mib}
    if spec.warmup is not None:
        table |= {"warmup": spec.warmup.enabled, "warmup_threads": spec.warmup.threads}
    return table


def agent_config(
    cluster: KubernetesClusterConfig, model: ServedModelConfig, spec: MountSpec, metadata_url: str | None
) -> AgentConfig:
    """The pod's agent config, validated by the agent's own model. The node id is not in it: the agent
    takes the pod's name from the downward API. Without `metadata_url` (known only once the store exists)
    the [model_store] table is left out: what the timings read does not depend on it."""
    engine: dict[str, Any] = {"kind": model.engine, "models": [model.model], "mode": "spawn"}
    if model.engine == "vllm":
        args = list(model.engine_args)
        if model.gpus > 1:
            args = ["--tensor-parallel-size", str(model.gpus), *args]
        engine |= {
            "args": args,
            "model_path": spec.model_dir,
            # Weights come from the store; the engine never reaches the Hub.
            "env": {"HF_HOME": HF_HOME, "HF_HUB_OFFLINE": "1"},
        }
    else:
        # Ollama reads the model from the store's read-only mount and must not prune it.
        engine["env"] = {"OLLAMA_MODELS": spec.model_dir, "OLLAMA_NOPRUNE": "1"}
    raw: dict[str, Any] = {
        "node": {"region": cluster.region, "pool": model.name, "accelerator": "gpu"},
        "engine": engine,
        "server": {
            "host": "0.0.0.0",
            "port": SERVING_PORT,
            "api_key_file": f"{API_KEY_DIR}/{API_KEY_FILE}",
        },
        "gpu": {"count": model.gpus},
        # The kubelet's SIGTERM is the drain signal; the machine's end reaches the pod as an eviction.
        "preemption": {"provider": "none"},
    }
    if metadata_url is not None:
        raw["model_store"] = store_table(spec, metadata_url)
    return AgentConfig.model_validate(raw)


def agent_toml(config: AgentConfig) -> str:
    """The config as the agent reads it: only what was set (the agent's defaults stay its own)."""
    return tomli_w.dumps(config.model_dump(mode="json", exclude_unset=True))
