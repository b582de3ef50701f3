"""The gateway as the prod stack renders it, run with the real LiteLLM proxy (the version the gateway image
pins) while the global writer cannot be reached and the region's own reader answers: keys are checked
against the reader (an unknown one refused), region health is a real completion through the gateway with
the sidecar's own key (own pools first, a serverless endpoint only as a weaker verdict), and the public
listener's rules refuse LiteLLM's admin routes.

What runs: `fleet plan --stack prod`'s rendering (config file, container commands and environments,
listener rules); LiteLLM with that config, flags and environment; the sidecar's key registration and the
sidecar itself from their rendered code and environment; a real PostgreSQL with LiteLLM's own schema as the
region's reader; a real llama.cpp server as the pool's node. What stands in: the Prisma client (over real
PostgreSQL connections, testkit), the pool's load balancer (forwarding, or answering 503/404 as an ALB does
with no ready node), the serverless providers (an OpenAI-compatible fake that checks its key), and the
public ALB, whose rendered rules are applied here as an ALB applies them. The test moves only addresses in
the rendered config, and shortens its cooldown so that one test's failures do not outlast it.
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
from testkit.fake_openai import FakeOpenAI
from testkit.litellm_database import add_key, create_litellm_database, key_models
from testkit.litellm_proxy import (
    OFFLINE_ENV,
    PRISMA_STAND_IN,
    PROJECT_ROOT,
    LiteLLMProxy,
    run_litellm,
    running_litellm,
)
from testkit.pool_balancer import FORWARD, PoolLoadBalancer
from testkit.postgres import Postgres, running_postgres

from components.control_plane.gateway_config import POOL_ORDER
from components.control_plane.region_health import probe_key
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
from node_image.agent.tests.agent_testkit.net import free_port, serving, wait_for
from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama

REGION = "us-east-1"
PROJECT_DIR = Path(__file__).resolve().parents[2]
LLAMA_SERVER = PROJECT_DIR / "fleet" / "sandbox" / "llama_server.py"
MASTER_KEY = "sk-test-master-key-0123456789"
PROVIDER_KEY = "sk-test-provider-key"
POOL = "llama-3.1-8b/pool/llama-8b"


@dataclass(frozen=True)
class Gateway:
    proxy: LiteLLMProxy
    region_health_url: str
    rendering: Rendering
    reader: Postgres
    pools: PoolLoadBalancer
    providers: FakeOpenAI


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def containers(rendering: Rendering) -> dict[str, dict[str, Any]]:
    provider = rendering.one(AWS_PROVIDER, f"aws-{REGION}").urn
    (task,) = [t for t in rendering.of_type(ECS_TASK_DEFINITION) if t.provider == provider]
    return {c["name"]: c for c in json.loads(task.inputs["containerDefinitions"])}


def rendered_config(rendering: Rendering) -> dict[str, Any]:
    config_object = rendering.one(S3_OBJECT, f"control-plane-{REGION}-litellm-config")
    return yaml.safe_load(config_object.inputs["content"])


def secret_values(container: dict[str, Any], database: dict[str, str]) -> dict[str, str]:
    """The container's secrets as the task has them, with test values; the database URLs as given."""
    values = {
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_SALT_KEY": "test-salt-key-0123456789abcdef0123456789",
        "REDIS_PASSWORD": "redis-test-token-0123",
        "FLEET_REGION_HEALTH_KEY": probe_key(MASTER_KEY, REGION),
        **database,
    }
    return {s["name"]: values.get(s["name"], PROVIDER_KEY) for s in container["secrets"]}


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's plain environment (not the S3 location: the config file is given directly)."""
    return {
        e["name"]: e["value"] for e in container["environment"] if not e["name"].startswith("LITELLM_CONFIG_")
    }


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


def run_entry_point(container: dict[str, Any], env: dict[str, str], **popen: Any) -> subprocess.Popen[bytes]:
    """A container whose entry point is `python3 -c <bootstrap>`, run with this interpreter; the Prisma
    stand-in where the image has its generated client."""
    entry = container["entryPoint"]
    assert entry[0] == "python3"
    path = os.pathsep.join([str(PRISMA_STAND_IN), str(PROJECT_ROOT)])
    return subprocess.Popen(
        [sys.executable, *entry[1:]], env={**os.environ, "PYTHONPATH": path, **env}, **popen
    )


