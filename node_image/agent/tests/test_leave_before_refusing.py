"""A leaving node leaves its load balancer before it refuses work: on a spot notice or a scale-in
(instance refresh takes the same path: the target lifecycle state turns Terminated) the agent deregisters
itself from its target group (ELBv2 DeregisterTargets, moto), keeps serving what still arrives while the
load balancer lets go, then drains, then completes the lifecycle action (heartbeats keep a long drain's
action open). Two real agents over llama.cpp behind a load balancer emulated from ELBv2's documented
behaviour, with moto as its control plane, under steady streaming load: no client sees an error and no
answer is cut while the other node is ready.

Timings are scaled down (health checks every 1 s, a 3 s leave, heartbeats every 0.6 s) and the tests wait
on events, never on the clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet_agent import constants as agent_constants

from .agent_testkit.aws_pool import (
    DRAIN_HOOK,
    HEARTBEAT_TIMEOUT_S,
    TARGET_PORT,
    Pool,
    pool_in_moto,
)
from .agent_testkit.fake_autoscaling import FakeAutoScaling
from .agent_testkit.fake_metadata import FakeImds
from .agent_testkit.harness import (
    API_KEY,
    RunningAgent,
    StreamInThread,
    completion,
    generated_tokens,
    llama_config,
    spot_notice,
    write_config,
)
from .agent_testkit.load import StreamingLoad
from .agent_testkit.load_balancer import EmulatedTargetGroup, describe
from .agent_testkit.net import serving, wait_for

LEAVE_S = 3.0
LONG_STREAM_TOKENS = 800  # in flight when the group takes the node


@dataclass
class Node:
    instance: str
    imds: FakeImds
    agent: RunningAgent


@pytest.fixture
def autoscaling(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAutoScaling]:
    front = FakeAutoScaling(moto_url)
    with serving(front) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_AUTO_SCALING", server.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", moto_url)
        # Heartbeats every 0.6 s of the hook's 30 s (the least PutLifecycleHook allows).
        monkeypatch.setattr(agent_constants, "LIFECYCLE_HEARTBEAT_SHARE", 0.02)
        yield front


def start_nodes(stack: ExitStack, tmp_path: Path, model: Path, pool: Pool) -> list[Node]:
    nodes = []
    for index, instance in enumerate(pool.instances):
        imds = FakeImds(instance_id=instance, region="us-east-1")
        metadata = stack.enter_context(serving(imds))
        config = llama_config(
            model,
            node={"id": instance},
            preemption={"provider": "aws", "aws_imds_url": metadata.url, "aws_poll_s": 0.2},
            load_balancer={
                "aws_target_group_arns": [pool.target_group],
                "target_port": TARGET_PORT,
                "leave_s": LEAVE_S,
            },
            drain={
                "reserve_s": 2,
                "lifecycle_timeout_s": 300,
                "hooks": [
                    {
                        "kind": "aws-lifecycle",
                        "hook_name": DRAIN_HOOK,
                        "group_name": pool.group,
                        "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S,
                    }
                ],
            },
        )
        directory = tmp_path / f"node-{index}"
        directory.mkdir()
        agent = stack.enter_context(RunningAgent(write_config(directory, config)))
        nodes.append(Node(instance, imds, agent))
    for node in nodes:
        node.agent.wait_state("ready", timeout=60)
    return nodes


def load_balanced(
    stack: ExitStack, moto_url: str, pool: Pool, nodes: list[Node]
) -> tuple[EmulatedTargetGroup, str]:
    balancer = EmulatedTargetGroup(moto_url, pool.target_group, {n.instance: n.agent.url for n in nodes})
    front = stack.enter_context(serving(balancer))
    wait_for(
        lambda: len([i for i, t in balancer.targets.items() if t.healthy]) == len(nodes),
        30,
        "every target healthy",
    )
    return balancer, front.url


def refused(agent: RunningAgent) -> float:
    for line in agent.http.get("/metrics").text.splitlines():
        if line.startswith('fleet_agent_requests_rejected_total{reason="not_ready"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def served_by(agent: RunningAgent) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in agent.http.get("/metrics").text.splitlines()
        if line.startswith('fleet_agent_requests_total{route="/v1/completions",code="200"}')
    )


LOAD_BODY = completion(max_tokens=24)
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


@dataclass
class PoolUnderLoad:
    pool: Pool
    leaving: Node
    staying: Node
    balancer: EmulatedTargetGroup
    load: StreamingLoad


@contextmanager
def pool_under_load(tmp_path: Path, model: Path, moto_url: str, name: str) -> Iterator[PoolUnderLoad]:
    """Two nodes of a pool behind its target group, both serving a steady streaming load."""
    pool = pool_in_moto(moto_url, name, 2)
    with ExitStack() as stack:
        leaving, staying = start_nodes(stack, tmp_path, model, pool)
        balancer, url = load_balanced(stack, moto_url, pool, [leaving, staying])
        with StreamingLoad(url + "/v1/completions", LOAD_BODY, HEADERS) as load:
            wait_for(lambda: min(balancer.served.values(), default=0) >= 2, 60, "both nodes serving the load")
            yield PoolUnderLoad(pool, leaving, staying, balancer, load)


@pytest.mark.usefixtures("instance_role_only")
def test_spot_notice_under_load_leaves_the_target_group_first(
    tmp_path: Path, tiny_model: Path, moto_url: str, autoscaling: FakeAutoScaling
) -> None:
    with pool_under_load(tmp_path, tiny_model, moto_url, "fleet-test-spot-leave") as run:
        pool, leaving, staying, balancer = run.pool, run.leaving, run.staying, run.balancer
        autoscaling.open_action(pool.group, DRAIN_HOOK, leaving.instance)
        leaving.imds.spot_action = spot_notice(120)

        stopped = leaving.agent.wait_state("stopped", timeout=90)
        served_after = balancer.served[staying.instance]
        wait_for(lambda: balancer.served[staying.instance] > served_after + 2, 60, "the load going on")
        tally = run.load.stop()

        assert tally.errors == [] and tally.truncated == 0, tally.as_dict()
        assert refused(leaving.agent) == 0  # no request ever met the leaving node's refusal
        report = stopped["drain"]
        assert [r["ok"] for r in report["target_groups"]] == [True]
        assert report["readiness_off_at"] <= report["deregistered_at"] < report["refusing_from"]
        assert report["refusing_from"] - report["deregistered_at"] >= LEAVE_S * 0.9  # it kept serving
        assert report["inflight_left"] == 0
    assert describe(moto_url, pool.target_group) == {staying.instance: "healthy"}
    assert [(a.instance, a.result) for a in autoscaling.completed] == [(leaving.instance, "CONTINUE")]


@pytest.mark.usefixtures("instance_role_only")
def test_scale_in_under_load_drains_a_long_stream_with_heartbeats(
    tmp_path: Path, tiny_model: Path, moto_url: str, autoscaling: FakeAutoScaling
) -> None:
    with pool_under_load(tmp_path, tiny_model, moto_url, "fleet-test-scale-in") as run:
        pool, leaving, staying = run.pool, run.leaving, run.staying
        long_stream = StreamInThread(leaving.agent.url, tokens=LONG_STREAM_TOKENS).start()
        # The group takes the node (scale-in; an instance refresh looks the same from the node).
        autoscaling.open_action(pool.group, DRAIN_HOOK, leaving.instance)
        leaving.imds.target_lifecycle_state = "Terminated"

        stopped = leaving.agent.wait_state("stopped", timeout=120)
        tally = run.load.stop()
        long_stream.join()

        assert tally.errors == [] and tally.truncated == 0, tally.as_dict()
        assert refused(leaving.agent) == 0
        assert long_stream.error is None and generated_tokens(long_stream.text) == LONG_STREAM_TOKENS
        report = stopped["drain"]
        assert report["notice"]["source"] == "aws-asg-lifecycle"
        # The lifecycle drain's deadline is the lifecycle timeout (as long as a request may last), not 90 s.
        assert report["notice"]["deadline"] - report["notice"]["noticed_at"] == pytest.approx(300, abs=1)
        assert report["deregistered_at"] < report["refusing_from"] <= report["inflight_done_at"]
        (hook,) = report["hooks"]
        assert hook["ok"]
    beats = [b for b in autoscaling.heartbeats if b.instance == leaving.instance]
    assert beats and all(b.hook == DRAIN_HOOK and b.group == pool.group for b in beats)
    assert max(b.at for b in beats) <= hook["at"]  # heartbeats while draining, the result after them
    assert [(a.instance, a.result) for a in autoscaling.completed] == [(leaving.instance, "CONTINUE")]
    assert describe(moto_url, pool.target_group) == {staying.instance: "healthy"}
