"""The preemption watchers against fakes that speak IMDSv2 and GCE metadata."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from fleet_agent.config import AgentConfig, EngineConfig, PreemptionConfig
from fleet_agent.drain import DrainNotice
from fleet_agent.preemption import AwsImdsWatcher, GceMetadataWatcher, make_watcher

from .agent_testkit.asgi import Receive, Scope, Send
from .agent_testkit.fake_metadata import FakeGceMetadata, FakeImds
from .agent_testkit.net import serving, wait_for

SPOT, REBALANCE, LIFECYCLE = (
    AwsImdsWatcher.SPOT_PATH,
    AwsImdsWatcher.REBALANCE_PATH,
    AwsImdsWatcher.LIFECYCLE_PATH,
)


def agent_config(**preemption: object) -> AgentConfig:
    return AgentConfig(
        engine=EngineConfig(kind="vllm", models=["m"]),
        preemption=PreemptionConfig.model_validate(preemption),
    )


class Answered:
    """A fake's ASGI app, noting the path and status of every answer it gives (what the watcher has seen)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.answers: list[tuple[str, int]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def noting(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.answers.append((scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, noting)

    def polled(self, path: str, status: int) -> bool:
        return (path, status) in self.answers

    def polled_after(self, first: tuple[str, int], then: str) -> bool:
        """Whether `then` was asked after the answer `first`: the watcher has dealt with that answer."""
        answers = list(self.answers)
        return first in answers and then in [p for p, _ in answers[answers.index(first) + 1 :]]


async def notices_after(
    watcher: AwsImdsWatcher | GceMetadataWatcher,
    act: Callable[[], None],
    watching: Callable[[], bool],
    until: Callable[[list[DrainNotice]], bool],
) -> list[DrainNotice]:
    """Run the watcher; once `watching()` says it watches, call `act()`; return its notices once `until`
    says so. Each wait is on what the fake saw, with a deadline only as a guard."""
    notices: list[DrainNotice] = []
    task = asyncio.create_task(watcher.watch(notices.append))
    try:
        await asyncio.to_thread(wait_for, lambda: watching() or task.done(), 60, "the watcher to watch")
        assert not task.done() and not notices, "a notice before anything happened"
        await asyncio.to_thread(act)
        await asyncio.to_thread(wait_for, lambda: until(notices), 60, "the watcher to see it")
        return notices
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def first_notice(
    watcher: AwsImdsWatcher | GceMetadataWatcher, act: Callable[[], None], watching: Callable[[], bool]
) -> DrainNotice:
    return (await notices_after(watcher, act, watching, bool))[0]


def test_aws_spot_interruption_with_imdsv2_token() -> None:
    imds = FakeImds()
    answered = Answered(imds)
    with serving(answered) as server:
        config = agent_config(provider="aws", aws_imds_url=server.url, aws_poll_s=0.1)

        async def scenario() -> DrainNotice:
            async with httpx.AsyncClient() as client:
                watcher = make_watcher(config, client)
                assert isinstance(watcher, AwsImdsWatcher)

                def interrupt() -> None:
                    imds.expire_tokens()  # a token that stops working is renewed, not fatal
                    imds.spot_action = {"action": "stop", "time": "2026-11-23T10:22:00Z"}

                # Watching: it holds a session token and polls.
                return await first_notice(watcher, interrupt, lambda: answered.polled(SPOT, 404))

        notice = asyncio.run(scenario())
    assert notice.source == "aws-spot"
    assert notice.detail == "spot interruption: stop"
    assert notice.deadline == datetime(2026, 11, 23, 10, 22, tzinfo=UTC).timestamp()
    assert imds.token_requests == 2  # one session token, renewed once after the 401
    assert imds.unauthorized >= 1


