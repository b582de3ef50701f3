"""A pool node's user data: cloud-init writes the agent's config, and nothing else happens at boot.

The config is built with the agent's own model (`fleet_agent.config.AgentConfig`): what the program
renders is validated by the code that will read it, so a key the agent does not know, or a value it
refuses, fails `fleet plan`, not a node at 3 a.m. Secrets are not in it: the agent fetches them from
Secrets Manager with the instance role (`fetch-secrets`, the unit's first ExecStartPre).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import tomli_w
import yaml

from components.core.elasticache import REDIS_PORT
from components.gpu_pools.config import CONCURRENCY_FLAG, GpuPoolConfig
from components.gpu_pools.scaling import agent_settings
from fleet_agent import constants as agent_constants
from fleet_agent.config import AgentConfig

# EC2 takes at most 16 KB of user data, before base64.
USER_DATA_LIMIT_BYTES = 16 * 1024
AGENT_CONFIG_PATH = agent_constants.DEFAULT_CONFIG_PATH
# The agent unit's RuntimeDirectory (tmpfs, 0700, the agent's user): where fetch-secrets writes.
SECRET_DIR = "/run/fleet-agent"
API_KEY_FILE = f"{SECRET_DIR}/api-key"
REDIS_PASSWORD_FILE = f"{SECRET_DIR}/redis-password"
# Keys of the pool's Secrets Manager secret (a JSON object).
API_KEY_SECRET_KEY = "apiKey"
REDIS_PASSWORD_SECRET_KEY = "redisPassword"
# The model cache (on the instance store when the node has one: fleet-model-cache.service).
MODEL_DIR = "/var/lib/fleet-models"
# Ollama runs as the host's unit on a VM; the agent attaches to it and may restart it (polkit rule).
OLLAMA_RESTART = ["systemctl", "restart", "ollama.service"]
# Read by the image's ollama.service (EnvironmentFile=-): where its models are.
OLLAMA_ENV_PATH = "/etc/fleet-agent/ollama.env"


@dataclass(frozen=True)
class NodeSettings:
    """What a node learns from the stack rather than from its pool's config."""

    region: str
    group_name: str
    hook_name: str
    secret_arn: str
    redis_host: str
    redis_user: str
    # The pool's target group: a leaving node deregisters itself from it before it refuses work.
    target_group_arn: str
    # How long a drain the group waits on (scale-in, refresh) may last: the pool's DrainBudget.
    lifecycle_drain_s: int
    # The termination hook's HeartbeatTimeout: the agent's heartbeats keep a long drain's action open.
    hook_heartbeat_timeout_s: int
    # The agent's [model_store] table (the pool's model in its region's store), from the store's MountSpec.
    model_store: dict[str, Any] | None = None
    # The launch hook, where the group declares one: the agent completes it once the node is ready.
    launch_hook_name: str | None = None
    launch_heartbeat_timeout_s: int | None = None
    launch_ready_timeout_s: int | None = None


