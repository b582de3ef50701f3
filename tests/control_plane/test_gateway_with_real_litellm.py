"""The gateway as the prod stack renders it, run with the real LiteLLM proxy (the version the gateway image
pins) while its database cannot be reached: the health Route53 probes stays 200, requests keep being
served, and the public listener's rules refuse LiteLLM's admin routes.

What runs: `fleet plan --stack prod`'s rendering (config file, container commands and environments,
listener rules); LiteLLM with that config, flags and environment; the region-health sidecar from its
rendered code and environment; a real llama.cpp server as the model backend (the rendered config's OpenAI
deployment, pointed at it the way LiteLLM reads an OpenAI base URL from the environment). What stands in:
the Prisma client behind an unreachable database (testkit), and the load balancer, whose rendered rules
are applied here as an ALB applies them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from testkit.litellm_proxy import OFFLINE_ENV, LiteLLMProxy, run_litellm, running_litellm

from components.core.catalog.resource_types import (
    AWS_PROVIDER,
    ECS_TASK_DEFINITION,
    LISTENER,
    LISTENER_RULE,
    S3_OBJECT,
    TARGET_GROUP,
)
from fleet.harness import Rendering
from fleet.harness import render as harness_render
from fleet.stackfile import load_stack
from node_image.agent.tests.agent_testkit.net import free_port, wait_for
from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama

REGION = "us-east-1"
PROJECT_DIR = Path(__file__).resolve().parents[2]
LLAMA_SERVER = PROJECT_DIR / "node_image" / "agent" / "tests" / "agent_testkit" / "llama_server.py"
MASTER_KEY = "sk-test-master-key-0123456789"


@dataclass(frozen=True)
class Gateway:
    proxy: LiteLLMProxy
    region_health_url: str
    rendering: Rendering
    backend_env: dict[str, str]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def containers(rendering: Rendering) -> dict[str, dict[str, Any]]:
    provider = rendering.one(AWS_PROVIDER, f"aws-{REGION}").urn
    (task,) = [t for t in rendering.of_type(ECS_TASK_DEFINITION) if t.provider == provider]
    return {c["name"]: c for c in json.loads(task.inputs["containerDefinitions"])}


def gateway_env(container: dict[str, Any], backend_env: dict[str, str]) -> dict[str, str]:
    """The rendered container's environment as the task has it, on this machine: its plain values (not the
    S3 location: the config file is given directly), and its secrets as test values."""
    env = {
        e["name"]: e["value"] for e in container["environment"] if not e["name"].startswith("LITELLM_CONFIG_")
    }
    secrets = {s["name"]: "sk-test-provider-key" for s in container["secrets"]}
    secrets["LITELLM_MASTER_KEY"] = MASTER_KEY
    secrets["LITELLM_SALT_KEY"] = "test-salt-key-0123456789abcdef0123456789"
    secrets["REDIS_PASSWORD"] = "redis-test-token-0123"
    del secrets["DATABASE_URL"]  # the testkit points it at a port nothing answers
    # Redis unreachable too: LiteLLM opens a circuit breaker and keeps serving.
    env.update(REDIS_HOST="127.0.0.1", REDIS_PORT=str(closed_port()))
    return {**env, **secrets, **backend_env}


def cli_args(container: dict[str, Any]) -> list[str]:
    """The rendered command, less what the testkit sets itself (port, workers)."""
    args, command = [], list(container["command"])
    while command:
        flag = command.pop(0)
        if flag in ("--port", "--num_workers"):
            command.pop(0)
            continue
        args.append(flag)
    return args


@pytest.fixture(scope="module")
def rendering() -> Rendering:
    return harness_render(load_stack(PROJECT_DIR, "prod"))


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenAI-compatible model server: llama.cpp with a tiny model."""
    model = write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny.gguf")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(LLAMA_SERVER), "-m", str(model), "-a", "tiny", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/health", timeout=1).status_code == 200, 120, "llama.cpp to serve")
        yield f"{url}/v1"
    finally:
        process.terminate()
        process.wait(20)


