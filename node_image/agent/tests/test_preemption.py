"""The preemption watchers against fakes that speak IMDSv2 and GCE metadata."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
import pytest

from fleet_agent.config import AgentConfig, EngineConfig, PreemptionConfig
from fleet_agent.drain import DrainNotice
from fleet_agent.preemption import AwsImdsWatcher, GceMetadataWatcher, make_watcher

from .agent_testkit.fake_metadata import FakeGceMetadata, FakeImds
from .agent_testkit.net import serving


def agent_config(**preemption: object) -> AgentConfig:
    return AgentConfig(
        engine=EngineConfig(kind="vllm", models=["m"]),
        preemption=PreemptionConfig.model_validate(preemption),
    )


async def first_notice(watcher: AwsImdsWatcher | GceMetadataWatcher, act, within: float = 10) -> DrainNotice:
    """Run the watcher, call `act()` once it is watching, return the first notice it raises."""
    notices: asyncio.Queue[DrainNotice] = asyncio.Queue()
    task = asyncio.create_task(watcher.watch(notices.put_nowait))
    try:
        await asyncio.sleep(0.5)  # let it settle into its watch
        assert notices.empty(), "a notice before anything happened"
        await asyncio.to_thread(act)
        return await asyncio.wait_for(notices.get(), within)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_aws_spot_interruption_with_imdsv2_token() -> None:
    imds = FakeImds()
    with serving(imds) as server:
        config = agent_config(provider="aws", aws_imds_url=server.url, aws_poll_s=0.1)

        async def scenario() -> DrainNotice:
            async with httpx.AsyncClient() as client:
                watcher = make_watcher(config, client)
                assert isinstance(watcher, AwsImdsWatcher)

                def interrupt() -> None:
                    imds.expire_tokens()  # a token that stops working is renewed, not fatal
                    imds.spot_action = {"action": "stop", "time": "2026-11-23T10:22:00Z"}

                return await first_notice(watcher, interrupt)

        notice = asyncio.run(scenario())
    assert notice.source == "aws-spot"
    assert notice.detail == "spot interruption: stop"
    assert notice.deadline == datetime(2026, 11, 23, 10, 22, tzinfo=UTC).timestamp()
    assert imds.token_requests == 2  # one session token, renewed once after the 401
    assert imds.unauthorized >= 1


@pytest.mark.parametrize(("on_rebalance", "drains"), [("drain", True), ("log", False)])
def test_aws_rebalance_recommendation(on_rebalance: str, drains: bool) -> None:
    imds = FakeImds()
    with serving(imds) as server:
        config = agent_config(
            provider="aws", aws_imds_url=server.url, aws_poll_s=0.1, on_rebalance=on_rebalance
        )

        async def scenario() -> DrainNotice | None:
            async with httpx.AsyncClient() as client:
                watcher = AwsImdsWatcher(config, client)

                def recommend() -> None:
                    imds.rebalance = {"noticeTime": "2026-11-23T10:20:00Z"}

                try:
                    return await first_notice(watcher, recommend, within=1.5)
                except TimeoutError:
                    return None

        notice = asyncio.run(scenario())
    if drains:
        assert notice is not None and notice.source == "aws-rebalance"
        assert "noticeTime 2026-11-23T10:20:00Z" in notice.detail
        assert notice.deadline - notice.noticed_at == pytest.approx(config.drain.timeout_s)
    else:
        assert notice is None


def test_aws_auto_scaling_termination_drains() -> None:
    """A scale-in or instance refresh shows as the target lifecycle state, with no spot notice."""
    imds = FakeImds()
    imds.target_lifecycle_state = "InService"
    with serving(imds) as server:
        config = agent_config(provider="aws", aws_imds_url=server.url, aws_poll_s=0.1)

        async def scenario() -> DrainNotice:
            async with httpx.AsyncClient() as client:
                watcher = AwsImdsWatcher(config, client)
                return await first_notice(
                    watcher, lambda: setattr(imds, "target_lifecycle_state", "Terminated")
                )

        notice = asyncio.run(scenario())
    assert notice.source == "aws-asg-lifecycle"
    assert notice.detail == "Auto Scaling target lifecycle state Terminated"
    assert notice.deadline - notice.noticed_at == pytest.approx(config.drain.timeout_s)


def test_aws_metadata_down_is_retried_not_fatal() -> None:
    config = agent_config(provider="aws", aws_imds_url="http://127.0.0.1:9", aws_poll_s=0.1)

    async def scenario() -> bool:
        async with httpx.AsyncClient() as client:
            task = asyncio.create_task(AwsImdsWatcher(config, client).watch(lambda notice: None))
            await asyncio.sleep(0.5)
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
                return await first_notice(watcher, lambda: gce.set(key, value))

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