def agent_config(pool: GpuPoolConfig, node: NodeSettings) -> AgentConfig:
    """The agent's config for a node of `pool`, validated by the agent's model."""
    # The node's concurrency is its engine's: the scaling's target and queue depend on it.
    engine: dict[str, Any] = {"kind": pool.engine, "models": [pool.model], "parallel": pool.concurrency}
    if pool.engine == "vllm":
        args = [CONCURRENCY_FLAG, str(pool.concurrency), *pool.engine_args]
        if pool.gpus_per_node > 1:
            args = ["--tensor-parallel-size", str(pool.gpus_per_node), *args]
        engine |= {
            "mode": "spawn",
            "args": args,
            # Weights come from the model store into the cache; the engine never reaches the Hub.
            "env": {"HF_HOME": f"{MODEL_DIR}/hf", "HF_HUB_OFFLINE": "1"},
        }
        if node.model_store is not None:
            engine["model_path"] = stored_model_dir(node.model_store)
    else:
        engine |= {"mode": "attach", "restart_command": OLLAMA_RESTART}
    raw: dict[str, Any] = {
        "node": {"region": node.region, "pool": pool.name, "accelerator": "gpu"},
        "engine": engine,
        "server": {
            "host": "0.0.0.0",
            "port": agent_constants.DEFAULT_SERVING_PORT,
            "api_key_file": API_KEY_FILE,
        },
        "gpu": {"count": pool.gpus_per_node},
        "drain": {
            "lifecycle_timeout_s": node.lifecycle_drain_s,
            "hooks": [
                {
                    "kind": "aws-lifecycle",
                    "hook_name": node.hook_name,
                    "group_name": node.group_name,
                    "heartbeat_timeout_s": node.hook_heartbeat_timeout_s,
                }
            ],
        },
        # Registered by the group on the agent's port; the agent leaves it first when the node goes away.
        "load_balancer": {"aws_target_group_arns": [node.target_group_arn]},
        # The group's capacity rebalancing answers a rebalance recommendation: it starts a replacement, then
        # terminates this node through its lifecycle hook, which is when the agent drains.
        "preemption": {"provider": "aws", "on_rebalance": "log"},
        "heartbeat": {
            # The nodes' own ACL user (not the gateway's): its password comes from the node secret.
            "redis_url": f"rediss://{node.redis_user}@{node.redis_host}:{REDIS_PORT}/0",
            "redis_password_file": REDIS_PASSWORD_FILE,
        },
        "secrets": {
            "aws_secret_id": node.secret_arn,
            "files": {API_KEY_SECRET_KEY: API_KEY_FILE, REDIS_PASSWORD_SECRET_KEY: REDIS_PASSWORD_FILE},
        },
    }
    if node.model_store is not None:
        raw["model_store"] = node.model_store
    if node.launch_hook_name is not None:
        hook: dict[str, Any] = {"kind": "aws-lifecycle", "hook_name": node.launch_hook_name}
        hook |= {"group_name": node.group_name, "heartbeat_timeout_s": node.launch_heartbeat_timeout_s}
        launch: dict[str, Any] = {"hooks": [hook]}
        if node.launch_ready_timeout_s is not None:
            launch["ready_timeout_s"] = node.launch_ready_timeout_s
        raw["launch"] = launch
    raw |= agent_settings(pool, node.group_name)
    return AgentConfig.model_validate(raw)


def stored_model_dir(store: dict[str, Any]) -> str:
    return f"{store['mount_point']}/{store['model_dir']}"


def ollama_environment(pool: GpuPoolConfig, node: NodeSettings) -> str:
    """The host Ollama unit's environment file: the requests it runs at once (the pool's concurrency); its
    models from the store's read-only mount, never pruned (Ollama prunes unused blobs at start, which a
    read-only mount refuses)."""
    lines = [f"OLLAMA_NUM_PARALLEL={pool.concurrency}"]
    if node.model_store is not None:
        lines += [f"OLLAMA_MODELS={stored_model_dir(node.model_store)}", "OLLAMA_NOPRUNE=1"]
    return "\n".join(lines) + "\n"


def agent_toml(config: AgentConfig) -> str:
    """The config as the agent reads it: only what was set (the agent's defaults stay its own)."""
    return tomli_w.dumps(config.model_dump(mode="json", exclude_unset=True))


def cloud_config(toml: str, ollama_env: str | None = None) -> str:
    contents = {AGENT_CONFIG_PATH: toml, **({OLLAMA_ENV_PATH: ollama_env} if ollama_env is not None else {})}
    files = [
        {"path": path, "owner": "root:root", "permissions": "0644", "content": content}
        for path, content in contents.items()
    ]
    document = {
        "write_files": files,
        # The image is complete: no package index refresh or upgrade at boot.
        "package_update": False,
        "package_upgrade": False,
    }
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False, width=1000)


def user_data(pool: GpuPoolConfig, node: NodeSettings) -> str:
    """The launch template's user data (base64), refused when over EC2's limit."""
    ollama_env = ollama_environment(pool, node) if pool.engine == "ollama" else None
    text = cloud_config(agent_toml(agent_config(pool, node)), ollama_env)
    size = len(text.encode())
    if size > USER_DATA_LIMIT_BYTES:
        raise ValueError(f"pool {pool.name}: user data is {size} bytes; EC2 takes {USER_DATA_LIMIT_BYTES}")
    return base64.b64encode(text.encode()).decode()