@contextlib.contextmanager
def region_health_sidecar(
    rendering: Rendering, gateway_port: int, backend_env: dict[str, str]
) -> Iterator[str]:
    """The sidecar as the task runs it: its rendered entry point and environment (its port and the
    gateway's address on this machine)."""
    sidecar = containers(rendering)["region-health"]
    env = {e["name"]: e["value"] for e in sidecar["environment"]}
    port = free_port()
    env.update(
        REGION_HEALTH_PORT=str(port),
        GATEWAY_LIVENESS_URL=f"http://127.0.0.1:{gateway_port}/health/liveliness",
        REFRESH_SECONDS="0.5",
        **backend_env,
    )
    entry = sidecar["entryPoint"]
    assert entry[0] == "python3"
    process = subprocess.Popen([sys.executable, *entry[1:]], env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/fleet/live", timeout=1).status_code == 200, 60, "the sidecar")
        yield f"{url}/fleet/region-health"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def gateway(rendering: Rendering, backend: str) -> Iterator[Gateway]:
    config_object = next(
        o for o in rendering.of_type(S3_OBJECT) if o.name == f"control-plane-{REGION}-litellm-config"
    )
    config = yaml.safe_load(config_object.inputs["content"])
    container = containers(rendering)["gateway"]
    backend_env = {"OPENAI_API_BASE": backend}
    with (
        running_litellm(
            config, args=cli_args(container), env=gateway_env(container, backend_env), database="unreachable"
        ) as proxy,
        region_health_sidecar(rendering, proxy.port, backend_env) as health,
    ):
        yield Gateway(proxy, health, rendering, backend_env)


def test_the_health_route53_probes_answers_200_while_the_database_is_unreachable(gateway: Gateway):
    answer = wait_for(
        lambda: (r := httpx.get(gateway.region_health_url, timeout=5)).status_code == 200 and r,
        30,
        "region health to pass",
    )
    body = answer.json()
    assert body["gateway"] is True and body["fresh"] is True
    # The OpenAI deployment reaches the real backend; the other providers are out of reach offline.
    reached = {name for name, ok in body["backends"].items() if ok}
    assert reached == {"gpt-4o-mini/openai-gpt-4o-mini"}
    # LiteLLM itself knows its database is gone, and (allow_requests_on_db_unavailable) stays ready.
    readiness = httpx.get(f"{gateway.proxy.base_url}/health/readiness", timeout=10)
    assert (readiness.status_code, readiness.json()) == (200, {"status": "healthy", "db": "disconnected"})
    assert httpx.get(f"{gateway.proxy.base_url}/health/liveliness", timeout=5).status_code == 200


def test_requests_are_served_while_the_database_is_unreachable(gateway: Gateway):
    answer = httpx.post(
        f"{gateway.proxy.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] is not None


def test_the_pinned_version_serves_a_key_it_cannot_verify_while_the_database_is_down(gateway: Gateway):
    """What allow_requests_on_db_unavailable costs (README: the gateway's database): LiteLLM 1.104.0 gives a
    key it cannot look up a restricted INTERNAL_USER identity and serves it."""
    answer = httpx.post(
        f"{gateway.proxy.base_url}/v1/chat/completions",
        headers={"Authorization": "Bearer sk-not-a-key-anyone-issued"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


def test_without_a_backend_the_region_cannot_serve(gateway: Gateway):
    dead = {"OPENAI_API_BASE": f"http://127.0.0.1:{closed_port()}/v1"}
    with region_health_sidecar(gateway.rendering, gateway.proxy.port, dead) as url:
        # Until its first round of checks ends the sidecar answers 503 for a stale snapshot that says no
        # gateway: wait for a verdict on checks that found LiteLLM live.
        answer = wait_for(
            lambda: (r := httpx.get(url, timeout=5)).json()["fresh"] and r.json()["gateway"] and r,
            60,
            "a round of checks that found the gateway live",
        )
    assert answer.status_code == 503
    assert not any(answer.json()["backends"].values())


# --- the public listener ------------------------------------------------------------------------------------


def alb_matches(pattern: str, path: str) -> bool:
    """An ALB path pattern: case-sensitive, the whole path, `*` any characters, `?` exactly one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, path) is not None


def listener_routes(rendering: Rendering, path: str) -> str:
    """Where the rendered HTTPS listener sends `path`: a target group's ARN, or its default action's status."""
    listener = rendering.one(LISTENER, f"control-plane-{REGION}-https")
    rules = sorted(
        (r for r in rendering.of_type(LISTENER_RULE) if r.inputs["listenerArn"] == listener.outputs["arn"]),
        key=lambda r: r.inputs["priority"],
    )
    for rule in rules:
        (condition,) = rule.inputs["conditions"]
        if any(alb_matches(p, path) for p in condition["pathPattern"]["values"]):
            (action,) = rule.inputs["actions"]
            return action["targetGroupArn"]
    (default,) = listener.inputs["defaultActions"]
    return f"{default['type']} {default['fixedResponse']['statusCode']}"


def litellm_admin_routes() -> list[str]:
    """LiteLLM's own lists of its management, UI and admin-only routes (placeholders filled in), less the
    OpenAI-compatible API routes the UI also calls (`/models`)."""
    code = (
        "import json; from litellm.proxy._types import LiteLLMRoutes as R; "
        "admin = {*R.management_routes.value, *R.ui_routes.value, *R.master_key_only_routes.value}; "
        "print(json.dumps(sorted(admin - set(R.openai_routes.value))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **OFFLINE_ENV},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    routes = json.loads(out.strip().splitlines()[-1])
    return [re.sub(r"\{[^}]*\}", "x", route) for route in routes] + ["/ui", "/ui/", "/ui/login"]


def test_the_public_listener_refuses_every_admin_route_and_forwards_the_api(gateway: Gateway):
    rendering = gateway.rendering
    admin = litellm_admin_routes()
    assert len(admin) > 50 and "/key/generate" in admin and "/v1/agents" in admin
    forwarded = [
        route for route in admin if not listener_routes(rendering, route).startswith("fixed-response")
    ]
    assert forwarded == []
    assert {listener_routes(rendering, r) for r in admin} == {"fixed-response 404"}
    gateway_group = rendering.one(TARGET_GROUP, f"control-plane-{REGION}-tg").outputs["arn"]
    for route in ("/v1/chat/completions", "/chat/completions", "/v1/models", "/v1/embeddings"):
        assert listener_routes(rendering, route) == gateway_group
    # It is the listener that refuses them: LiteLLM itself answers these routes.
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    for route in ("/key/list", "/ui/", "/model/info"):
        assert (
            httpx.get(f"{gateway.proxy.base_url}{route}", headers=headers, timeout=30).status_code != 404
        ), route


def test_the_migrations_give_up_quickly_so_the_server_starts(rendering: Rendering):
    """The task's `migrate` container, as rendered: with the writer unreachable it exits (the server waits
    for it to complete, success or not)."""
    migrate = containers(rendering)["migrate"]
    config = yaml.safe_load(
        next(o for o in rendering.of_type(S3_OBJECT) if o.name.startswith(f"control-plane-{REGION}")).inputs[
            "content"
        ]
    )
    result = run_litellm(
        config,
        args=migrate["command"],
        env=gateway_env(migrate, {}),
        database="unreachable",
        timeout=300,
    )
    assert result.returncode != 0
    assert "P1001" in result.stdout + result.stderr
