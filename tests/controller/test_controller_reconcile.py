"""The controller's I/O around the table, against moto (server mode) and a real redis-server with the
program's ACL users: orphans reported then terminated, ghosts removed, a model's fewest ready replicas
kept by raising its group, dry-run acting on nothing, overlapping runs never ticking twice, and each Redis
user held to its own keys. The nodes' agents here are stand-ins that answer /readyz (the real agents are
in test_controller_faults.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from testkit.moto_server import client
from testkit.redis_server import RedisServer

from functions.fleet_controller.handler import Controller
from functions.fleet_controller.signals import index_key, node_key

from .world import (
    CONTROLLER_USER,
    NODE_USER,
    REGION,
    MotoPool,
    controller,
    moto_pool,
    password,
    settings,
    target_group,
)


class StubAgents:
    """/readyz for several nodes on one port each: ready unless told otherwise."""

    def __init__(self, ids: list[str], state: str = "ready") -> None:
        self.states = dict.fromkeys(ids, state)
        self.servers: dict[str, ThreadingHTTPServer] = {}
        states = self.states
        for node in ids:

            class Handler(BaseHTTPRequestHandler):
                node_id = node

                def do_GET(self) -> None:
                    state = states[self.node_id]
                    body = json.dumps({"ready": state == "ready", "state": state}).encode()
                    self.send_response(200 if state == "ready" else 503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *args: object) -> None:
                    pass

            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers[node] = server

    def addresses(self) -> dict[str, tuple[str, int]]:
        return {n: ("127.0.0.1", s.server_address[1]) for n, s in self.servers.items()}

    def close(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


def beat(server: RedisServer, node: str, state: str = "ready") -> None:
    """A heartbeat as the agent writes it, as the nodes' user."""
    with redis.Redis(
        host=server.host, port=server.port, username=NODE_USER, password=password(NODE_USER)
    ) as r:
        record = {"node": node, "state": state, "ready": state == "ready", "time": time.time()}
        r.set(node_key("fleet", REGION, node), json.dumps(record), px=60_000)
        r.zadd(index_key("fleet", REGION), {node: time.time()})


@pytest.fixture
def pool(moto: str) -> MotoPool:
    return moto_pool(moto, size=2, max_size=4)


@pytest.fixture
def agents(pool: MotoPool) -> Iterator[StubAgents]:
    stubs = StubAgents(pool.instance_ids)
    yield stubs
    stubs.close()


def one_tick(
    pool: MotoPool, redis_server: RedisServer, agents: StubAgents, **changes
) -> tuple[Controller, list]:
    running = controller(pool, settings(pool, redis_server, **changes), agents.addresses())
    running.controller.tick()
    return running.controller, running.records


def test_orphans_are_reported_then_terminated_and_a_held_one_is_kept(pool, redis_server, agents) -> None:
    ec2 = client(pool.url, "ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]

    def launch(*extra: dict[str, str]) -> str:
        tags = [{"Key": "project", "Value": "inference-fleet"}, {"Key": "stack", "Value": pool.stack},
                {"Key": "pool", "Value": "tiny"}, *extra]  # fmt: skip
        spec = [{"ResourceType": "instance", "Tags": tags}]
        return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=spec)["Instances"][
            0
        ]["InstanceId"]

    orphan, held = launch(), launch({"Key": "fleet-hold", "Value": "debugging"})
    for node in pool.instance_ids:
        beat(redis_server, node)
    clock = [time.time()]
    running = controller(
        pool,
        settings(pool, redis_server, orphan_grace_s=600, reconcile_s=300),
        agents.addresses(),
        clock=lambda: clock[0],
    )
    running.controller.tick()
    reported = {r["instance"]: r["action"] for r in running.records if r.get("kind") == "orphan"}
    assert reported == {orphan: "report", held: "report"}
    clock[0] += 601  # past the grace, and a reconciliation pass due again
    for node in pool.instance_ids:
        beat(redis_server, node)
    running.controller.tick()
    state = {
        i["InstanceId"]: i["State"]["Name"]
        for r in ec2.describe_instances(InstanceIds=[orphan, held])["Reservations"]
        for i in r["Instances"]
    }
    assert state == {orphan: "terminated", held: "running"}
    assert [pool.health(i) for i in pool.instance_ids] == ["Healthy", "Healthy"]


