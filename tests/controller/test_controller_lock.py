"""Two controller ticks that overlap in time (one run's botocore calls outlasting its slot, the next run
already ticking), against a real redis-server with the program's ACL users and moto: the controller's
memory is read, decided on and written under its lock, so a restart record is never lost and a node is
never restarted twice.

The node is hung (its port accepts and never answers, no heartbeat): due one restart on the first tick.
Each scenario holds one tick at a chosen point with an event, and lets its lease run out by deleting the
lock key, as its expiry would; nothing waits on a clock.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from testkit.redis_server import RedisServer

from functions.fleet_controller.handler import Controller

from .world import MotoPool, RunningController, controller, moto_pool, settings

WAIT_S = 30  # a last guard on events: each is set by a step that takes well under a second


@pytest.fixture
def hung_node(moto: str) -> Iterator[tuple[MotoPool, tuple[str, int]]]:
    """A pool of one node whose agent's port completes the handshake and never answers."""
    pool = moto_pool(moto, size=1, max_size=2)
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)  # never accepted: reads time out
    try:
        yield pool, ("127.0.0.1", listener.getsockname()[1])
    finally:
        listener.close()


def restarts(*runs: RunningController) -> list[dict[str, Any]]:
    return [sent for run in runs for sent in run.sent]


def remembered(redis_server: RedisServer, pool: MotoPool) -> dict[str, Any]:
    with redis_server.admin() as admin:
        raw = admin.get(settings(pool, redis_server).memory_key)
    return json.loads(raw)["nodes"] if raw else {}


def lease_runs_out(redis_server: RedisServer, pool: MotoPool) -> None:
    with redis_server.admin() as admin:
        assert admin.delete(settings(pool, redis_server).lock_key) == 1


def tick_in_thread(c: Controller) -> threading.Thread:
    thread = threading.Thread(target=c.tick, daemon=True)
    thread.start()
    return thread


def test_a_tick_that_overlaps_one_sending_a_restart_skips_and_then_sees_the_record(
    hung_node, redis_server
) -> None:
    pool, address = hung_node
    (node,) = pool.instance_ids
    s = settings(pool, redis_server, confirmations=1)
    slow, other = controller(pool, s, {node: address}), controller(pool, s, {node: address})
    sending, release = threading.Event(), threading.Event()

    def held(**_: Any) -> None:  # the restart call takes longer than a tick (botocore's retries)
        sending.set()
        assert release.wait(WAIT_S)

    slow.controller.clients.ssm.meta.events.register("before-call.ssm.SendCommand", held)
    thread = tick_in_thread(slow.controller)
    try:
        assert sending.wait(WAIT_S)
        # The restart is remembered before it is sent.
        assert remembered(redis_server, pool)[node]["restarted_at"] is not None
        other.controller.tick()
        assert other.ticks()[-1]["skipped"] == "another tick holds the controller's lock"
        lease_runs_out(redis_server, pool)
        other.controller.tick()  # holds the lock now: reads the record, does not restart again
        assert "skipped" not in other.ticks()[-1]
    finally:
        release.set()
        thread.join(WAIT_S)
    assert [r["InstanceIds"] for r in restarts(slow, other)] == [[node]]
    verdicts = [r["verdict"] for r in other.records if r.get("instance") == node]
    assert verdicts and "hung" not in verdicts  # restarting (or, past its grace, hung-after-restart)
    assert remembered(redis_server, pool)[node]["restarted_at"] is not None


def test_a_tick_that_lost_its_lease_before_deciding_acts_on_nothing_and_writes_nothing(
    hung_node, redis_server
) -> None:
    pool, address = hung_node
    (node,) = pool.instance_ids
    s = settings(pool, redis_server, confirmations=1)
    polling, release = threading.Event(), threading.Event()

    def slow_address(instance: Any) -> tuple[str, int]:  # it has read the memory: none yet
        polling.set()
        assert release.wait(WAIT_S)
        return address

    slow = controller(pool, s, {}, address_for=slow_address)
    other = controller(pool, s, {node: address})
    thread = tick_in_thread(slow.controller)
    try:
        assert polling.wait(WAIT_S)
        lease_runs_out(redis_server, pool)
        other.controller.tick()  # decides, remembers and sends the restart
        sent_by_other = remembered(redis_server, pool)[node]["restarted_at"]
    finally:
        release.set()
        thread.join(WAIT_S)
    # The slow tick decided on a memory without the restart: it would restart the node again. It no
    # longer holds the lock, so it acts on nothing and its stale memory is never written.
    assert slow.ticks()[-1]["lockLost"] is True
    assert [r["InstanceIds"] for r in restarts(slow, other)] == [[node]]
    assert restarts(other) and not restarts(slow)
    assert remembered(redis_server, pool)[node]["restarted_at"] == sent_by_other
    assert not [r for r in slow.records if r.get("kind") == "action"]


def test_the_lock_is_released_only_by_its_owner(hung_node, redis_server) -> None:
    pool, address = hung_node
    (node,) = pool.instance_ids
    s = settings(pool, redis_server)
    run = controller(pool, s, {node: address})
    with redis_server.admin() as admin:
        admin.set(s.lock_key, "another-tick", px=60_000)
        run.controller.tick()  # skips, and leaves the other tick's lock alone
        assert admin.get(s.lock_key) == b"another-tick"
        admin.delete(s.lock_key)
        run.controller.tick()  # takes it, and gives it back at the end
        assert admin.get(s.lock_key) is None
    assert [t.get("skipped") is not None for t in run.ticks()] == [True, False]