@pytest.mark.parametrize(("on_rebalance", "drains"), [("drain", True), ("log", False)])
def test_aws_rebalance_recommendation(on_rebalance: str, drains: bool) -> None:
    imds = FakeImds()
    answered = Answered(imds)
    with serving(answered) as server:
        config = agent_config(
            provider="aws", aws_imds_url=server.url, aws_poll_s=0.1, on_rebalance=on_rebalance
        )

        async def scenario() -> list[DrainNotice]:
            async with httpx.AsyncClient() as client:
                watcher = AwsImdsWatcher(config, client)

                def recommend() -> None:
                    imds.rebalance = {"noticeTime": "2026-11-23T10:20:00Z"}

                # Once it has polled again after being shown the recommendation, it has decided.
                return await notices_after(
                    watcher,
                    recommend,
                    lambda: answered.polled(REBALANCE, 404),
                    lambda _: answered.polled_after((REBALANCE, 200), SPOT),
                )

        notices = asyncio.run(scenario())
    if drains:
        (notice,) = notices
        assert notice.source == "aws-rebalance"
        assert "noticeTime 2026-11-23T10:20:00Z" in notice.detail
        assert notice.deadline - notice.noticed_at == pytest.approx(config.drain.timeout_s)
    else:
        assert notices == []


def test_aws_auto_scaling_termination_drains() -> None:
    """A scale-in or instance refresh shows as the target lifecycle state, with no spot notice."""
    imds = FakeImds()
    imds.target_lifecycle_state = "InService"
    answered = Answered(imds)
    with serving(answered) as server:
        config = agent_config(provider="aws", aws_imds_url=server.url, aws_poll_s=0.1)

        async def scenario() -> DrainNotice:
            async with httpx.AsyncClient() as client:
                watcher = AwsImdsWatcher(config, client)
                return await first_notice(
                    watcher,
                    lambda: setattr(imds, "target_lifecycle_state", "Terminated"),
                    lambda: answered.polled(LIFECYCLE, 200),
                )

        notice = asyncio.run(scenario())
    assert notice.source == "aws-asg-lifecycle"
    assert notice.detail == "Auto Scaling target lifecycle state Terminated"
    assert notice.deadline - notice.noticed_at == pytest.approx(config.drain.timeout_s)


def test_aws_metadata_down_is_retried_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    config = agent_config(provider="aws", aws_imds_url="http://127.0.0.1:9", aws_poll_s=0.1)

    def failed() -> bool:
        return any(r.getMessage().startswith("metadata service: ") for r in caplog.records)

    async def scenario() -> bool:
        async with httpx.AsyncClient() as client:
            task = asyncio.create_task(AwsImdsWatcher(config, client).watch(lambda notice: None))
            await asyncio.to_thread(wait_for, lambda: failed() or task.done(), 60, "a failed request")
            alive = not task.done()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return alive

    assert asyncio.run(scenario())


@pytest.mark.parametrize(
    ("key", "value", "source"),
    [
        ("preempted", "TRUE", "gce-preempted"),
        ("maintenance-event", "TERMINATE_ON_HOST_MAINTENANCE", "gce-maintenance"),
    ],
)
def test_gce_notices_with_wait_for_change(key: str, value: str, source: str) -> None:
    gce = FakeGceMetadata()
    with serving(gce) as server:
        config = agent_config(provider="gce", gce_metadata_url=server.url, gce_preempted_grace_s=25)

        async def scenario() -> DrainNotice:
            async with httpx.AsyncClient() as client:
                watcher = GceMetadataWatcher(config, client)
                gce.set("maintenance-event", "MIGRATE_ON_HOST_MAINTENANCE")  # not for us: GPU VMs terminate
                # Watching: it hangs on wait_for_change for both values (it does not poll).
                return await first_notice(watcher, lambda: gce.set(key, value), lambda: gce.waits >= 2)

        started = time.time()
        notice = asyncio.run(scenario())
    assert notice.source == source
    assert gce.waits >= 2  # it hung on wait_for_change rather than polling
    grace = 25 if source == "gce-preempted" else config.drain.timeout_s
    assert notice.deadline == pytest.approx(notice.noticed_at + grace)
    assert notice.noticed_at >= started


def test_gce_needs_the_metadata_flavor_header() -> None:
    gce = FakeGceMetadata()
    with serving(gce) as server:
        assert httpx.get(server.url + "/computeMetadata/v1/instance/preempted").status_code == 403
        answer = httpx.get(
            server.url + "/computeMetadata/v1/instance/preempted", headers={"Metadata-Flavor": "Google"}
        )
        assert (answer.text, answer.headers["metadata-flavor"]) == ("FALSE", "Google")
