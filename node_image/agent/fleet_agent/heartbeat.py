"""Heartbeats to the regional Redis: one JSON record per node under a key with a TTL, and the
node's last beat time in a sorted set. A node that goes silent loses its record when the TTL
runs out while it stays in the set with an old score: readers see both "gone" and "since when".

Redis being slow or down never touches serving: every call is bounded by a short timeout, and a
failure is logged once per outage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from fleet_agent import constants as c
from fleet_agent.config import HeartbeatConfig, NodeConfig

log = logging.getLogger("fleet_agent.heartbeat")


def node_key(prefix: str, region: str, node_id: str) -> str:
    return f"{prefix}:{region}:node:{node_id}"


def index_key(prefix: str, region: str) -> str:
    return f"{prefix}:{region}:nodes"


class Heartbeat:
    def __init__(
        self,
        url: str,
        config: HeartbeatConfig,
        node: NodeConfig,
        snapshot: Callable[[], dict[str, Any]],
    ) -> None:
        password = None
        if config.redis_password_file is not None:
            password = config.redis_password_file.read_text(encoding="utf-8").strip()
        self._client = redis.Redis.from_url(
            url,
            password=password,
            socket_timeout=c.REDIS_TIMEOUT_S,
            socket_connect_timeout=c.REDIS_TIMEOUT_S,
        )
        self._config = config
        self._snapshot = snapshot
        self.key = node_key(config.key_prefix, node.region, node.id)
        self.index = index_key(config.key_prefix, node.region)
        self.node_id = node.id
        self.failures = 0
        self.last_ok: float | None = None
        self._failing = False

    async def run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self._config.period_s)

    async def beat(self) -> bool:
        now = time.time()
        record = {**self._snapshot(), "time": now}
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(
                    self.key, json.dumps(record, separators=(",", ":")), px=int(self._config.ttl_s * 1000)
                )
                pipe.zadd(self.index, {self.node_id: now})
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can drop a cancellation (probes.py).
                async with asyncio.timeout(c.REDIS_TIMEOUT_S * 2):
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            if not self._failing:
                log.warning("heartbeat to Redis failed (serving goes on): %r", exc)
                self._failing = True
            return False
        if self._failing:
            log.info("heartbeat to Redis restored")
            self._failing = False
        self.last_ok = now
        return True

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
