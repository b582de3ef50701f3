"""Draining: readiness off at once; a node behind a load balancer leaves it first (it deregisters from
its target groups when it is going away for good, and keeps serving what still arrives for
`load_balancer.leave_s`, while the load balancer stops sending); then new requests are refused, in-flight
ones finished (until a deadline taken from the notice), then the drained-hooks, then the engine stopped.
Every step is logged with its time.

Drained-hooks are a small pluggable list: a webhook POST, and the Auto Scaling lifecycle action
(`fleet_agent.aws`), which lets the group terminate the node as soon as it is drained and is kept open with
heartbeats while the drain runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from fleet_agent.aio import cancel_and_wait
from fleet_agent.config import AgentConfig, AwsLifecycleHook, DrainedHookConfig, WebhookHook

if TYPE_CHECKING:
    from fleet_agent.agent import Agent

log = logging.getLogger("fleet_agent.drain")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class DrainNotice:
    """Why to drain and by when: a cloud's notice, or SIGTERM."""

    source: (
        str  # "aws-spot", "aws-rebalance", "aws-asg-lifecycle", "gce-preempted", "gce-maintenance", "signal"
    )
    detail: str
    noticed_at: float  # wall clock
    deadline: float  # wall clock: the node may be gone after this

    @property
    def node_leaves(self) -> bool:
        """The cloud takes the node away. A signal may be a restart of the agent alone: the node stays in
        its target groups (their health check sees it back), as nothing would register it again."""
        return self.source != "signal"


@dataclass
class DrainReport:
    notice: DrainNotice
    inflight_at_notice: int
    readiness_off_at: float = 0.0
    target_groups: list[dict[str, Any]] = field(default_factory=list)  # DeregisterTargets, one per group
    deregistered_at: float | None = None
    refusing_from: float | None = None  # new requests refused from here (the load balancer has let go)
    inflight_done_at: float | None = None
    inflight_left: int = 0
    # A later notice that ends the node sooner (a spot interruption during a scale-in's drain): its source
    # and deadline, which the drain keeps from then on.
    hastened_by: dict[str, Any] | None = None
    hooks: list[dict[str, Any]] = field(default_factory=list)
    engine_stopped_at: float | None = None
    finished_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DrainedEvent:
    """What a drained-hook is told."""

    node_id: str
    region: str
    pool: str
    source: str
    detail: str
    noticed_at: float
    deadline: float
    inflight_left: int
    drained_at: float

    def payload(self) -> dict[str, Any]:
        return {
            "event": "node.drained",
            "node": self.node_id,
            "region": self.region,
            "pool": self.pool,
            "source": self.source,
            "detail": self.detail,
            "noticed_at": iso(self.noticed_at),
            "deadline": iso(self.deadline),
            "drained_at": iso(self.drained_at),
            "inflight_left": self.inflight_left,
        }


class DrainedHook(Protocol):
    name: str

    async def hold(self) -> None:
        """Run while the drain does (cancelled before `run`): e.g. keep a lifecycle action open."""
        ...

    async def run(self, event: DrainedEvent, deadline: float) -> None:
        """Do the hook's work before `deadline` (wall clock); raise on failure."""
        ...


class WebhookDrainedHook:
    """POSTs the drained event as JSON; retried on errors and 5xx while the deadline allows."""

    def __init__(self, config: WebhookHook, client: httpx.AsyncClient) -> None:
        self.config = config
        self.name = f"webhook {config.url.host}"
        self._client = client

    async def hold(self) -> None:
        return None

    async def run(self, event: DrainedEvent, deadline: float) -> None:
        problem = ""
        for attempt in range(1, self.config.attempts + 1):
            left = deadline - time.time()
            if left <= 0:
                break
            try:
                response = await self._client.post(
                    str(self.config.url),
                    json=event.payload(),
                    headers=self.config.headers,
                    timeout=min(self.config.timeout_s, left),
                )
            except httpx.HTTPError as exc:
                problem = f"attempt {attempt}: {exc!r}"
            else:
                if response.status_code < 300:
                    return
                problem = f"attempt {attempt}: answered {response.status_code}"
                if response.status_code < 500:
                    break  # the receiver refuses it; asking again will not help
            log.warning("drained-hook %s: %s", self.name, problem)
            await asyncio.sleep(min(0.5 * attempt, max(deadline - time.time(), 0)))
        raise RuntimeError(problem or "no time left before the deadline")


def make_hooks(
    configs: list[DrainedHookConfig], client: httpx.AsyncClient, imds_url: str
) -> list[DrainedHook]:
    hooks: list[DrainedHook] = []
    for config in configs:
        if isinstance(config, WebhookHook):
            hooks.append(WebhookDrainedHook(config, client))
        elif isinstance(config, AwsLifecycleHook):
            # botocore is loaded only where a hook needs it.
            from fleet_agent.aws import AwsLifecycleDrainedHook
            from fleet_agent.imds import ImdsSession

            hooks.append(AwsLifecycleDrainedHook(config, ImdsSession(imds_url, client)))
    return hooks


class TargetGroupLeaver(Protocol):
    async def deregister(self) -> list[dict[str, Any]]:
        """Deregister the node from its target groups: one result per group; never raises."""
        ...


