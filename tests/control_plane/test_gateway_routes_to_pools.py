"""The gateway's rendered config in the real LiteLLM proxy: a route's own GPU pool is tried first, and its
serverless endpoint is used when the pool's agent is not ready.

The config is the one `fleet plan --stack dev` renders for the gateway, with only the addresses moved to
loopback: the pool's api_base to a real fleet agent in front of real llama.cpp (a tiny model), the
RunPod endpoint's api_base to a small OpenAI-compatible fake. Keys come from the environment, as the
task definition gives them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from testkit.fake_openai import ANSWER, FakeOpenAI
from testkit.litellm_proxy import running_litellm

from components.control_plane.gateway_config import POOL_API_KEY_ENV, POOL_ORDER, SERVERLESS_ORDER
from components.core.catalog.resource_types import S3_OBJECT
from fleet.harness import render
from fleet.stackfile import load_stack
from fleet_agent.drain import DrainNotice
from node_image.agent.tests.agent_testkit.harness import API_KEY, RunningAgent, llama_config, write_config
from node_image.agent.tests.agent_testkit.net import free_port, serving, wait_for
from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama

PROJECT_DIR = Path(__file__).resolve().parents[2]
ROUTE = "llama-3.1-8b"
MASTER_KEY = "sk-test-master-0123456789"
RUNPOD_KEY = "rp-test-key-0123456789"


def rendered_gateway_config() -> dict[str, Any]:
    rendering = render(load_stack(PROJECT_DIR, "dev"))
    (obj,) = [r for r in rendering.of_type(S3_OBJECT) if r.name == "control-plane-us-east-1-litellm-config"]
    return yaml.safe_load(obj.inputs["content"])


def route_deployments(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in config["model_list"] if d["model_name"] == ROUTE]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The proxy (once for the module) with the dev config, the pool pointed at a fixed loopback port
    where each test runs its own agent, the serverless endpoint at the fake."""
    config = rendered_gateway_config()
    agent_port = free_port()
    fake = FakeOpenAI(RUNPOD_KEY)
    with serving(fake) as serverless:
        for deployment in route_deployments(config):
            params = deployment["litellm_params"]
            if params.get("order") == POOL_ORDER:
                params["api_base"] = f"http://127.0.0.1:{agent_port}/v1"
            else:
                params["api_base"] = serverless.url + "/v1"
        env = {
            "LITELLM_MASTER_KEY": MASTER_KEY,
            POOL_API_KEY_ENV: API_KEY,
            "RUNPOD_API_KEY": RUNPOD_KEY,
            "OPENAI_API_KEY": "sk-unused",
            "ANTHROPIC_API_KEY": "sk-unused",
        }
        with running_litellm(config, env=env) as proxy:
            yield {
                "url": proxy.base_url,
                "config": config,
                "agent_port": agent_port,
                "fake": fake,
                "model": tmp_path_factory.mktemp("model") / "tiny.gguf",
            }


def complete(url: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/completions",
        json={"model": ROUTE, "prompt": "hello", "max_tokens": 4},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=60,
    )


def completions(fake: FakeOpenAI) -> list[dict[str, Any]]:
    """The requests the serverless endpoint served (LiteLLM also lists its models now and then)."""
    return [c for c in fake.calls if c["path"].endswith("/completions")]


def agent_counter(agent: RunningAgent, name: str, **labels: str) -> float:
    """A counter from the agent's /metrics, summed over the series matching `labels`."""
    total = 0.0
    for line in agent.http.get("/metrics").text.splitlines():
        named = line.startswith(name + "{") or line.startswith(name + " ")
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_rendered_route_lists_the_pool_before_the_serverless_endpoint(gateway) -> None:
    deployments = route_deployments(gateway["config"])
    assert [d["litellm_params"]["order"] for d in deployments] == [POOL_ORDER, SERVERLESS_ORDER]
    pool, serverless = (d["litellm_params"] for d in deployments)
    assert pool["api_key"] == f"os.environ/{POOL_API_KEY_ENV}"
    assert serverless["api_key"] == "os.environ/RUNPOD_API_KEY"
    # The proxy took the whole rendered config: every route is a model it serves.
    models = httpx.get(
        gateway["url"] + "/v1/models", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    ).json()
    assert {ROUTE, "gpt-4o-mini"} <= {m["id"] for m in models["data"]}


def test_the_pool_serves_first_and_the_serverless_endpoint_takes_over_when_it_is_not_ready(
    gateway, tmp_path: Path
) -> None:
    fake: FakeOpenAI = gateway["fake"]
    model = gateway["model"]
    if not model.exists():
        write_tiny_llama(model)
    config = llama_config(model, server={"port": gateway["agent_port"]})
    with RunningAgent(write_config(tmp_path, config)) as agent:
        agent.wait_state("ready")

        served = complete(gateway["url"])
        assert served.status_code == 200, served.text
        assert served.json()["choices"][0]["text"] != ANSWER
        assert completions(fake) == []  # the pool answered; the fallback was not asked
        assert agent_counter(agent, "fleet_agent_requests_total") >= 1

        # Readiness off (a drain, as on a spot notice): the agent refuses new requests with 503.
        now = time.time()
        agent.notice(DrainNotice("signal", "test", now, now + 30))
        wait_for(lambda: agent.readyz() == 503, 30, "the agent to turn readiness off")
        refused_before = agent_counter(agent, "fleet_agent_requests_rejected_total")

        fallback = complete(gateway["url"])
        assert fallback.status_code == 200, fallback.text
        assert fallback.json()["choices"][0]["text"] == ANSWER
        assert [c["body"]["model"] for c in completions(fake)] == ["meta-llama/Llama-3.1-8B-Instruct"]
        # The pool was tried first and refused it; only then the serverless endpoint.
        assert agent_counter(agent, "fleet_agent_requests_rejected_total") > refused_before
