"""A pool node's user data, decoded from the rendered launch template: cloud-init writes the agent's config,
the agent's own loader and `check-config` accept it, it names this pool's group, hook, secret and Redis,
holds no secret, and stays under EC2's 16 KB."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core.catalog.resource_types import (
    AUTOSCALING_GROUP,
    LAUNCH_TEMPLATE,
    LIFECYCLE_HOOK,
    LOAD_BALANCER,
    REDIS_REPLICATION_GROUP,
    SECRET,
    SECRET_VERSION,
    TARGET_GROUP,
)
from components.gpu_pools.timings import DrainBudget
from components.gpu_pools.user_data import (
    AGENT_CONFIG_PATH,
    SECRET_DIR,
    USER_DATA_LIMIT_BYTES,
)
from fleet.esc import STANDIN_PREFIX
from fleet.harness import Rendering, is_secret
from fleet_agent.config import AgentConfig, AwsLifecycleHook, load_config
from fleet_agent.main import run_cli

POOLS = ["llama-8b", "qwen-14b", "llama-8b-west"]
UNIT = Path(__file__).resolve().parents[2] / "node_image" / "systemd" / "fleet-agent.service"


def in_pool(rendering: Rendering, pool: str, resource_type: str, suffix: str = ""):
    component = rendering.one("inference-fleet:gpu_pools:GpuNodePool", f"pool-{pool}")
    (found,) = [
        r for r in rendering.children(component) if r.type == resource_type and r.name.endswith(suffix)
    ]
    return found


def user_data_text(rendering: Rendering, pool: str) -> str:
    template = in_pool(rendering, pool, LAUNCH_TEMPLATE)
    return base64.b64decode(template.inputs["userData"], validate=True).decode()


def written_config(text: str) -> str:
    assert text.startswith("#cloud-config\n")
    document: dict[str, Any] = yaml.safe_load(text)
    # The agent's config (and, on Ollama nodes, the host Ollama's environment file: tests/model_store).
    (entry,) = [e for e in document["write_files"] if e["path"] == AGENT_CONFIG_PATH]
    assert document["package_update"] is False and document["package_upgrade"] is False
    return entry["content"]


@pytest.mark.parametrize("pool", POOLS)
def test_the_user_data_is_the_agents_config_and_the_agent_accepts_it(
    render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool: str
) -> None:
    prod = render("prod")
    text = user_data_text(prod, pool)
    assert len(text.encode()) < USER_DATA_LIMIT_BYTES
    path = tmp_path / "agent.toml"
    path.write_text(written_config(text))
    # The agent's own loader (TOML, overrides, the model) reads it as a node will ...
    config = load_config(path, environ={}, load_keys=False)
    assert isinstance(config, AgentConfig)
    # ... and its check-config accepts it once fetch-secrets has written the key file.
    key_file = tmp_path / "api-key"
    key_file.write_text("k" * 32 + "\n")
    monkeypatch.setenv("FLEET_AGENT__SERVER__API_KEY_FILE", str(key_file))
    assert run_cli(["check-config", "--config", str(path)]) == 0

    group = in_pool(prod, pool, AUTOSCALING_GROUP)
    hook = in_pool(prod, pool, LIFECYCLE_HOOK, "drain")
    (drained,) = config.drain.hooks
    assert isinstance(drained, AwsLifecycleHook)
    assert (drained.group_name, drained.hook_name) == (group.physical_name, hook.inputs["name"])
    # The agent keeps the action open as long as the hook's heartbeat timeout requires ...
    assert drained.heartbeat_timeout_s == hook.inputs["heartbeatTimeout"]
    # ... while a drain the group waits on lets a request run for the gateway's request timeout (the pool's
    # load balancer's idle timeout is that timeout) ...
    balancer = in_pool(prod, pool, LOAD_BALANCER)
    budget = DrainBudget(request_timeout_s=balancer.inputs["idleTimeout"])
    assert config.drain.lifecycle_timeout_s == budget.lifecycle_drain_s > balancer.inputs["idleTimeout"]
    # A new node completes the group's launch hook once ready, and abandons itself past the hook's budget.
    launch = in_pool(prod, pool, LIFECYCLE_HOOK, "ready")
    (launched,) = config.launch.hooks
    assert (launched.group_name, launched.hook_name) == (group.physical_name, launch.inputs["name"])
    assert launched.heartbeat_timeout_s == launch.inputs["heartbeatTimeout"] == config.launch.ready_timeout_s
    # ... and it leaves the pool's target group before it refuses work.
    target_group = in_pool(prod, pool, TARGET_GROUP)
    assert config.load_balancer.aws_target_group_arns == [target_group.outputs["arn"]]
    assert config.load_balancer.target_port in (None, target_group.inputs["port"])
    assert config.server.port == target_group.inputs["port"]
    secret = in_pool(prod, pool, SECRET)
    assert config.secrets.aws_secret_id == secret.outputs["arn"]
    region = config.node.region
    redis = next(
        r for r in prod.of_type(REDIS_REPLICATION_GROUP) if r.name == f"control-plane-{region}-redis"
    )
    # The nodes' own ACL user (its password from the node secret), not the gateway's token.
    host = redis.outputs["primaryEndpointAddress"]
    assert config.heartbeat.redis_url == f"rediss://fleet-node@{host}:6379/0"
    assert config.preemption.provider == "aws"
    assert config.node.pool == pool and config.node.accelerator == "gpu"


def test_each_engine_gets_its_own_mode(render) -> None:
    prod = render("prod")
    configs = {
        pool: load_config_text(written_config(user_data_text(prod, pool)))
        for pool in ("llama-8b", "qwen-14b")
    }
    vllm, ollama = configs["llama-8b"].engine, configs["qwen-14b"].engine
    assert (vllm.kind, vllm.mode, vllm.models) == ("vllm", "spawn", ["meta-llama/Llama-3.1-8B-Instruct"])
    assert vllm.env == {"HF_HOME": "/var/lib/fleet-models/hf", "HF_HUB_OFFLINE": "1"}
    # The pool's concurrency first (scaling.concurrency, default 32 for vLLM), then the pool's engineArgs.
    assert vllm.args[:4] == ["--max-num-seqs", "32", "--max-model-len", "8192"]
    assert (vllm.parallel, ollama.parallel) == (32, 4)
    assert (ollama.kind, ollama.mode, ollama.models) == ("ollama", "attach", ["qwen2.5:14b"])
    assert ollama.restart_command == ["systemctl", "restart", "ollama.service"]


def load_config_text(text: str) -> AgentConfig:
    return AgentConfig.model_validate(tomllib.loads(text))


def test_no_secret_is_in_the_user_data_and_the_secret_files_are_the_units_tmpfs(render) -> None:
    prod = render("prod")
    for pool in POOLS:
        text = user_data_text(prod, pool)
        assert STANDIN_PREFIX not in text and "placeholder" not in text
        config = load_config_text(written_config(text))
        files = {str(p) for p in config.secrets.files.values()}
        assert str(config.server.api_key_file) in files
        assert str(config.heartbeat.redis_password_file) in files
        assert all(f.startswith(SECRET_DIR + "/") for f in files)
    # The unit gives the agent that directory (tmpfs, its own) and fetches before it checks the config.
    unit = UNIT.read_text()
    assert f"RuntimeDirectory={SECRET_DIR.rsplit('/', 1)[-1]}" in unit
    version = in_pool(prod, "llama-8b", SECRET_VERSION)
    assert is_secret(version.inputs["secretString"])  # the values go to Secrets Manager, marked secret
