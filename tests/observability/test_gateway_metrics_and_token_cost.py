"""The gateway's rendered config in the real LiteLLM proxy (the pinned version, with prometheus_client as
the gateway image carries it): a request served by a GPU pool's entry is priced (non-zero
`x-litellm-response-cost`: the pool's cost per token), and /metrics answers the metrics sidecar's own
scrape config, with its key, and no one without one.

The config is the one `fleet plan --stack dev` renders, with only the pool's address moved to loopback (an
OpenAI-compatible fake standing in for the pool's agents, checking the pool key the gateway presents).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from testkit.fake_openai import FakeOpenAI
from testkit.litellm_proxy import running_litellm

from components.control_plane import gateway_metrics
from components.control_plane.gateway_config import POOL_API_KEY_ENV, POOL_ORDER
from components.core.catalog.resource_types import ECS_TASK_DEFINITION, S3_OBJECT
from fleet.harness import Rendering, render
from fleet.stackfile import load_stack
from node_image.agent.tests.agent_testkit.net import serving

PROJECT_DIR = Path(__file__).resolve().parents[2]
ROUTE = "llama-3.1-8b"
MASTER_KEY = "sk-test-master-0123456789"
POOL_KEY = "pool-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def rendering() -> Rendering:
    return render(load_stack(PROJECT_DIR, "dev"))


def rendered_config(rendering: Rendering) -> dict[str, Any]:
    (obj,) = [r for r in rendering.of_type(S3_OBJECT) if r.name == "control-plane-us-east-1-litellm-config"]
    return yaml.safe_load(obj.inputs["content"])


def pool_entry(config: dict[str, Any]) -> dict[str, Any]:
    (entry,) = [
        d
        for d in config["model_list"]
        if d["model_name"] == ROUTE and d["litellm_params"]["order"] == POOL_ORDER
    ]
    return entry["litellm_params"]


@pytest.fixture(scope="module")
def gateway(rendering: Rendering) -> Iterator[dict[str, Any]]:
    config = rendered_config(rendering)
    fake = FakeOpenAI(POOL_KEY)
    with serving(fake) as pool:
        pool_entry(config)["api_base"] = pool.url + "/v1"
        env = {
            "LITELLM_MASTER_KEY": MASTER_KEY,
            POOL_API_KEY_ENV: POOL_KEY,
            "RUNPOD_API_KEY": "rp-unused",
            "OPENAI_API_KEY": "sk-unused",
            "ANTHROPIC_API_KEY": "sk-unused",
        }
        with running_litellm(config, env=env) as proxy:
            yield {"url": proxy.base_url, "config": config, "fake": fake}


def test_a_request_served_by_a_pool_is_priced_at_the_pools_cost_per_token(gateway) -> None:
    params = pool_entry(gateway["config"])
    assert params["input_cost_per_token"] > 0 and params["output_cost_per_token"] > 0
    answer = httpx.post(
        gateway["url"] + "/v1/chat/completions",
        json={"model": ROUTE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-litellm-model-id"] == f"{ROUTE}/pool/llama-8b"  # the pool served it
    usage = answer.json()["usage"]
    expected = (
        usage["prompt_tokens"] * params["input_cost_per_token"]
        + usage["completion_tokens"] * params["output_cost_per_token"]
    )
    assert float(answer.headers["x-litellm-response-cost"]) == pytest.approx(expected, rel=1e-6)
    assert expected > 0


def sidecar_scrape(rendering: Rendering) -> dict[str, Any]:
    """The scrape job the metrics sidecar runs (its config is the secret's; rendered here with our key)."""
    (sidecar,) = [
        c
        for task in rendering.of_type(ECS_TASK_DEFINITION)
        for c in json.loads(task.inputs["containerDefinitions"])
        if c["name"] == gateway_metrics.METRICS_CONTAINER
    ]
    assert [s["name"] for s in sidecar["secrets"]] == [gateway_metrics.PROMETHEUS_CONFIG_ENV]
    assert not any("credentials" in e["value"] for e in sidecar["environment"])  # the key is never plain
    (job,) = gateway_metrics.scrape_config(MASTER_KEY)["scrape_configs"]
    return job


def test_the_sidecars_scrape_reads_the_gateways_metrics_with_its_key(gateway, rendering: Rendering) -> None:
    job = sidecar_scrape(rendering)
    # One counted request first (the previous test's may run in another order).
    httpx.post(
        gateway["url"] + "/v1/chat/completions",
        json={"model": ROUTE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=60,
    )
    # And one the gateway refuses (a model it does not route): a client's error, labelled with its status.
    refused = httpx.post(
        gateway["url"] + "/v1/chat/completions",
        json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=60,
    )
    assert 400 <= refused.status_code < 500
    auth = job["authorization"]
    scraped = httpx.get(
        gateway["url"] + job["metrics_path"],
        headers={"Authorization": f"{auth['type']} {auth['credentials']}"},
        timeout=30,
    )
    assert scraped.status_code == 200, scraped.text[:300]
    names = {
        line.split("{")[0].split(" ")[0] for line in scraped.text.splitlines() if not line.startswith("#")
    }
    # The counters the sidecar turns into CloudWatch metrics, as prometheus_client names them.
    assert {gateway_metrics.REQUESTS, gateway_metrics.SPEND, gateway_metrics.TOKENS} <= names
    failed = [
        line for line in scraped.text.splitlines() if line.startswith(gateway_metrics.FAILED_REQUESTS + "{")
    ]
    # The label the sidecar keeps only 5xx by (gateway_metrics.agent_config): this one was the client's.
    assert failed and all('exception_status="4' in line for line in failed), failed
    spend = [line for line in scraped.text.splitlines() if line.startswith(gateway_metrics.SPEND + "{")]
    assert spend and sum(float(line.rsplit(" ", 1)[1]) for line in spend) > 0  # own capacity is not $0


def test_an_unauthenticated_scrape_is_refused(gateway) -> None:
    refused = httpx.get(gateway["url"] + gateway_metrics.METRICS_PATH, timeout=30)
    assert refused.status_code == 401
