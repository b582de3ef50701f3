"""Watching the cloud for the node's end: AWS IMDSv2 (spot interruption, rebalance recommendation)
and GCE metadata (preemption, host maintenance). A watcher calls `on_notice` once per notice; it
never raises: a metadata service that fails is logged and asked again."""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime

import httpx

from fleet_agent import constants as c
from fleet_agent.config import AgentConfig, PreemptionConfig
from fleet_agent.drain import DrainNotice
from fleet_agent.imds import ImdsSession

log = logging.getLogger("fleet_agent.preemption")

NoticeHandler = Callable[[DrainNotice], None]


class Watcher(ABC):
    def __init__(self, config: AgentConfig, client: httpx.AsyncClient) -> None:
        self.config: PreemptionConfig = config.preemption
        self.drain_timeout_s = config.drain.timeout_s
        self.lifecycle_timeout_s = config.drain.lifecycle_timeout_s
        self.client = client
        self._last_error = ""

    @abstractmethod
    async def watch(self, on_notice: NoticeHandler) -> None: ...

    async def _failed(self, what: str, exc: BaseException | str) -> None:
        """Log a failure once per kind until it changes, then wait before asking again."""
        text = f"{what}: {exc!r}" if isinstance(exc, BaseException) else f"{what}: {exc}"
        if text != self._last_error:
            log.warning("metadata service: %s", text)
            self._last_error = text
        await asyncio.sleep(c.METADATA_ERROR_BACKOFF_S)