class Drainer:
    def __init__(
        self, agent: Agent, hooks: list[DrainedHook], target_groups: TargetGroupLeaver | None = None
    ) -> None:
        self.agent = agent
        self.hooks = hooks
        self.target_groups = target_groups
        self.report: DrainReport | None = None
        self.deadline = 0.0  # the drain's: the notice's, or a later notice's when that comes first
        self._hastened = asyncio.Event()
        # While the node leaves its load balancer, the proxy still lets requests in, readiness off or not.
        self.accepting = False

    async def drain(self, notice: DrainNotice) -> DrainReport:
        agent = self.agent
        config: AgentConfig = agent.config
        report = self.report = DrainReport(notice=notice, inflight_at_notice=agent.traffic.inflight)
        self.deadline = notice.deadline

        def step(text: str, *args: object) -> None:
            elapsed = time.time() - notice.noticed_at
            log.warning("drain t+%.3fs: " + text, elapsed, *args)

        agent.state.drain(f"{notice.source}: {notice.detail}")
        report.readiness_off_at = time.time()
        step(
            "readiness off (%s: %s); %d request(s) in flight; deadline %s",
            notice.source,
            notice.detail,
            report.inflight_at_notice,
            iso(notice.deadline),
        )
        holds = [asyncio.create_task(hook.hold(), name=f"hold {hook.name}") for hook in self.hooks]
        try:
            # Leave the reserve for the hooks and the engine stop, but never less than nothing.
            wait_until = max(notice.deadline - config.drain.reserve_s, time.time())
            await self._leave(notice, report, wait_until, step)
            idle = await self._wait_idle(config.drain.reserve_s)
            report.inflight_left = agent.traffic.inflight
            report.inflight_done_at = time.time() if idle else None
            if idle:
                step("in-flight requests finished")
            else:
                step(
                    "deadline reached with %d request(s) still in flight; they will be cut",
                    report.inflight_left,
                )
        finally:
            await cancel_and_wait(holds)

        event = DrainedEvent(
            node_id=config.node.id,
            region=config.node.region,
            pool=config.node.pool,
            source=notice.source,
            detail=notice.detail,
            noticed_at=notice.noticed_at,
            deadline=self.deadline,
            inflight_left=report.inflight_left,
            drained_at=time.time(),
        )
        for hook in self.hooks:
            try:
                await hook.run(event, self.deadline)
            except Exception as exc:
                report.hooks.append({"hook": hook.name, "ok": False, "detail": str(exc), "at": time.time()})
                step("drained-hook %s failed: %s", hook.name, exc)
            else:
                report.hooks.append({"hook": hook.name, "ok": True, "detail": "done", "at": time.time()})
                step("drained-hook %s done", hook.name)

        await agent.probes.stop()  # nothing left to probe: the engine goes next
        await agent.runner.stop()
        report.engine_stopped_at = time.time()
        step("engine stopped")
        agent.state.stop(f"drained after {notice.source}")
        report.finished_at = time.time()
        step("drain complete")
        return report

    def hasten(self, notice: DrainNotice) -> bool:
        """A notice that comes while draining: its deadline is kept where it is the sooner (the node is
        reclaimed then, whatever the first notice allowed). True when it moved the drain's deadline."""
        if self.report is None or notice.deadline >= self.deadline:
            return False
        self.deadline = notice.deadline
        self.report.hastened_by = {
            "source": notice.source,
            "detail": notice.detail,
            "deadline": notice.deadline,
        }
        self._hastened.set()
        return True

    async def _wait_idle(self, reserve_s: float) -> bool:
        """True when no request is in flight before the drain's deadline less `reserve_s`, that deadline
        moved by `hasten` while waiting."""
        traffic = self.agent.traffic
        while True:
            self._hastened.clear()
            idle = asyncio.create_task(traffic.wait_idle(self.deadline - reserve_s - time.time()))
            hastened = asyncio.create_task(self._hastened.wait())
            try:
                await asyncio.wait((idle, hastened), return_when=asyncio.FIRST_COMPLETED)
                if idle.done():
                    return idle.result()
            finally:
                await cancel_and_wait([idle, hastened])

    async def _leave(
        self, notice: DrainNotice, report: DrainReport, wait_until: float, step: Callable[..., None]
    ) -> None:
        """Out of the load balancer before refusing work: deregistered (when the node goes away), then still
        serving what arrives for `leave_s`, so no request meets a refusal while another node could take it."""
        leave_s = self.agent.config.load_balancer.leave_seconds
        deregister = self.target_groups is not None and notice.node_leaves
        if not leave_s and not deregister:
            report.refusing_from = time.time()
            return
        self.accepting = True
        try:
            if deregister:
                assert self.target_groups is not None
                report.target_groups = await self.target_groups.deregister()
                report.deregistered_at = time.time()
                for result in report.target_groups:
                    step("target group %s: %s", result["target_group"], result["detail"])
            until = min(time.time() + leave_s, wait_until)  # a spot notice's deadline comes first
            step("serving what still arrives for %.1f s while the load balancer lets go", until - time.time())
            await asyncio.sleep(max(until - time.time(), 0.0))
        finally:
            self.accepting = False
        report.refusing_from = time.time()
        step("refusing new requests; %d in flight", self.agent.traffic.inflight)