@pytest.fixture(scope="module")
def rendering() -> Rendering:
    return harness_render(load_stack(PROJECT_DIR, "prod"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A pool node's engine: llama.cpp with a tiny model."""
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
        yield url
    finally:
        process.terminate()
        process.wait(20)


@pytest.fixture(scope="module")
def reader() -> Iterator[Postgres]:
    """The region's reader: a real PostgreSQL with LiteLLM's schema."""
    with running_postgres() as server:
        create_litellm_database(server)
        yield server


def registered_key(rendering: Rendering, reader: Postgres) -> subprocess.CompletedProcess[bytes]:
    """The rendered key registration, run to completion against the writer (here the reader's own server,
    which a replica copies)."""
    container = containers(rendering)["region-health-key"]
    env = {
        **plain_env(container),
        **secret_values(
            container, {"DATABASE_URL": reader.url("rdsadmin", reader.superuser_password, "litellm")}
        ),
    }
    process = run_entry_point(container, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out)


@contextlib.contextmanager
def region_health_sidecar(rendering: Rendering, gateway_url: str, **overrides: str) -> Iterator[str]:
    """The sidecar as the task runs it: its rendered entry point, environment and key (its port and the
    gateway's address on this machine)."""
    sidecar = containers(rendering)["region-health"]
    port = free_port()
    env = {
        **plain_env(sidecar),
        **secret_values(sidecar, {}),
        "REGION_HEALTH_PORT": str(port),
        "GATEWAY_URL": gateway_url,
        "REFRESH_SECONDS": "1",
        **overrides,
    }
    process = run_entry_point(sidecar, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/fleet/live", timeout=1).status_code == 200, 120, "a first verdict")
        yield f"{url}/fleet/region-health"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def gateway(rendering: Rendering, node: str, reader: Postgres) -> Iterator[Gateway]:
    config = rendered_config(rendering)
    container = containers(rendering)["gateway"]
    pools, providers = PoolLoadBalancer(node), FakeOpenAI(PROVIDER_KEY)
    assert registered_key(rendering, reader).returncode == 0
    with serving(pools) as pool_lb, serving(providers) as provider_api:
        for deployment in config["model_list"]:
            params = deployment["litellm_params"]
            own = params.get("order") == POOL_ORDER
            params["api_base"] = f"{pool_lb.url}/v1" if own else f"{provider_api.url}/v1"
        config["router_settings"]["cooldown_time"] = 1
        database = {
            # The global writer is out of reach; the region's reader answers.
            "DATABASE_URL": f"postgresql://litellm_gateway:x@127.0.0.1:{closed_port()}/litellm?sslmode=require&connect_timeout=2",
            "DATABASE_URL_READ_REPLICA": reader.url("rdsadmin", reader.superuser_password, "litellm"),
        }
        # Redis unreachable too: LiteLLM opens a circuit breaker and keeps serving.
        env = {
            **plain_env(container),
            **secret_values(container, database),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(closed_port()),
        }
        with (
            running_litellm(config, args=cli_args(container), env=env, database="postgres") as proxy,
            region_health_sidecar(rendering, proxy.base_url) as health,
        ):
            yield Gateway(proxy, health, rendering, reader, pools, providers)


def chat(gateway: Gateway, key: str, model: str = "gpt-4o-mini") -> httpx.Response:
    return httpx.post(
        f"{gateway.proxy.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=60,
    )


def verdict(url: str, wanted: str, pool_status: int | None = None) -> httpx.Response:
    """The sidecar's answer once its verdict is `wanted` (it refreshes every second), on a round that saw the
    pool answer `pool_status` where one is given."""

    def seen() -> httpx.Response | None:
        answer = httpx.get(url, timeout=10)
        body = answer.json()
        pool = body["deployments"].get(POOL, {})
        matches = body["verdict"] == wanted and pool_status in (None, pool.get("status"))
        return answer if matches else None

    return wait_for(seen, 60, f"verdict {wanted}")


# --- keys, checked against the region's own reader ----------------------------------------------------


def test_prod_renders_each_region_its_own_reader_and_refuses_unverifiable_keys(rendering: Rendering):
    config = rendered_config(rendering)
    assert config["general_settings"]["allow_requests_on_db_unavailable"] is False
    gateway = containers(rendering)["gateway"]
    assert {s["name"] for s in gateway["secrets"]} >= {"DATABASE_URL", "DATABASE_URL_READ_REPLICA"}


def test_a_key_only_the_reader_holds_is_served_while_the_writer_is_unreachable(gateway: Gateway):
    """The writer is out of reach and the key exists only in the reader: LiteLLM looked it up there."""
    add_key(gateway.reader, "sk-team-a-0123456789", "team-a")
    answer = chat(gateway, "sk-team-a-0123456789")
    assert answer.status_code == 200, answer.text
    # The master key needs no lookup; LiteLLM's readiness probes the reader, which answers.
    assert chat(gateway, MASTER_KEY).status_code == 200
    readiness = httpx.get(f"{gateway.proxy.base_url}/health/readiness", timeout=10)
    assert (readiness.status_code, readiness.json()["db"]) == (200, "connected")


def test_an_unknown_key_is_refused_while_the_writer_is_unreachable(gateway: Gateway):
    answer = chat(gateway, "sk-not-a-key-anyone-issued")
    assert answer.status_code == 401, answer.text


def test_the_sidecars_key_reaches_only_the_deployments_it_probes(gateway: Gateway):
    key = probe_key(MASTER_KEY, REGION)
    models = key_models(gateway.reader, f"inference-fleet-region-health-{REGION}")
    config = rendered_config(gateway.rendering)
    assert sorted(models) == sorted(d["model_info"]["id"] for d in config["model_list"])
    # Not a client's key: LiteLLM refuses it every model group.
    assert chat(gateway, key, "gpt-4o-mini").status_code == 403


def test_registering_the_key_again_keeps_one_row(gateway: Gateway):
    assert registered_key(gateway.rendering, gateway.reader).returncode == 0
    assert len(key_models(gateway.reader, f"inference-fleet-region-health-{REGION}")) > 0
    rows = gateway.reader.psql(
        """SELECT count(*) FROM "LiteLLM_VerificationToken" WHERE key_alias LIKE 'inference-fleet-region-health-%'""",
        database="litellm",
    )
    assert rows == "1"


# --- "this region can serve": a real completion through the gateway -----------------------------------


def test_the_region_serves_through_its_own_pool(gateway: Gateway):
    gateway.pools.mode = FORWARD
    # On a round that saw the pool answer: one begun before the mode changed can say "pools" on another
    # own backend's answer while this pool still refused (a previous test's 503).
    answer = verdict(gateway.region_health_url, "pools", pool_status=200)
    assert answer.status_code == 200
    pool = answer.json()["deployments"][POOL]
    assert pool["served"] is True and pool["own"] is True
    # The base URL is LiteLLM's own answer: the pool's load balancer.
    assert pool["api_base"].startswith("http://127.0.0.1:")
    # Own pools first: no serverless endpoint was asked.
    assert not [d for d in answer.json()["deployments"].values() if not d["own"]]


@pytest.mark.parametrize("status", [503, 404], ids=["lb-no-healthy-target", "unready-nodes"])
def test_a_pool_whose_nodes_are_all_unready_does_not_serve(gateway: Gateway, status: int):
    gateway.pools.mode = status
    try:
        # A serverless endpoint still serves: a weaker verdict, failing in prod (serverlessOnly: failing).
        answer = verdict(gateway.region_health_url, "serverless", pool_status=status)
        assert answer.status_code == 503
        deployments = answer.json()["deployments"]
        assert deployments[POOL]["served"] is False
        assert [d["served"] for d in deployments.values() if not d["own"]][-1] is True
    finally:
        gateway.pools.mode = FORWARD


def test_a_revoked_provider_key_does_not_serve(gateway: Gateway):
    gateway.pools.mode = 503
    try:
        # Where serverless-only counts as serving (here a second sidecar says so), a provider serves: 200.
        with region_health_sidecar(
            gateway.rendering, gateway.proxy.base_url, SERVERLESS_ONLY_HEALTHY="true"
        ) as lenient:
            assert verdict(lenient, "serverless").status_code == 200
        # The provider revokes the key: its root would still answer, but no completion comes back.
        gateway.providers.api_key = "sk-rotated-by-the-provider"
        answer = verdict(gateway.region_health_url, "none")
        assert answer.status_code == 503
        serverless = [d for d in answer.json()["deployments"].values() if not d["own"]]
        assert serverless and not any(d["served"] for d in serverless)
        assert 401 in {d["status"] for d in serverless}
    finally:
        gateway.providers.api_key = PROVIDER_KEY
        gateway.pools.mode = FORWARD


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
    env = {**plain_env(migrate), **secret_values(migrate, {})}
    del env["DATABASE_URL"]  # the testkit points it at a port nothing answers
    result = run_litellm(config, args=migrate["command"], env=env, database="unreachable", timeout=300)
    assert result.returncode != 0
    assert "P1001" in result.stdout + result.stderr
