"""The fleet controller against faults, with real parts on 127.0.0.1: three real agents (subprocesses)
attached to one real llama.cpp server, heartbeating to a real redis-server as the nodes' ACL user; their
instances and group in moto (server mode), which records SetInstanceHealth and SendCommand; the
controller's own code looping with short periods, reading and acting through botocore clients.

- an agent killed: its node is marked unhealthy within the computed budget, and never restarted;
- an agent stopped (SIGSTOP: running, silent): restarted once (SSM Run Command), then replaced;
- Redis stopped: no signal quorum, no action on any node, even one whose agent then dies;
- a node draining for a spot notice: left alone, also once its agent has gone quiet;
- a GPU condemned by an XID (the agent's fake NVML backend): the node, not ready but answering, is
  replaced once its not-ready grace is over, and its model's capacity is not raised for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import pytest
from testkit.redis_server import RedisServer

from functions.fleet_controller.settings import ControllerSettings
from node_image.agent.tests.agent_testkit.fake_gpu import FakeGpuBackend
from node_image.agent.tests.agent_testkit.fake_metadata import FakeImds
from node_image.agent.tests.agent_testkit.harness import RunningAgent, spot_notice, write_config
from node_image.agent.tests.agent_testkit.net import ThreadedServer, wait_for

from .world import (
    MODEL,
    AgentProcess,
    MotoPool,
    RunningController,
    agent_config,
    budget,
    controller,
    moto_pool,
    settings,
    start_agent,
    target_group,
)

# Deadlines on waits guard against a hang; how fast the controller acts is asserted in its own ticks.
HANG_GUARD = 4


def ticks_for(seconds: float, s: ControllerSettings) -> int:
    """The controller's ticks in a budget of `seconds`."""
    return math.ceil(seconds / s.tick_s)


@pytest.fixture
def fleet(
    tmp_path: Path, moto: str, redis_server: RedisServer, tiny_model: Path, engine_port: int
) -> Iterator[tuple[MotoPool, dict[str, AgentProcess]]]:
    pool = moto_pool(moto)
    agents: dict[str, AgentProcess] = {}
    try:
        for instance_id in pool.instance_ids:
            agents[instance_id] = start_agent(
                tmp_path / instance_id, instance_id, redis_server, engine_port, tiny_model
            )
        for agent in agents.values():  # the boot grace's job in the cloud: no verdict on a starting node
            agent.wait_ready()
        yield pool, agents
    finally:
        for agent in agents.values():
            agent.close()


def untouched(pool: MotoPool, running: RunningController, instance_ids: list[str]) -> None:
    for instance_id in instance_ids:
        assert pool.health(instance_id) == "Healthy", instance_id
        assert running.restarts(instance_id) == [], instance_id


def test_a_killed_agent_is_marked_unhealthy_within_the_budget(fleet, redis_server) -> None:
    pool, agents = fleet
    s = settings(pool, redis_server)
    limit = budget(s).killed_s
    dead, *alive = pool.instance_ids
    with controller(pool, s, {i: a.address for i, a in agents.items()}) as running:
        running.wait_healthy(3)
        killed_at = len(running.records)
        agents[dead].kill()
        wait_for(lambda: pool.health(dead) == "Unhealthy", HANG_GUARD * limit, f"{dead} marked unhealthy")
    # Counted in the controller's ticks, which a busy machine slows down but never adds to.
    assert running.ticks_until_action(dead, after=killed_at) <= ticks_for(limit, s)
    assert (
        running.restarts(dead) == []
    )  # its port refused: systemd did not bring it back, nor would a restart
    untouched(pool, running, alive)
    (action,) = [r for r in running.records if r.get("kind") == "action"]
    assert action["instance"] == dead and action["verdict"] == "dead"
    # Logged with the signals that led to it.
    assert action["signals"] == {
        "cloud": "running", "push": "silent", "pull": "refused", "lb": "unknown", "agentState": None, "ready": False
    }  # fmt: skip


def test_a_silent_agent_is_restarted_once_then_replaced(fleet, redis_server) -> None:
    pool, agents = fleet
    s = settings(pool, redis_server)
    silent, *alive = pool.instance_ids
    with controller(pool, s, {i: a.address for i, a in agents.items()}) as running:
        running.wait_healthy(3)
        stopped_at = len(running.records)
        agents[silent].stop()  # SIGSTOP: the process and its socket stay, nothing answers
        wait_for(
            lambda: running.restarts(silent),
            HANG_GUARD * budget(s).killed_s,
            "the agent restart (SSM SendCommand)",
        )
        (sent,) = running.restarts(silent)
        assert sent["InstanceIds"] == [silent] and sent["DocumentName"] == s.restart_document
        assert pool.health(silent) == "Healthy"  # not replaced before its restart had its grace
        limit = budget(s).silent_s
        wait_for(lambda: pool.health(silent) == "Unhealthy", HANG_GUARD * limit, "the silent node replaced")
    assert running.ticks_until_action(silent, after=stopped_at, nth=2) <= ticks_for(limit, s)
    assert len(running.restarts(silent)) == 1  # once
    restart, replace = (r for r in running.records if r.get("kind") == "action")
    assert (restart["instance"], restart["action"], replace["action"]) == (silent, "restart", "replace")
    assert pool.command(restart["commandId"])["DocumentName"] == s.restart_document  # moto took it
    untouched(pool, running, alive)
    verdicts = running.verdicts(silent)
    assert verdicts.index("hung") < verdicts.index("restarting") < verdicts.index("hung-after-restart")


