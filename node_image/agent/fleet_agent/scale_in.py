"""Scale-in protection kept by the agent: while the node has work, its Auto Scaling group's scale-in passes
it by (SetInstanceProtection on this instance, with the instance role; identity from IMDS).

Protected when a request starts; released once none has been in flight for `release_after_s` (hysteresis:
one protect and one release a busy spell, and a node idle only between two requests is not offered up).
So a scale-in takes idle nodes while there are any.

Under steady traffic the load balancer keeps every node busy, and protection alone would hold a scale-in
off for as long as the traffic lasts (bench/autoscale.py measured it: the extra nodes never left). So the
agent also watches its group (DescribeAutoScalingGroups every `group_check_s`): once the group has held
more instances in service than it wants for `yield_after_s`, protection yields, busy or not, until the
group is back at its desired size. The node Auto Scaling then picks leaves its load balancer first
(deregistration waits for its requests) and its termination hook's drain finishes what it holds. The
same drain covers what protection never could: an instance refresh, a spot reclaim, a health replacement.

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
AWS_ERRORS = (ClientError, BotoCoreError, httpx.HTTPError, OSError)


class ProtectionHysteresis:
    """Whether the instance should be protected: from requests in flight now, how long it has been idle,
    and whether its group has waited too long for a scale-in (`yielding`)."""

    def __init__(self, release_after_s: float) -> None:
        self.release_after_s = release_after_s
        self.protected = False
        self.idle_since: float | None = 0.0

    def wanted(self, now: float, inflight: int, *, yielding: bool = False) -> bool | None:
        """True: protect now; False: release now; None: leave it as it is."""
        if inflight > 0:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = now
        if yielding:
            return False if self.protected else None
        if inflight > 0:
            return None if self.protected else True
        assert self.idle_since is not None
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


class GroupWatch:
    """Whether the group has been above its desired capacity for `yield_after_s` (on a given clock)."""

    def __init__(self, yield_after_s: float) -> None:
        self.yield_after_s = yield_after_s
        self.over_since: float | None = None

    def observe(self, now: float, in_service: int, desired: int) -> bool:
        """A reading of the group; True while protection should yield."""
        if in_service <= desired:
            self.over_since = None
            return False
        if self.over_since is None:
            self.over_since = now
        return now - self.over_since >= self.yield_after_s


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
        self.watch = GroupWatch(config.yield_after_s)
        self.yielding = False
        self.calls: list[tuple[float, bool]] = []  # (when, protected) for every call the group accepted
        self._changed = asyncio.Event()  # the group's verdict changed
        self._client: Any = None
        self._client_lock = asyncio.Lock()  # the watcher and the work follower share one client
        self._instance = ""

    async def run(self) -> None:
        watcher = asyncio.create_task(self._watch_group(), name="scale-in-group")
        try:
            await self._follow_work()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _follow_work(self) -> None:
        backoff = RETRY_BACKOFF_S
        while not self.leaving():
            self._changed.clear()
            wanted = self.policy.wanted(time.monotonic(), self.traffic.inflight, yielding=self.yielding)
            if wanted is not None:
                if await self._set(wanted):
                    backoff = RETRY_BACKOFF_S
                else:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
                    continue
            await self._wait_for_change()

    async def _wait_for_change(self) -> None:
        """Until the node turns busy or idle, a protected idle node is due for release, or the group's
        verdict changes."""
        traffic, policy = self.traffic, self.policy
        if traffic.inflight > 0:
            if not policy.protected:  # yielding while busy: only the group's verdict matters
                await self._changed.wait()
                return
            change = asyncio.ensure_future(traffic.wait_idle(float("inf")))
            timeout = None
        else:
            change = asyncio.ensure_future(traffic.wait_busy())
            release_at = policy.release_at()
            timeout = None if release_at is None else max(release_at - time.monotonic(), 0.0)
        verdict = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({change, verdict}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (change, verdict):
                waiter.cancel()

    async def _watch_group(self) -> None:
        while True:
            try:
                client = await self._autoscaling()
                answer = await asyncio.to_thread(
                    client.describe_auto_scaling_groups, AutoScalingGroupNames=[self.group]
                )
            except AWS_ERRORS as exc:
                log.warning("reading group %s failed: %s", self.group, exc)
            else:
                for group in answer.get("AutoScalingGroups", []):
                    in_service = sum(1 for i in group["Instances"] if i["LifecycleState"] == "InService")
                    yielding = self.watch.observe(time.monotonic(), in_service, group["DesiredCapacity"])
                    if yielding != self.yielding:
                        desired = group["DesiredCapacity"]
                        log.info(
                            "group %s: %s", self.group,
                            f"{in_service} in service above its desired {desired}: protection yields"
                            if yielding else "back at its desired size",
                        )  # fmt: skip
                        self.yielding = yielding
                        self._changed.set()
            await asyncio.sleep(self.config.group_check_s)

    async def _set(self, protected: bool) -> bool:
        try:
            client = await self._autoscaling()
            await asyncio.to_thread(
                client.set_instance_protection,
                InstanceIds=[self._instance],
                AutoScalingGroupName=self.group,
                ProtectedFromScaleIn=protected,
            )
        except AWS_ERRORS as exc:
            # Not InService (a warm pool, a terminating node), throttled, or unreachable: asked again later.
            log.warning("scale-in protection %s refused: %s", "on" if protected else "off", exc)
            return False
        self.policy.applied(protected)
        self.calls.append((time.time(), protected))
        why = "requests in flight" if protected else ("the group yields" if self.yielding else "idle")
        log.info(
            "scale-in protection %s (%s) for %s in %s",
            "on" if protected else "off",
            why,
            self._instance,
            self.group,
        )
        return True

    async def _autoscaling(self) -> Any:
        async with self._client_lock:
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
