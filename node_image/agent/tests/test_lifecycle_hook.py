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
from typing import Any

import httpx
import pytest

from fleet_agent import constants as agent_constants
from fleet_agent.aws import AwsLifecycleDrainedHook
from fleet_agent.config import AwsLifecycleHook
from fleet_agent.constants import LIFECYCLE_ACTION_RETRY_S
from fleet_agent.drain import DrainedEvent
from fleet_agent.imds import ImdsSession
from fleet_agent.main import run_cli
from fleet_agent.preemption import parse_time

from .agent_testkit.aws_pool import DRAIN_HOOK, LAUNCH_HOOK, pool_in_moto
from .agent_testkit.fake_autoscaling import (
    LAUNCHING,
    CompletedAction,
    FakeAutoScaling,
    moto_client,
)
from .agent_testkit.fake_gpu import FakeGpuBackend
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
from .agent_testkit.load import judge_stream
from .agent_testkit.net import serving, wait_for

HOOK = DRAIN_HOOK


def pool_group(moto_url: str, name: str) -> str:
    """An Auto Scaling group of one instance with its lifecycle hooks, in moto; returns the instance id."""
    return pool_in_moto(moto_url, name, 1, with_target_group=False).instances[0]


def drained_by_the_hook(
    model: Path,
    imds_url: str,
    group: str,
    *,
    lifecycle_timeout_s: float | None = None,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """A node of `group` that watches IMDS and completes the group's termination hook once drained."""
    drain: dict[str, Any] = {
        "reserve_s": 2,
        "hooks": [{"kind": "aws-lifecycle", "hook_name": HOOK, "group_name": group}],
    }
    if lifecycle_timeout_s is not None:
        drain["lifecycle_timeout_s"] = lifecycle_timeout_s
    preemption = {"provider": "aws", "aws_imds_url": imds_url, "aws_poll_s": 0.2}
    return llama_config(model, preemption=preemption, drain=drain, **sections)


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
        config = drained_by_the_hook(tiny_model, metadata.url, group)
        with RunningAgent(write_config(tmp_path, config)) as agent:
            agent.wait_state("ready")
            stream = StreamInThread(agent.url).start()

            # The group hears of the interruption too, and holds the instance in Terminating:Wait.
            autoscaling.open_action(group, HOOK, instance)
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
def test_a_spot_interruption_during_a_scale_in_drain_keeps_its_own_deadline(
    tmp_path: Path, tiny_model: Path, moto_url: str, autoscaling: FakeAutoScaling
) -> None:
    """A spot node the group takes away (a capacity rebalance's replacement done) may be reclaimed before
    its drain ends: the interruption's time, not the lifecycle drain's ten minutes, is then its deadline,
    and what is still in flight is cut visibly before the node goes."""
    group = "fleet-test-use1-rebalanced"
    instance = pool_group(moto_url, group)
    imds = FakeImds(instance_id=instance, region="us-east-1")
    with serving(imds) as metadata:
        config = drained_by_the_hook(
            tiny_model,
            metadata.url,
            group,
            engine={"args": ["--context-shift"]},  # an answer without end: it runs until it is cut
            lifecycle_timeout_s=600,
        )
        with RunningAgent(write_config(tmp_path, config)) as agent:
            agent.wait_state("ready")
            endless = StreamInThread(agent.url, tokens=-1).start()
            autoscaling.open_action(group, HOOK, instance)
            imds.target_lifecycle_state = "Terminated"
            wait_for(lambda: agent.readyz() == 503, 30, "the scale-in's drain to begin")
            interruption = spot_notice(6)
            imds.spot_action = interruption

            report = agent.wait_state("stopped", timeout=60)["drain"]
            endless.join()
    assert report["notice"]["source"] == "aws-asg-lifecycle"
    hastened = report["hastened_by"]
    assert hastened["source"] == "aws-spot" and hastened["deadline"] == parse_time(interruption["time"])
    assert report["inflight_left"] == 1 and report["inflight_done_at"] is None
    assert judge_stream(endless.text) == "error"  # cut, and the client is told
    assert [(a.instance, a.result) for a in autoscaling.completed] == [(instance, "CONTINUE")]


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


def launch_config(
    model: Path, metadata_url: str, group: str, ready_timeout_s: float = 600
) -> dict[str, object]:
    hook = {"kind": "aws-lifecycle", "hook_name": LAUNCH_HOOK, "group_name": group, "heartbeat_timeout_s": 30}
    return llama_config(
        model,
        node={"accelerator": "gpu"},
        preemption={"provider": "aws", "aws_imds_url": metadata_url, "aws_poll_s": 0.2},
        launch={"ready_timeout_s": ready_timeout_s, "hooks": [hook]},
    )


@pytest.mark.usefixtures("instance_role_only")
def test_the_launch_action_continues_only_once_the_node_is_ready(
    tmp_path: Path,
    tiny_model: Path,
    moto_url: str,
    autoscaling: FakeAutoScaling,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent_constants, "LIFECYCLE_HEARTBEAT_SHARE", 0.02)  # a heartbeat every 0.6 s
    group = "fleet-test-use1-launch"
    instance = pool_group(moto_url, group)
    assert autoscaling.open_action(group, LAUNCH_HOOK, instance) == LAUNCHING  # Pending:Wait
    gpu = FakeGpuBackend()  # the engine holds no GPU memory until the test says so: not ready
    imds = FakeImds(instance_id=instance, region="us-east-1")
    with serving(imds) as metadata:
        config = launch_config(tiny_model, metadata.url, group)
        with RunningAgent(write_config(tmp_path, config), gpu_backend=gpu) as agent:
            warming = agent.wait_detail("model", "hold memory on 0 GPU(s)")
            wait_for(lambda: len(autoscaling.heartbeats) >= 2, 30, "heartbeats while the node warms up")
            assert autoscaling.completed == [] and agent.status()["launch"] is None

            gpu.hold(warming["engine"]["pid"], 2**30)
            agent.wait_state("ready")
            launch = wait_for(lambda: agent.status()["launch"], 30, "the launch action's outcome")
    assert launch["result"] == "CONTINUE" and [h["ok"] for h in launch["hooks"]] == [True]
    (completed,) = autoscaling.completed
    assert (completed.hook, completed.instance, completed.result) == (LAUNCH_HOOK, instance, "CONTINUE")
    assert all(b.hook == LAUNCH_HOOK and b.instance == instance for b in autoscaling.heartbeats)
    assert autoscaling.open == {}  # the group let the node into service


@pytest.mark.usefixtures("instance_role_only")
def test_a_node_never_ready_abandons_its_launch(
    tmp_path: Path, tiny_model: Path, moto_url: str, autoscaling: FakeAutoScaling
) -> None:
    group = "fleet-test-use1-no-gpu"
    instance = pool_group(moto_url, group)
    autoscaling.open_action(group, LAUNCH_HOOK, instance)
    imds = FakeImds(instance_id=instance, region="us-east-1")
    with serving(imds) as metadata:
        config = launch_config(tiny_model, metadata.url, group, ready_timeout_s=3)
        no_gpu = FakeGpuBackend(unavailable="NVML Shared Library Not Found")
        with RunningAgent(write_config(tmp_path, config), gpu_backend=no_gpu) as agent:
            launch = wait_for(lambda: agent.status()["launch"], 30, "the launch action's outcome")
            assert agent.status()["state"] != "ready"
    assert launch["result"] == "ABANDON"
    assert [(a.hook, a.instance, a.result) for a in autoscaling.completed] == [
        (LAUNCH_HOOK, instance, "ABANDON")
    ]