def test_ghosts_are_removed_from_redis(pool, redis_server, agents) -> None:
    ec2 = client(pool.url, "ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    gone = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.terminate_instances(InstanceIds=[gone])
    never = "i-0123456789abcdef0"  # not even known to EC2 any more
    with redis_server.admin() as admin:
        now = time.time()
        admin.zadd(index_key("fleet", REGION), {gone: now - 600, never: now - 7200})
        admin.zadd(index_key("fleet", REGION), {"i-0fedcba9876543210": now})
        admin.set(node_key("fleet", REGION, "i-0fedcba9876543210"), json.dumps({"state": "ready"}), px=60_000)
    for node in pool.instance_ids:
        beat(redis_server, node)
    _, records = one_tick(pool, redis_server, agents)
    (ghosts,) = [r for r in records if r.get("kind") == "ghosts"]
    assert sorted(ghosts["forget"]) == sorted([gone, never])
    with redis_server.admin() as admin:
        left = {m.decode() for m in admin.zrange(index_key("fleet", REGION), 0, -1)}
    # A node still beating is not a ghost, whatever EC2 says (the cloud may lag): looked at again later.
    assert left == {*pool.instance_ids, "i-0fedcba9876543210"}


def test_a_model_below_its_minimum_raises_its_group_for_missing_nodes_only(
    pool, redis_server, agents
) -> None:
    first, second = pool.instance_ids
    for node in pool.instance_ids:
        beat(redis_server, node)
    # Two nodes, both ready, for a model that keeps three: the group lacks a node.
    _, records = one_tick(pool, redis_server, agents, min_ready={"tiny": 3})
    (capacity,) = [r for r in records if r.get("kind") == "capacity"]
    assert (capacity["desired"], capacity["new_desired"], capacity["ready"]) == (2, 3, 2)
    assert pool.desired() == 3
    # The group launched it (warming); then a GPU fault: one of the others answers degraded. It is there,
    # to be repaired, not compensated for: nothing more is raised.
    (new,) = set(moto_group_instances(pool)) - set(pool.instance_ids)
    warming = StubAgents([new], state="warming")
    agents.states[second] = "degraded"
    try:
        beat(redis_server, first)
        beat(redis_server, second, "degraded")
        beat(redis_server, new, "warming")
        running = controller(
            pool,
            settings(pool, redis_server, min_ready={"tiny": 3}),
            agents.addresses() | warming.addresses(),
        )
        running.controller.tick()
    finally:
        warming.close()
    assert not [r for r in running.records if r.get("kind") == "capacity"] and pool.desired() == 3
    verdicts = {r["instance"]: r["verdict"] for r in running.records if r.get("kind") == "node"}
    assert verdicts == {second: "not-ready", new: "warming"}


def moto_group_instances(pool: MotoPool) -> list[str]:
    groups = client(pool.url, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[pool.group])
    return [i["InstanceId"] for i in groups["AutoScalingGroups"][0]["Instances"]]


def test_dry_run_decides_and_logs_but_acts_on_nothing(pool, redis_server, agents) -> None:
    dead, alive = pool.instance_ids
    agents.close()  # nothing answers now: both look dead, only one may be repaired at a time
    beat(redis_server, alive)
    running = controller(
        pool, settings(pool, redis_server, dry_run=True, confirmations=1), {dead: ("127.0.0.1", 9)}
    )
    running.controller.tick()
    (action,) = [r for r in running.records if r.get("kind") == "action"]
    assert (action["instance"], action["action"], action["dryRun"]) == (dead, "replace", True)
    assert pool.health(dead) == "Healthy"


def test_overlapping_runs_never_tick_the_same_slot(pool, redis_server, agents) -> None:
    s = settings(pool, redis_server, tick_s=1.0, run_seconds=3.0)
    first = controller(pool, s, agents.addresses())
    second = controller(pool, s, agents.addresses())
    threads = [
        threading.Thread(target=r.controller.run, kwargs={"time_left": lambda: 60.0}) for r in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    slots = [int(t["at"] // s.tick_s) for r in (first, second) for t in r.ticks()]
    assert len(slots) >= 3 and len(slots) == len(set(slots))


def test_each_redis_user_is_held_to_its_own_keys(redis_server) -> None:
    def as_user(name: str) -> redis.Redis:
        return redis.Redis(
            host=redis_server.host, port=redis_server.port, username=name, password=password(name)
        )

    with as_user(NODE_USER) as node, as_user(CONTROLLER_USER) as ctl, redis_server.admin() as gateway:
        gateway.set("litellm:routing", "x")
        node.set(node_key("fleet", REGION, "i-1"), "{}")  # its own record: allowed
        node.zadd(index_key("fleet", REGION), {"i-1": 1.0})
        for denied in (
            lambda: node.get(node_key("fleet", REGION, "i-1")),  # writes only
            lambda: node.set(f"fleet:{REGION}:controller:memory", "{}"),  # not the controller's memory
            lambda: node.set(node_key("fleet", "us-west-2", "i-1"), "{}"),  # not another region's keys
            lambda: node.get("litellm:routing"),
            lambda: ctl.get("litellm:routing"),  # the controller never sees the gateway's state
            lambda: ctl.flushall(),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                denied()
        assert ctl.mget([node_key("fleet", REGION, "i-1")]) == [b"{}"]
        ctl.set(f"fleet:{REGION}:controller:memory", "{}")
        # Its lock's compare-and-set runs as a script, whose commands its rules hold too.
        assert ctl.eval(
            "return redis.call('SET', KEYS[1], ARGV[1])", 1, f"fleet:{REGION}:controller:lock", "t"
        )
        with pytest.raises(redis.exceptions.NoPermissionError):
            ctl.eval("return redis.call('GET', KEYS[1])", 1, "litellm:routing")


def test_the_load_balancer_calling_a_node_healthy_saves_it_and_an_unreadable_one_stops_all_repairs(
    pool, redis_server, agents
) -> None:
    arn = target_group(pool)
    agents.close()  # no agent answers and none beats: dead by every signal but the load balancer's
    s = settings(pool, redis_server, confirmations=1)
    with_lb = replace(s, pools=(replace(s.pools[0], target_group_arn=arn),))
    running = controller(pool, with_lb, {i: ("127.0.0.1", 9) for i in pool.instance_ids})
    running.controller.tick()
    nodes = [r for r in running.records if r.get("kind") == "node"]
    # moto reports every registered target healthy: the signals disagree, nothing is repaired.
    assert {(r["verdict"], r["signals"]["lb"]) for r in nodes} == {("degraded", "healthy")}
    unreadable = replace(s, pools=(replace(s.pools[0], target_group_arn=arn + "-gone"),))
    blind = controller(pool, unreadable, {i: ("127.0.0.1", 9) for i in pool.instance_ids})
    blind.controller.tick()
    (tick,) = blind.ticks()
    assert tick["noQuorum"] and "cloud read failed" in tick["why"]
    assert [pool.health(i) for i in pool.instance_ids] == ["Healthy", "Healthy"]
