"""Scale-in protection follows the node's work: the hysteresis and the group's yield on a given clock, and a
real agent over real llama.cpp in an Auto Scaling group (moto in server mode, which implements
SetInstanceProtection and DescribeAutoScalingGroups and spares protected instances when it scales in):
protected while a request is in flight, released once idle, so a scale-in takes the idle node; and, once
the group has waited above its desired size, yielding while still busy, so a scale-in is never held off
for as long as traffic lasts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fleet_agent.scale_in import GroupWatch, ProtectionHysteresis

from .agent_testkit.fake_autoscaling import moto_client, moto_group
from .agent_testkit.fake_metadata import FakeImds
from .agent_testkit.harness import RunningAgent, llama_config, write_config
from .agent_testkit.net import serving, wait_for
from .test_node_metrics import ENDLESS, HeldStream


def test_protection_holds_through_short_gaps_and_lets_go_after_the_idle_spell() -> None:
    policy = ProtectionHysteresis(release_after_s=30)
    assert policy.wanted(0, 0) is None  # idle and unprotected: nothing to do
    assert policy.wanted(1, 1) is True  # the first request: protect
    policy.applied(True)
    assert policy.wanted(2, 3) is None
    assert policy.wanted(5, 0) is None and policy.release_at() == 35
    assert policy.wanted(20, 1) is None  # busy again within the spell: no release, no second protect
    assert policy.release_at() is None
    assert policy.wanted(21, 0) is None
    assert policy.wanted(50, 0) is None  # 29 s idle
    assert policy.wanted(51, 0) is False  # 30 s idle: release
    policy.applied(False)
    assert policy.wanted(52, 0) is None
    # A refused call changes nothing: the decision stands until a call is accepted.
    assert policy.wanted(60, 2) is True and policy.wanted(61, 2) is True
    policy.applied(True)
    # A group that waited long enough for an idle node: protection goes, busy or not, and stays off.
    assert policy.wanted(62, 2, yielding=True) is False
    policy.applied(False)
    assert policy.wanted(63, 5, yielding=True) is None
    assert policy.wanted(64, 5) is True  # the group is back at its size: the busy node is protected again


def test_the_group_yields_after_waiting_above_its_desired_size() -> None:
    watch = GroupWatch(yield_after_s=120)
    assert watch.observe(0, in_service=3, desired=3) is False
    assert watch.observe(10, in_service=3, desired=2) is False  # over since 10
    assert watch.observe(129, in_service=3, desired=2) is False
    assert watch.observe(130, in_service=3, desired=2) is True
    assert watch.observe(140, in_service=2, desired=2) is False  # the scale-in happened
    assert watch.observe(150, in_service=2, desired=1) is False  # a new wait starts from zero


YIELD_AFTER_S = 2.0


@pytest.mark.usefixtures("instance_role_only")
def test_a_scale_in_takes_the_idle_node_and_a_busy_one_only_after_waiting(
    tmp_path: Path, tiny_model: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "fleet-test-use1-protect"
    busy, idle = moto_group(moto_url, name, 2)
    autoscaling = moto_client("autoscaling", moto_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_AUTO_SCALING", moto_url)

    def instances() -> dict[str, Any]:
        (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return {i["InstanceId"]: i["ProtectedFromScaleIn"] for i in group["Instances"]}

    imds = FakeImds(instance_id=busy, region="us-east-1")
    with serving(imds) as metadata:
        config = llama_config(
            tiny_model,
            engine=ENDLESS,
            preemption={"aws_imds_url": metadata.url},
            scale_in_protection={
                "group_name": name,
                "release_after_s": 1.0,
                "yield_after_s": YIELD_AFTER_S,
                "group_check_s": 0.2,
            },
        )
        with RunningAgent(write_config(tmp_path, config)) as agent:
            assert agent.agent is not None and agent.agent.protection is not None
            calls = agent.agent.protection.calls
            agent.wait_state("ready")
            assert instances() == {busy: False, idle: False}

            # Busy: protected. A scale-in takes the idle node; idle again, protection goes.
            held = HeldStream(agent.url)
            assert held.first_chunk.wait(60), "the held stream never started"
            wait_for(lambda: instances()[busy], 30, "the busy node to be protected")
            autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=1)
            assert instances() == {busy: True}  # the idle node went, the group is at its size
            held.release()
            # The agent's record of accepted calls (Auto Scaling answers before the agent notes it).
            wait_for(lambda: len(calls) == 2, 30, "protection to be released once idle")
            assert [on for _, on in calls] == [True, False]  # one busy spell, two calls
            assert instances() == {busy: False}

            # Busy again, and the group wants it gone: it stays while the group waits, then yields.
            held = HeldStream(agent.url)
            assert held.first_chunk.wait(60), "the second held stream never started"
            wait_for(lambda: instances()[busy], 30, "the busy node to be protected again")
            asked = time.time()
            autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=0)
            assert busy in instances()  # below desired, the busy node stays for now
            wait_for(lambda: len(calls) == 4, 30, "protection to yield to the waiting group")
            assert [on for _, on in calls] == [True, False, True, False]
            assert instances() == {busy: False}
            assert calls[-1][0] - asked >= YIELD_AFTER_S  # it waited for the group's patience, not less
            assert not held.done.is_set()  # and yielded with its request still running
            # Auto Scaling terminates what exceeds the desired capacity once it is unprotected (moto does it
            # on the next capacity change); the node's termination hook drains it first (test_lifecycle_hook).
            autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=0)
            assert instances() == {}
            held.release()
