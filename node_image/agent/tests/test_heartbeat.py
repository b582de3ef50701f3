"""Heartbeats against a real redis-server: a JSON record with a TTL, the node in the region's
sorted set, and a Redis that is down never stopping anything."""

from __future__ import annotations

import asyncio
import json
import time

import redis

from fleet_agent.config import HeartbeatConfig, NodeConfig
from fleet_agent.heartbeat import Heartbeat, index_key, node_key

NODE = NodeConfig(id="gpu-7", region="us-east-1", pool="llama-8b")


def snapshot() -> dict[str, object]:
    return {
        "node": "gpu-7",
        "state": "ready",
        "models": ["m"],
        "load": {"in_flight": 3},
        "gpu": {"healthy": True},
    }


def test_record_with_ttl_and_index(redis_url: str) -> None:
    # Long enough that no stall of a busy machine between the beat and the reads below expires the record.
    config = HeartbeatConfig(redis_url=redis_url, period_s=1, ttl_s=600, key_prefix="t1")

    async def beat() -> bool:
        heartbeat = Heartbeat(redis_url, config, NODE, snapshot)
        try:
            return await heartbeat.beat()
        finally:
            await heartbeat.close()

    before = time.time()
    assert asyncio.run(beat())
    client = redis.Redis.from_url(redis_url)
    key = node_key("t1", "us-east-1", "gpu-7")
    assert key == "t1:us-east-1:node:gpu-7"
    record = json.loads(client.get(key))  # type: ignore[arg-type]
    assert record["state"] == "ready" and record["load"] == {"in_flight": 3}
    assert record["time"] >= before
    assert 300_000 < client.pttl(key) <= 600_000  # the configured TTL, not the default 15 s
    score = client.zscore(index_key("t1", "us-east-1"), "gpu-7")
    assert score is not None and score >= before
    client.close()


def test_redis_down_is_reported_and_never_raises() -> None:
    url = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    config = HeartbeatConfig(redis_url=url)

    async def beats() -> tuple[bool, bool, int]:
        heartbeat = Heartbeat(url, config, NODE, snapshot)
        first, second = await heartbeat.beat(), await heartbeat.beat()
        await heartbeat.close()
        return first, second, heartbeat.failures

    assert asyncio.run(beats()) == (False, False, 2)
