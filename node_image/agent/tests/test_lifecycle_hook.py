"""The AWS drained-hook end to end on loopback: a spot notice on the fake IMDSv2 turns readiness off, the
in-flight stream (real llama.cpp) finishes, then CompleteLifecycleAction reaches an endpoint speaking
Auto Scaling's query protocol (moto 5.2.5 for the group and its hook, the call itself checked against
botocore's service model) with the group's hook, the instance from IMDS and CONTINUE, signed with the
role credentials IMDS served. Also: a refused action is reported, and fetch-secrets writes the node's
secret files from Secrets Manager (moto)."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet_agent.aws import AwsLifecycleDrainedHook
from fleet_agent.config import AwsLifecycleHook
from fleet_agent.constants import LIFECYCLE_ACTION_RETRY_S
from fleet_agent.drain import DrainedEvent
from fleet_agent.imds import ImdsSession
from fleet_agent.main import run_cli

from .agent_testkit.fake_autoscaling import (
    TERMINATING,
    CompletedAction,
    FakeAutoScaling,
    moto_client,
    moto_group,
)
from .agent_testkit.fake_metadata import FakeImds
from .agent_testkit.harness import (
    STREAM_TOKENS,
    RunningAgent,
    StreamInThread,
    generated_tokens,
    llama_config,
    spot_notice,
    to_toml,
    write_config,
)
from .agent_testkit.net import serving, wait_for

HOOK = "fleet-drain"


@pytest.fixture
def instance_role_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials but the ones the metadata service serves, as on a node."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_EC2_METADATA_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


def pool_group(moto_url: str, name: str) -> str:
    """An Auto Scaling group with one instance and a termination hook, in moto; returns the instance id."""
    (instance,) = moto_group(moto_url, name, 1)
    moto_client("autoscaling", moto_url).put_lifecycle_hook(
        LifecycleHookName=HOOK,
        AutoScalingGroupName=name,
        LifecycleTransition=TERMINATING,
        HeartbeatTimeout=120,
        DefaultResult="CONTINUE",
    )
    return instance


@pytest.fixture
def autoscaling(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAutoScaling]:
    front = FakeAutoScaling(moto_url)
    with serving(front) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_AUTO_SCALING", server.url)
        yield front


@pytest.mark.usefixtures("instance_role_only")
def test_spot_notice_drains_then_completes_the_lifecycle_action(
    tmp_path: Path, tiny_model: Path, moto_url: str, autoscaling: FakeAutoScaling
) -> None:
    group = "fleet-test-use1-tiny"
    instance = pool_group(moto_url, group)
    imds = FakeImds(instance_id=instance, region="us-east-1")
    with serving(imds) as metadata:
        config = llama_config(
            tiny_model,
            preemption={"provider": "aws", "aws_imds_url": metadata.url, "aws_poll_s": 0.2},
            drain={
                "reserve_s": 2,
                "hooks": [{"kind": "aws-lifecycle", "hook_name": HOOK, "group_name": group}],
            },
        )
        with RunningAgent(write_config(tmp_path, config)) as agent:
            agent.wait_state("ready")
            stream = StreamInThread(agent.url).start()

            imds.spot_action = spot_notice(120)
            wait_for(lambda: agent.readyz() == 503, 30, "readiness to turn off after the notice")
            assert not stream.done.is_set(), "the stream ended before the notice: make it longer"
            assert autoscaling.completed == []  # not while a request is in flight

            stream.join()
            assert stream.error is None and stream.status == 200
            assert generated_tokens(stream.text) == STREAM_TOKENS

            report = agent.wait_state("stopped", timeout=20)["drain"]
    assert autoscaling.refused == []
    assert autoscaling.completed == [
        CompletedAction(
            hook=HOOK,
            group=group,
            instance=instance,
            result="CONTINUE",
            access_key=imds.credentials["AccessKeyId"],  # the instance role's, read from IMDS
            region="us-east-1",
        )
    ]
    assert report["inflight_at_notice"] == 1 and report["inflight_left"] == 0
    (hook,) = report["hooks"]
    assert hook["ok"] and hook["hook"] == f"aws-lifecycle {group}/{HOOK}"
    assert report["inflight_done_at"] <= hook["at"] <= report["engine_stopped_at"]


@pytest.mark.usefixtures("instance_role_only")
def test_an_action_auto_scaling_refuses_is_reported(moto_url: str, autoscaling: FakeAutoScaling) -> None:
    group = "fleet-test-use1-other"
    pool_group(moto_url, group)
    imds = FakeImds(instance_id="i-00000000000000000")  # not in the group

    async def complete(url: str) -> None:
        config = AwsLifecycleHook(kind="aws-lifecycle", hook_name=HOOK, group_name=group)
        async with httpx.AsyncClient() as client:
            hook = AwsLifecycleDrainedHook(config, ImdsSession(url, client))
            now = time.time()
            # Time for one more try after the first refusal: the group may open the action a moment later.
            deadline = now + LIFECYCLE_ACTION_RETRY_S + 1.5
            event = DrainedEvent("n", "us-east-1", "p", "aws-spot", "spot", now, deadline, 0, now)
            await hook.run(event, deadline)

    with serving(imds) as metadata, pytest.raises(RuntimeError) as refused:
        asyncio.run(complete(metadata.url))
    assert (
        str(refused.value)
        == "ValidationError: No active Lifecycle Action found with instance ID i-00000000000000000"
    )
    assert autoscaling.completed == []


@pytest.mark.usefixtures("instance_role_only")
def test_fetch_secrets_writes_the_node_secret_files(
    tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = moto_client("secretsmanager", moto_url)
    arn = secrets.create_secret(
        Name="fleet-node", SecretString=json.dumps({"apiKey": "k-123", "redisPassword": "r-456"})
    )["ARN"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_url)
    run_dir = tmp_path / "run"
    with serving(FakeImds()) as metadata:
        config = tmp_path / "agent.toml"
        config.write_text(
            to_toml(
                {
                    "engine": {"kind": "vllm", "models": ["m"]},
                    "server": {"api_key_file": str(run_dir / "api-key")},
                    "preemption": {"provider": "aws", "aws_imds_url": metadata.url},
                    "secrets": {
                        "aws_secret_id": arn,
                        "files": {
                            "apiKey": str(run_dir / "api-key"),
                            "redisPassword": str(run_dir / "redis"),
                        },
                    },
                }
            )
        )
        assert run_cli(["fetch-secrets", "--config", str(config)]) == 0
        assert run_cli(["check-config", "--config", str(config)]) == 0  # the key file now exists
    assert (run_dir / "api-key").read_text() == "k-123\n"
    assert (run_dir / "redis").read_text() == "r-456\n"
    assert stat.S_IMODE((run_dir / "api-key").stat().st_mode) == 0o600