def test_with_redis_down_no_node_is_touched(fleet, redis_server) -> None:
    pool, agents = fleet
    s = settings(pool, redis_server)
    with controller(pool, s, {i: a.address for i, a in agents.items()}) as running:
        running.wait_healthy(3)
        redis_server.stop()
        blind_at = len(running.ticks())
        # Even an agent that then dies: its port refuses, but without heartbeats there is no quorum.
        agents[pool.instance_ids[0]].kill()
        # As many ticks as a silent node's replacement takes, and one more: it kept looking.
        ticks = running.wait_ticks(
            ticks_for(budget(s).silent_s, s) + 1, after=blind_at, timeout=HANG_GUARD * budget(s).silent_s
        )
    assert all(t["noQuorum"] for t in ticks[1:])
    untouched(pool, running, pool.instance_ids)
    assert not [r for r in running.records if r.get("kind") == "action"]


def test_a_node_draining_for_a_spot_notice_is_left_alone(
    tmp_path: Path, moto: str, redis_server: RedisServer, tiny_model: Path, engine_port: int
) -> None:
    pool = moto_pool(moto)
    imds = FakeImds(instance_id=pool.instance_ids[0])
    with ExitStack() as stack:
        server = stack.enter_context(ThreadedServer(imds))
        agents: dict[str, AgentProcess] = {}
        for n, instance_id in enumerate(pool.instance_ids):
            sections = (
                {"preemption": {"provider": "aws", "aws_imds_url": server.url, "aws_poll_s": 0.2}}
                if n == 0
                else {}
            )
            agents[instance_id] = start_agent(
                tmp_path / instance_id, instance_id, redis_server, engine_port, tiny_model, **sections
            )
            stack.callback(agents[instance_id].close)
        for agent in agents.values():
            agent.wait_ready()
        reclaimed = pool.instance_ids[0]
        s = settings(pool, redis_server)
        running = stack.enter_context(controller(pool, s, {i: a.address for i, a in agents.items()}))
        running.wait_healthy(3)
        imds.spot_action = spot_notice(120)
        wait_for(lambda: "draining" in running.verdicts(reclaimed), 30, "the controller to see the drain")
        # The spot reclaim takes the node (its agent goes quiet) while Auto Scaling still lists it running.
        agents[reclaimed].kill()
        quiet_at = len(running.ticks())
        running.wait_ticks(ticks_for(budget(s).silent_s, s) + 1, after=quiet_at, timeout=HANG_GUARD * 60)
        after = running.verdicts(reclaimed)[-(len(running.ticks()) - quiet_at) :]
    assert after and set(after) == {"draining"}
    untouched(pool, running, pool.instance_ids)


def test_a_node_whose_gpu_an_xid_condemns_is_replaced_after_its_grace(
    tmp_path: Path, moto: str, redis_server: RedisServer, tiny_model: Path, engine_port: int
) -> None:
    """XID 79 (fallen off the bus) on one of two GPU nodes, through the agent's fake NVML backend: the agent
    turns readiness off and stays up, heartbeating; the load balancer (moto) still calls it healthy. The
    controller replaces it once the not-ready grace is over, touches nothing else, and does not raise the
    group's capacity for the model that now has one ready node of the two it keeps."""
    pool = moto_pool(moto, size=2, max_size=4)
    arn = target_group(pool)
    condemned, healthy = pool.instance_ids
    gpu = FakeGpuBackend()
    with ExitStack() as stack:
        config = agent_config(
            tmp_path / condemned,
            condemned,
            redis_server,
            engine_port,
            tiny_model,
            node={"accelerator": "gpu"},
        )
        faulty = stack.enter_context(
            RunningAgent(write_config(tmp_path / condemned, config), gpu_backend=gpu)
        )
        other = start_agent(tmp_path / healthy, healthy, redis_server, engine_port, tiny_model)
        stack.callback(other.close)
        faulty.wait_state("ready", timeout=60)
        other.wait_ready()
        s = settings(pool, redis_server, min_ready={MODEL: 2})
        s = replace(s, pools=(replace(s.pools[0], target_group_arn=arn),))
        addresses = {condemned: ("127.0.0.1", config["server"]["port"]), healthy: other.address}
        running = stack.enter_context(controller(pool, s, addresses))
        running.wait_healthy(2)
        gpu.replay_xid(79)
        limit = budget(s).not_ready_s
        wait_for(lambda: pool.health(condemned) == "Unhealthy", limit * 3, f"{condemned} replaced")
        assert faulty.status()["state"] == "degraded"  # never recovered: the replacement was due
    (action,) = [r for r in running.records if r.get("kind") == "action"]
    assert (action["instance"], action["action"], action["verdict"]) == (
        condemned,
        "replace",
        "not-ready-too-long",
    )
    # The agent's own word (it answers 503, degraded) was the signal; its heartbeat and the load balancer's
    # verdict were no reason to keep it.
    assert action["signals"] == {
        "cloud": "running", "push": "live", "pull": "answers", "lb": "healthy", "agentState": "degraded",
        "ready": False,
    }  # fmt: skip
    assert "not-ready" in running.verdicts(condemned)
    untouched(pool, running, [healthy])
    assert running.restarts(condemned) == []
    assert not [r for r in running.records if r.get("kind") == "capacity"] and pool.desired() == 2
