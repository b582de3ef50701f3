"""`fleet sandbox` on the dev stack, as a user meets it: `up` prints a URL the OpenAI SDK answers on,
through the rendered gateway and the pool's node; `up` again changes nothing; `status` shows the node in
service; `load` reports what its clients saw; the CI drills. Any order holds: each drill picks a node in
service and puts the sandbox back (`down`, which ends a sandbox, has a module of its own)."""

from __future__ import annotations

import json
import re
from typing import Any

import openai

from .conftest import POOL_DEPLOYMENT, ROUTE, Sandbox


def test_up_prints_a_base_url_the_openai_sdk_answers_on(sandbox: Sandbox) -> None:
    assert f"base URL  {sandbox.base_url}" in sandbox.up_output
    assert f"API key   {sandbox.api_key}" in sandbox.up_output
    assert "emulated:" in sandbox.up_output
    sandbox.wait_pool_serves()  # a drill before this one may have left the pool cooling down
    client = openai.OpenAI(base_url=sandbox.base_url, api_key=sandbox.api_key)
    assert {"llama-3.1-8b", "gpt-4o-mini"} <= {m.id for m in client.models.list()}
    answer = client.chat.completions.with_raw_response.create(
        model=ROUTE, messages=[{"role": "user", "content": "hello"}], max_tokens=8,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    # The route's own pool served it (LiteLLM names the deployment), through its load balancer.
    assert answer.headers["x-litellm-model-id"] == POOL_DEPLOYMENT
    completion = answer.parse()
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 8


def test_up_again_changes_nothing(sandbox: Sandbox) -> None:
    before = sandbox.status()
    again = sandbox.fleet("up", "--stack", "dev", timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"base URL  {sandbox.base_url}" in again.stdout
    after = sandbox.status()
    ids = lambda s: [n["id"] for r in s["regions"] for p in r["pools"] for n in p["nodes"]]  # noqa: E731
    assert ids(after) == ids(before)
    other = sandbox.fleet("up", "--stack", "prod", timeout=120)
    assert other.returncode == 2 and "a dev sandbox runs in" in other.stderr


def test_status_shows_the_node_in_service_and_the_routes(sandbox: Sandbox) -> None:
    text = sandbox.fleet("status", timeout=60).stdout
    assert re.search(r"i-[0-9a-f]+\s+llama-8b\s+ready\s+healthy\s+InService", text), text
    assert "llama-3.1-8b/pool/llama-8b" in text and "emulated:" in text
    (region,) = sandbox.status()["regions"]
    assert region["redis"] == "up" and region["gatewayUp"]


def test_load_reports_what_the_clients_saw(sandbox: Sandbox) -> None:
    sandbox.wait_pool_serves()  # a drill before this one may have left the pool cooling down
    done = sandbox.fleet(
        "load", "--rps", "2", "--duration", "5", "--stream-share", "0.5", "--json", timeout=300
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["model"] == "llama-3.1-8b"
    assert figures["requests"] == figures["completed"] == 10
    assert 0 < figures["streamed"] < 10  # seeded: the same split every run
    # A healthy fleet: every answer whole, all from the route's own pool.
    assert (figures["errors"], figures["silentTruncations"]) == (0, 0)
    assert figures["deployments"] == {"llama-3.1-8b/pool/llama-8b": 10} and figures["ownPoolShare"] == 1
    assert figures["latencySeconds"]["p50"] > 0 and figures["timeToFirstTokenSeconds"]["p50"] > 0
    text = sandbox.fleet("load", "--rps", "1", "--duration", "2", timeout=300).stdout
    assert "latency      p50" in text and "served by    own pools 2 (100.0 %)" in text and "emulated:" in text


def drill(sandbox: Sandbox, name: str) -> dict[str, Any]:
    done = sandbox.fleet("drill", name, "--json", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_engine_crash_midstream_is_counted_where_the_client_sees_it(sandbox: Sandbox) -> None:
    result = drill(sandbox, "engine-crash-midstream")
    # The agent noticed and restarted its engine: the node left readiness and came back.
    assert result["detected"]["seconds"] is not None and result["recovered"]["seconds"] is not None
    # The drill struck while a stream ran on that engine (its load balancer held an answer mid-body): the
    # client saw that stream fail, as an error or as a silent truncation, never as a whole answer.
    assert any(re.search(r"with [1-9]\d* answer\(s\) mid-body", note) for note in result["notes"]), result
    client = result["client"]
    assert client["errors"] + client["silentTruncations"] >= 1, client
    assert result["detected"]["budgetSource"].startswith("none declared")


def test_a_spot_notice_drains_the_node_and_the_group_replaces_it(sandbox: Sandbox) -> None:
    result = drill(sandbox, "spot-notice")
    # The agent drains at the notice (in-flight answers finish: none is cut), the group's capacity
    # rebalancing brings a replacement into service, then terminates the node through its lifecycle hook,
    # which the drained agent completes. (Whether a client saw an error while the load balancer still
    # routed to the draining node is a figure: the bench's.)
    assert result["client"]["silentTruncations"] == 0, result["client"]
    assert result["detected"]["seconds"] is not None and result["recovered"]["seconds"] is not None
    assert any("lifecycle action CONTINUE" in note for note in result["notes"]), result["notes"]


def test_a_killed_node_is_replaced_by_the_controller_through_the_group(sandbox: Sandbox) -> None:
    plan = sandbox.status()["budgets"]["fleetController"]
    result = drill(sandbox, "node-kill")
    detected, recovered = result["detected"], result["recovered"]
    assert detected["what"] == "the controller asked for a replacement" and detected["seconds"] is not None
    assert detected["budgetSeconds"] == plan["killedNodeToReplacementSeconds"]
    assert recovered["seconds"] is not None  # a new node booted, mounted, warmed and came into service
    nodes = [n for r in sandbox.status()["regions"] for p in r["pools"] for n in p["nodes"]]
    assert result["target"]["node"] not in [n["id"] for n in nodes if n["lifecycle"] == "InService"]


def test_region_loss_needs_a_stack_with_a_standby(sandbox: Sandbox) -> None:
    done = sandbox.fleet("drill", "region-loss", timeout=120)
    assert done.returncode == 1 and "has no standby region" in done.stderr
    assert "fleet sandbox up --stack prod" in done.stderr