def parse_time(text: str) -> float | None:
    """'2026-11-23T10:22:00Z' -> epoch seconds."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


class AwsImdsWatcher(Watcher):
    """IMDSv2: polls (<= 2 s, as AWS's own node-termination-handler does) of the spot instance-action,
    the rebalance recommendation and the Auto Scaling target lifecycle state. The first two answer 404
    until there is a notice; the third names the state the group moves the instance to (404 outside a
    group), `Terminated` or `Warmed:*` once a scale-in, instance refresh or replacement takes it."""

    SPOT_PATH = "/latest/meta-data/spot/instance-action"
    REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
    LIFECYCLE_PATH = "/latest/meta-data/autoscaling/target-lifecycle-state"

    def __init__(self, config: AgentConfig, client: httpx.AsyncClient) -> None:
        super().__init__(config, client)
        self.imds = ImdsSession(str(self.config.aws_imds_url), client)
        self._rebalance_seen = False
        self._leaving = False  # the group takes the node away: only a spot interruption matters now

    async def watch(self, on_notice: NoticeHandler) -> None:
        while True:
            try:
                notice = await self._poll()
            except httpx.HTTPError as exc:
                self.imds.forget_token()
                await self._failed("IMDS request failed", exc)
                continue
            if notice is not None:
                on_notice(notice)
                if notice.source == "aws-spot":
                    return  # the node is going away; nothing further to watch
                # Leaving its group, a spot node may still be reclaimed first (a capacity rebalance's
                # termination, then the interruption): only that is watched for now.
                self._leaving = self._leaving or notice.source == "aws-asg-lifecycle"
            await asyncio.sleep(self.config.aws_poll_s)

    async def _poll(self) -> DrainNotice | None:
        spot = await self.imds.get(self.SPOT_PATH)
        if spot is not None:
            body = spot.json()
            deadline = parse_time(str(body.get("time", ""))) or time.time() + self.drain_timeout_s
            action = body.get("action", "terminate")
            return DrainNotice("aws-spot", f"spot interruption: {action}", time.time(), deadline)
        if self._leaving:
            return None
        target = await self.imds.get(self.LIFECYCLE_PATH)
        state = target.text.strip() if target is not None else ""
        if state in c.AWS_LEAVING_LIFECYCLE_STATES:
            # The group holds the instance in Terminating:Wait (or Warmed:Pending:Wait) while the drained-hook
            # sends heartbeats, so the drain may wait for a request as long as the gateway lets one run.
            detail = f"Auto Scaling target lifecycle state {state}"
            now = time.time()
            return DrainNotice("aws-asg-lifecycle", detail, now, now + self.lifecycle_timeout_s)
        if not self._rebalance_seen:
            rebalance = await self.imds.get(self.REBALANCE_PATH)
            if rebalance is not None:
                self._rebalance_seen = True
                noticed = rebalance.json().get("noticeTime", "")
                if self.config.on_rebalance == "log":
                    log.warning(
                        "AWS rebalance recommendation (noticeTime %s); on_rebalance=log: not draining",
                        noticed,
                    )
                    return None
                detail = f"rebalance recommendation (noticeTime {noticed})"
                return DrainNotice("aws-rebalance", detail, time.time(), time.time() + self.drain_timeout_s)
        return None


class GceMetadataWatcher(Watcher):
    """GCE metadata: `instance/preempted` turns TRUE about 30 s before a Spot VM is stopped, and
    `instance/maintenance-event` names TERMINATE_ON_HOST_MAINTENANCE ahead of maintenance (GPU VMs
    cannot live-migrate). Each is watched with wait_for_change and the last ETag, so a change
    between two requests is never missed."""

    PREEMPTED_PATH = "/computeMetadata/v1/instance/preempted"
    MAINTENANCE_PATH = "/computeMetadata/v1/instance/maintenance-event"

    def __init__(self, config: AgentConfig, client: httpx.AsyncClient) -> None:
        super().__init__(config, client)
        self.base = str(self.config.gce_metadata_url).rstrip("/")

    async def watch(self, on_notice: NoticeHandler) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_value(self.PREEMPTED_PATH, self._preempted, on_notice))
            group.create_task(self._watch_value(self.MAINTENANCE_PATH, self._maintenance, on_notice))

    def _preempted(self, value: str) -> DrainNotice | None:
        if value.strip().upper() != "TRUE":
            return None
        now = time.time()
        return DrainNotice(
            "gce-preempted", "instance preempted", now, now + self.config.gce_preempted_grace_s
        )

    def _maintenance(self, value: str) -> DrainNotice | None:
        if value.strip().upper() != "TERMINATE_ON_HOST_MAINTENANCE":
            return None
        now = time.time()
        return DrainNotice("gce-maintenance", "host maintenance: terminate", now, now + self.drain_timeout_s)

    async def _watch_value(
        self,
        path: str,
        judge: Callable[[str], DrainNotice | None],
        on_notice: NoticeHandler,
    ) -> None:
        etag: str | None = None
        first = True
        while True:
            params: dict[str, str] = {}
            timeout = c.METADATA_TIMEOUT_S
            if not first:  # the current value is known: hang until it changes
                params = {"wait_for_change": "true", "timeout_sec": str(self.config.gce_wait_timeout_s)}
                if etag is not None:
                    params["last_etag"] = etag
                timeout += self.config.gce_wait_timeout_s
            try:
                response = await self.client.get(
                    self.base + path, params=params, headers={"Metadata-Flavor": "Google"}, timeout=timeout
                )
            except httpx.HTTPError as exc:
                await self._failed(f"GET {path}", exc)
                continue
            if response.status_code != 200 or response.headers.get("Metadata-Flavor") != "Google":
                await self._failed(
                    f"GET {path}", f"answered {response.status_code} without Metadata-Flavor: Google"
                )
                continue
            first = False
            etag = response.headers.get("ETag", etag)
            notice = judge(response.text)
            if notice is not None:
                on_notice(notice)
                return


def make_watcher(config: AgentConfig, client: httpx.AsyncClient, *, in_pod: bool = False) -> Watcher | None:
    if in_pod and config.preemption.provider != "none":
        # The machine's end reaches a pod as the kubelet's SIGTERM: the cluster evicts it first.
        log.warning(
            "preemption.provider=%s ignored in a Kubernetes pod: the kubelet's SIGTERM is the drain signal",
            config.preemption.provider,
        )
        return None
    if config.preemption.provider == "aws":
        return AwsImdsWatcher(config, client)
    if config.preemption.provider == "gce":
        return GceMetadataWatcher(config, client)
    return None
