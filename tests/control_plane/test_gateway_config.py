"""What each region's gateway is rendered with: for every route, its own region's pools (order 1, the pool's
internal name, the agents' key from Secrets Manager) ahead of the serverless endpoints (order 2), which stay
as fallbacks; a region without a route's pool serves it from the serverless endpoints alone."""

from __future__ import annotations

import json
from typing import Any

import yaml

from components.control_plane.gateway_config import POOL_API_KEY_ENV, POOL_ORDER, SERVERLESS_ORDER
from components.core.catalog.resource_types import (
    ECS_TASK_DEFINITION,
    LOAD_BALANCER,
    ROUTE53_RECORD,
    S3_OBJECT,
    SECRET_VERSION,
)
from fleet.harness import Rendering, is_secret


def gateway_config(rendering: Rendering, region: str) -> dict[str, Any]:
    obj = rendering.one(S3_OBJECT, f"control-plane-{region}-litellm-config")
    return yaml.safe_load(obj.inputs["content"])


def route(config: dict[str, Any], model: str) -> list[tuple[int | None, str, str | None]]:
    """(order, LiteLLM model, api_base) of a route's deployments, in the file's order."""
    return [
        (d["litellm_params"].get("order"), d["litellm_params"]["model"], d["litellm_params"].get("api_base"))
        for d in config["model_list"]
        if d["model_name"] == model
    ]


def test_the_primary_gateway_tries_its_pools_before_the_serverless_endpoints(render) -> None:
    prod = render("prod")
    config = gateway_config(prod, "us-east-1")
    assert route(config, "llama-3.1-8b") == [
        (POOL_ORDER, "openai/meta-llama/Llama-3.1-8B-Instruct", "http://llama-8b.pools.fleet.example.com/v1"),
        (SERVERLESS_ORDER, "together_ai/meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", None),
    ]
    assert route(config, "qwen-2.5-14b") == [
        (POOL_ORDER, "openai/qwen2.5:14b", "http://qwen-14b.pools.fleet.example.com/v1"),
        (
            SERVERLESS_ORDER,
            "openai/Qwen/Qwen2.5-14B-Instruct",
            "https://api.runpod.ai/v2/qwen25-14b-vllm/openai/v1",
        ),
    ]
    # A route without pools is as before: no order, the serverless endpoint and its fallbacks.
    assert route(config, "gpt-4o-mini") == [(None, "openai/gpt-4o-mini", None)]
    pool = next(d for d in config["model_list"] if d["litellm_params"].get("order") == POOL_ORDER)
    assert pool["litellm_params"]["api_key"] == f"os.environ/{POOL_API_KEY_ENV}"


def test_the_standby_gateway_uses_its_own_regions_pool(render) -> None:
    config = gateway_config(render("prod"), "us-west-2")
    assert route(config, "llama-3.1-8b")[0][2] == "http://llama-8b-west.pools.fleet.example.com/v1"
    # No qwen pool in us-west-2: RunPod serves the route there, without an order to fall back from.
    assert route(config, "qwen-2.5-14b") == [
        (None, "openai/Qwen/Qwen2.5-14B-Instruct", "https://api.runpod.ai/v2/qwen25-14b-vllm/openai/v1")
    ]


def test_each_pool_name_the_gateway_uses_leads_to_that_pools_load_balancer(render) -> None:
    prod = render("prod")
    records = {r.inputs["name"]: r for r in prod.of_type(ROUTE53_RECORD)}
    balancers = {b.outputs["dnsName"] for b in prod.of_type(LOAD_BALANCER) if b.inputs["internal"]}
    pool_bases = [
        d["litellm_params"]["api_base"]
        for region in ("us-east-1", "us-west-2")
        for d in gateway_config(prod, region)["model_list"]
        if d["litellm_params"].get("order") == POOL_ORDER
    ]
    assert len(pool_bases) == 3
    for api_base in pool_bases:
        host = api_base.removeprefix("http://").removesuffix("/v1")
        assert records[host].inputs["aliases"][0]["name"] in balancers


def test_the_pool_key_reaches_the_gateway_only_through_its_secret(render) -> None:
    prod = render("prod")
    for region in ("us-east-1", "us-west-2"):
        version = prod.one(SECRET_VERSION, f"control-plane-{region}-gateway-secret")
        assert is_secret(version.inputs["secretString"])
        document = json.loads(version.inputs["secretString"]["value"])
        node_secret = next(r for r in prod.of_type(SECRET_VERSION) if r.name.startswith("pool-"))
        node_document = json.loads(node_secret.inputs["secretString"]["value"])
        # The gateway presents the key the agents check.
        assert document[POOL_API_KEY_ENV] == node_document["apiKey"]
        task = prod.one(ECS_TASK_DEFINITION, f"control-plane-{region}-gateway")
        container = next(c for c in json.loads(task.inputs["containerDefinitions"]) if c["name"] == "gateway")
        assert POOL_API_KEY_ENV in {s["name"] for s in container["secrets"]}
        assert POOL_API_KEY_ENV not in {e["name"] for e in container["environment"]}
