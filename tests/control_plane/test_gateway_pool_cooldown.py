"""The gateway's pool settings in the real LiteLLM proxy (the pinned package), as the program renders them:

- a pool with no node (its load balancer answers 503) is left out after `allowedFails` failed requests,
  the route's serverless endpoint serves meanwhile, and the pool is back once `cooldownSeconds` are over;
  LiteLLM's own router ignores `allowed_fails: 3` (its default), the pool's policy does not;
- a pool with one dead node (every other attempt a 502) is never left out: the retry reaches the other
  node, and no request goes to the paid endpoint;
- a timeout is not retried.

The config is dev's (`allowedFails` 3, its default), with a shorter `cooldownSeconds` and
`requestTimeoutSeconds` in the stack config so the test runs in seconds, and only the addresses moved
to loopback: the pool's api_base to a stand-in for the pool's load balancer, the endpoint's to a small
OpenAI-compatible fake. Who served each request is what LiteLLM says (`x-litellm-model-id`); what reached
the pool is what the stand-in recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from testkit.fake_openai import FakeOpenAI
from testkit.litellm_proxy import running_litellm

from components.control_plane.gateway_config import (
    NO_RETRY,
    POOL_API_KEY_ENV,
    POOL_ORDER,
    pool_cooldown_policy,
)
from components.core.catalog.resource_types import S3_OBJECT
from fleet.harness import render
from fleet.stackfile import load_stack
from node_image.agent.tests.agent_testkit.asgi import Receive, Scope, Send, read_body, respond
from node_image.agent.tests.agent_testkit.net import serving, wait_for

PROJECT_DIR = Path(__file__).resolve().parents[2]
ROUTE = "llama-3.1-8b"
POOL_ID = f"{ROUTE}/pool/llama-8b"  # the deployments' ids, as rendered
ENDPOINT_ID = f"{ROUTE}/runpod-llama-3.1-8b"
MASTER_KEY = "sk-test-master-0123456789"
RUNPOD_KEY = "rp-test-key-0123456789"
POOL_KEY = "pool-key-0123456789abcdef"
ALLOWED_FAILS = 3  # dev's: LiteLLM's own default, which its router would ignore
# LiteLLM counts a pool's failures in a window as long as its cooldown: long enough for the requests
# that fill it on a busy machine, short enough to wait out.
COOLDOWN_S = 10


class PoolBalancer(FakeOpenAI):
    """The pool's load balancer as the gateway meets it: a node's completion; the ALB's 503 when no node
    is registered; one node of two dead (every other attempt the ALB's 502); no answer at all."""

    def __init__(self, api_key: str) -> None:
        super().__init__(api_key)
        self._mode = "serve"
        self._turn = 0

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        # "one-dead" starts on the dead node, whatever the requests before it: each first attempt meets it.
        self._mode, self._turn = mode, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/completions"):
            await super().__call__(scope, receive, send)
            return
        self._turn += 1
        mode = self.mode
        if mode == "serve" or (mode == "one-dead" and self._turn % 2 == 0):
            await super().__call__(scope, receive, send)
            return
        self.calls.append({"path": scope["path"], "body": json.loads(await read_body(receive) or b"{}")})
        if mode == "hang":
            await asyncio.sleep(60)
        status = 503 if mode == "no-nodes" else 502
        await respond(send, status, {"error": {"message": f"{status} from the load balancer"}})


def attempts(pool: PoolBalancer) -> int:
    return sum(1 for c in pool.calls if c["path"].endswith("/completions"))


@pytest.fixture(scope="module")
def gateway() -> Iterator[dict[str, Any]]:
    stack = load_stack(PROJECT_DIR, "dev")
    plane = json.loads(stack.config["inference-fleet:controlPlane"])
    plane["gateway"] |= {"cooldownSeconds": COOLDOWN_S, "requestTimeoutSeconds": 10}
    rendering = render(stack.with_config({"controlPlane": plane}))
    (obj,) = [r for r in rendering.of_type(S3_OBJECT) if r.name == "control-plane-us-east-1-litellm-config"]
    config = yaml.safe_load(obj.inputs["content"])
    pool, fake = PoolBalancer(POOL_KEY), FakeOpenAI(RUNPOD_KEY)
    with serving(pool) as balancer, serving(fake) as serverless:
        for deployment in (d for d in config["model_list"] if d["model_name"] == ROUTE):
            own = deployment["litellm_params"].get("order") == POOL_ORDER
            deployment["litellm_params"]["api_base"] = (balancer.url if own else serverless.url) + "/v1"
        env = {
            "LITELLM_MASTER_KEY": MASTER_KEY,
            POOL_API_KEY_ENV: POOL_KEY,
            "RUNPOD_API_KEY": RUNPOD_KEY,
            "OPENAI_API_KEY": "sk-unused",
            "ANTHROPIC_API_KEY": "sk-unused",
        }
        with running_litellm(config, env=env) as proxy:
            yield {"url": proxy.base_url, "config": config, "pool": pool}


def served_by(url: str) -> tuple[str, httpx.Response]:
    """Who answered one completion (LiteLLM names the deployment); fails on an error answer."""
    answer = httpx.post(
        url + "/v1/completions",
        json={"model": ROUTE, "prompt": "hello", "max_tokens": 4},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer.headers["x-litellm-model-id"], answer


def back_to_the_pool(gateway: dict[str, Any]) -> None:
    gateway["pool"].mode = "serve"
    wait_for(
        lambda: served_by(gateway["url"])[0] == POOL_ID,
        COOLDOWN_S * 6,
        "the pool to serve again",
        interval=0.5,
    )


def test_the_rendered_settings_are_ones_litellm_honours(gateway) -> None:
    config = gateway["config"]
    router = config["router_settings"]
    assert "allowed_fails" not in router  # at its default LiteLLM's router would ignore it
    assert router["retry_policy"] == dict.fromkeys(NO_RETRY, 0)
    (pool,) = [d for d in config["model_list"] if d["litellm_params"].get("order") == POOL_ORDER]
    assert pool["model_info"]["allowed_fails_policy"] == pool_cooldown_policy(ALLOWED_FAILS)
    assert pool["model_info"]["cooldown_time"] == COOLDOWN_S


def test_a_pool_without_nodes_is_left_out_while_the_endpoint_serves_then_comes_back(gateway) -> None:
    pool: PoolBalancer = gateway["pool"]
    pool.mode = "no-nodes"
    answers, reached = [], []
    for _ in range(ALLOWED_FAILS + 3):
        before = attempts(pool)
        answers.append(served_by(gateway["url"])[0])
        reached.append(attempts(pool) - before)
    # Every client got a completion, from the endpoint ...
    assert answers == [ENDPOINT_ID] * len(answers)
    # ... the pool was tried (with its retries) by the first `allowedFails + 1` requests, then left out: the
    # next ones never reached it. (LiteLLM's router rule at allowed_fails 3 would have tried it a fifth time.)
    assert all(n > 0 for n in reached[: ALLOWED_FAILS + 1]), reached
    assert reached[ALLOWED_FAILS + 1 :] == [0, 0], reached
    # Back by its cooldown's end (LiteLLM returns it by the TTL alone, without a probe).
    back_to_the_pool(gateway)


def test_a_pool_with_one_dead_node_keeps_every_request(gateway) -> None:
    pool: PoolBalancer = gateway["pool"]
    back_to_the_pool(gateway)
    pool.mode = "one-dead"
    try:
        served = [served_by(gateway["url"]) for _ in range(3 * (ALLOWED_FAILS + 1))]
    finally:
        pool.mode = "serve"
    # Each first attempt met the dead node; its retry reached the other one. None went to the endpoint.
    assert {who for who, _ in served} == {POOL_ID}
    assert {answer.headers.get("x-litellm-attempted-retries") for _, answer in served} == {"1"}


def test_a_timeout_is_not_retried(gateway) -> None:
    pool: PoolBalancer = gateway["pool"]
    back_to_the_pool(gateway)
    pool.mode = "hang"
    try:
        before = attempts(pool)
        who, answer = served_by(gateway["url"])
    finally:
        pool.mode = "serve"
    # One attempt, its whole timeout, then the endpoint: not numRetries more timeouts in a row.
    assert who == ENDPOINT_ID and attempts(pool) - before == 1
    assert answer.headers.get("x-litellm-attempted-retries", "0") == "0"
