"""Scale-in protection kept by the agent: while the node has work, its Auto Scaling group's scale-in passes
it by (SetInstanceProtection on this instance, with the instance role; identity from IMDS).

Protected when a request starts; released once none has been in flight for `release_after_s` (hysteresis:
one protect and one release a busy spell, and a node idle only between two requests is not offered up).
When every node is busy, a scale-in lowers the group's desired capacity and waits: Auto Scaling terminates
a node once its protection is released. What protection cannot cover (a scale-in that picked the node a
moment before its first request, an instance refresh, a spot reclaim, a health replacement) the
termination lifecycle hook's drain covers: the load balancer stops sending, the agent finishes what it has.

`ProtectionHysteresis` is the decision alone, on a clock it is given (bench/autoscale.py runs it);
`ScaleInProtection` applies it to the real instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from fleet_agent.aws import aws_client
from fleet_agent.config import ScaleInProtectionConfig
from fleet_agent.imds import ImdsSession
from fleet_agent.traffic import Traffic

log = logging.getLogger("fleet_agent.scale_in")

RETRY_BACKOFF_S = 1.0
RETRY_BACKOFF_MAX_S = 30.0


class ProtectionHysteresis:
    """Whether the instance should be protected, from requests in flight now and how long it has been idle."""

    def __init__(self, release_after_s: float) -> None:
        self.release_after_s = release_after_s
        self.protected = False
        self.idle_since: float | None = 0.0

    def wanted(self, now: float, inflight: int) -> bool | None:
        """True: protect now; False: release now; None: leave it as it is."""
        if inflight > 0:
            self.idle_since = None
            return None if self.protected else True
        if self.idle_since is None:
            self.idle_since = now
        if self.protected and now - self.idle_since >= self.release_after_s:
            return False
        return None

    def release_at(self) -> float | None:
        """When a protected, idle instance is due for release (None: not protected, or busy)."""
        if not self.protected or self.idle_since is None:
            return None
        return self.idle_since + self.release_after_s

    def applied(self, protected: bool) -> None:
        self.protected = protected


class ScaleInProtection:
    def __init__(
        self,
        config: ScaleInProtectionConfig,
        traffic: Traffic,
        imds: ImdsSession,
        *,
        leaving: Callable[[], bool],
    ) -> None:
        assert config.group_name is not None
        self.config = config
        self.group = config.group_name
        self.traffic = traffic
        self.imds = imds
        self.leaving = leaving  # draining or stopped: the group is terminating the node anyway
        self.policy = ProtectionHysteresis(config.release_after_s)
        self.calls: list[tuple[float, bool]] = []  # (when, protected) for every call the group accepted
        self._client: Any = None
        self._instance = ""

    async def run(self) -> None:
        backoff = RETRY_BACKOFF_S
        while not self.leaving():
            wanted = self.policy.wanted(time.monotonic(), self.traffic.inflight)
            if wanted is not None:
                if await self._set(wanted):
                    backoff = RETRY_BACKOFF_S
                else:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
                    continue
            await self._wait_for_change()

    async def _wait_for_change(self) -> None:
        """Until the node turns busy or idle, or a protected idle node is due for release."""
        traffic = self.traffic
        if traffic.inflight > 0:
            if self.policy.protected:
                await traffic.wait_idle(float("inf"))
            return
        release_at = self.policy.release_at()
        timeout = None if release_at is None else max(release_at - time.monotonic(), 0.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(traffic.wait_busy(), timeout)

    async def _set(self, protected: bool) -> bool:
        try:
            client = await self._autoscaling()
            await asyncio.to_thread(
                client.set_instance_protection,
                InstanceIds=[self._instance],
                AutoScalingGroupName=self.group,
                ProtectedFromScaleIn=protected,
            )
        except (ClientError, BotoCoreError, httpx.HTTPError, OSError) as exc:
            # Not InService (a warm pool, a terminating node), throttled, or unreachable: asked again later.
            log.warning("scale-in protection %s refused: %s", "on" if protected else "off", exc)
            return False
        self.policy.applied(protected)
        self.calls.append((time.time(), protected))
        log.info(
            "scale-in protection %s for %s in %s",
            "on (requests in flight)" if protected else f"off (idle {self.config.release_after_s:g} s)",
            self._instance,
            self.group,
        )
        return True

    async def _autoscaling(self) -> Any:
        if self._client is None:
            identity = await self.imds.identity()
            self._instance = identity.instance_id
            self._client = await asyncio.to_thread(
                aws_client,
                "autoscaling",
                identity.region,
                self.imds.base,
                self.config.timeout_s,
                self.config.attempts,
            )
        return self._client
