"""How each GPU pool follows its load, as prod declares it: target tracking on the agents' Load per node at
the pool's target, a faster step on a queue, from and back to zero where minSize is 0; what a node may do
for it (publish its metrics, protect itself), what its agent is told, the budget, and the config's rules."""

from __future__ import annotations

import base64
import json
import tomllib
from typing import Any

import pytest
import yaml

from components.core.catalog.resource_types import (
    AUTOSCALING_GROUP,
    AUTOSCALING_POLICY,
    IAM_ROLE_POLICY,
    LAUNCH_TEMPLATE,
    LOAD_BALANCER,
    METRIC_ALARM,
)
from components.gpu_pools.user_data import AGENT_CONFIG_PATH, OLLAMA_ENV_PATH
from fleet.harness import RecordedResource, Rendering
from fleet_agent import fleet_metrics as fm
from fleet_agent.config import AgentConfig

POOL = "inference-fleet:gpu_pools:GpuNodePool"
SCALING = "inference-fleet:gpu_pools:PoolScaling"
POLICY = AUTOSCALING_POLICY
ALARM = METRIC_ALARM
# Pool -> (model, target Load per node: 70 % of 32 for vLLM, of 4 for Ollama).
POOLS = {
    "llama-8b": ("meta-llama/Llama-3.1-8B-Instruct", 22.4),
    "qwen-14b": ("qwen2.5:14b", 2.8),
    "llama-8b-west": ("meta-llama/Llama-3.1-8B-Instruct", 22.4),
}


def in_pool(rendering: Rendering, pool: str, resource_type: str) -> list[RecordedResource]:
    return [r for r in rendering.descendants(rendering.one(POOL, f"pool-{pool}")) if r.type == resource_type]


def scaling(rendering: Rendering, pool: str, kind: str, resource_type: str = POLICY) -> RecordedResource:
    return rendering.one(resource_type, f"pool-{pool}-scaling-{kind}")


def pools_with(stack_input, **changes: Any) -> list[dict[str, Any]]:
    raw = json.loads(stack_input("prod").config["inference-fleet:gpuPools"])
    raw[1] = {k: v for k, v in {**raw[1], **changes}.items() if v is not None}  # qwen-14b, Ollama
    return raw


@pytest.mark.parametrize("pool", POOLS)
def test_each_group_tracks_the_load_per_node_at_its_target(render, pool: str) -> None:
    prod = render("prod")
    (group,) = in_pool(prod, pool, AUTOSCALING_GROUP)
    policy = scaling(prod, pool, "load")
    assert policy.inputs["autoscalingGroupName"] == group.outputs["name"]
    assert policy.inputs["policyType"] == "TargetTrackingScaling"
    tracking = policy.inputs["targetTrackingConfiguration"]
    model, target = POOLS[pool]
    assert tracking["targetValue"] == target
    metric = tracking["customizedMetricSpecification"]
    assert (metric["namespace"], metric["metricName"], metric["statistic"]) == (
        fm.NODE_NAMESPACE,
        fm.LOAD,
        "Average",
    )
    assert metric["metricDimensions"] == [{"name": "Pool", "value": pool}, {"name": "Model", "value": model}]
    assert metric["period"] in (10, 30, 60) and metric["unit"] == fm.UNITS[fm.LOAD]
    # Nodes still booting count toward capacity: the node's time to ready, its health checks, one window.
    assert policy.inputs["estimatedInstanceWarmup"] == 300 + 20 + fm.PUBLISH_PERIOD_S


def test_a_queue_adds_nodes_ahead_of_target_tracking(render) -> None:
    prod = render("prod")
    policy = scaling(prod, "qwen-14b", "queue")
    alarm = scaling(prod, "qwen-14b", "queue", ALARM)
    assert alarm.inputs["alarmActions"] == [policy.outputs["arn"]]
    assert (alarm.inputs["namespace"], alarm.inputs["metricName"]) == (fm.NODE_NAMESPACE, fm.REQUESTS_WAITING)
    assert alarm.inputs["dimensions"] == {"Pool": "qwen-14b", "Model": "qwen2.5:14b"}
    # High resolution: the agents publish every 10 s at 1-s resolution; three periods in a row.
    assert alarm.inputs["period"] == 10 and alarm.inputs["period"] % fm.PUBLISH_PERIOD_S == 0
    assert alarm.inputs["evaluationPeriods"] == alarm.inputs["datapointsToAlarm"] == 3
    assert alarm.inputs["treatMissingData"] == "notBreaching"
    assert (policy.inputs["policyType"], policy.inputs["adjustmentType"]) == (
        "StepScaling",
        "PercentChangeInCapacity",
    )
    steps = [
        (s.get("metricIntervalLowerBound"), s.get("metricIntervalUpperBound"), s["scalingAdjustment"])
        for s in policy.inputs["stepAdjustments"]
    ]
    # From the threshold (1 waiting a node) up, without gaps or overlaps, the last open-ended (as the API
    # requires); the more waits a node, the more is added.
    assert steps == [("0.0", "1.0", 50), ("1.0", "3.0", 100), ("3.0", None, 200)]
    assert policy.inputs["minAdjustmentMagnitude"] == 1


def test_a_pool_from_zero_wakes_on_its_load_balancers_503s_and_sleeps_when_idle(render, stack_input) -> None:
    prod = render("prod", {"gpuPools": pools_with(stack_input, minSize=0, onDemandBase=0, spotPercentage=0,
                                                   scaling={"idleMinutes": 12})})  # fmt: skip
    (balancer,) = in_pool(prod, "qwen-14b", LOAD_BALANCER)
    wake, wake_alarm = scaling(prod, "qwen-14b", "wake"), scaling(prod, "qwen-14b", "wake", ALARM)
    assert wake_alarm.inputs["alarmActions"] == [wake.outputs["arn"]]
    assert (wake_alarm.inputs["namespace"], wake_alarm.inputs["metricName"]) == (
        "AWS/ApplicationELB",
        "HTTPCode_ELB_503_Count",
    )
    assert wake_alarm.inputs["dimensions"] == {"LoadBalancer": balancer.outputs["arnSuffix"]}
    assert (wake.inputs["adjustmentType"], wake.inputs["stepAdjustments"]) == (
        "ChangeInCapacity",
        [{"metricIntervalLowerBound": "0.0", "scalingAdjustment": 1}],
    )
    idle, idle_alarm = scaling(prod, "qwen-14b", "idle"), scaling(prod, "qwen-14b", "idle", ALARM)
    assert idle_alarm.inputs["alarmActions"] == [idle.outputs["arn"]]
    assert (idle_alarm.inputs["metricName"], idle_alarm.inputs["statistic"]) == (fm.LOAD, "Maximum")
    assert idle_alarm.inputs["evaluationPeriods"] == idle_alarm.inputs["datapointsToAlarm"] == 12
    assert idle_alarm.inputs["period"] == 60 and idle_alarm.inputs["threshold"] == 0
    assert idle_alarm.inputs["comparisonOperator"] == "LessThanOrEqualToThreshold"
    # Booting nodes publish nothing: missing data never sends the pool back to zero.
    assert idle_alarm.inputs["treatMissingData"] == "notBreaching"
    assert (idle.inputs["adjustmentType"], idle.inputs["stepAdjustments"]) == (
        "ExactCapacity",
        [{"metricIntervalUpperBound": "0.0", "scalingAdjustment": 0}],
    )
    budget = prod.outputs["budgets"]["gpuScaling"]["qwen-14b"]
    assert budget["idleToZeroSeconds"] == 720
    terms = budget["termsSeconds"]
    assert budget["loadStepToServingSeconds"]["fromZero"] == (
        terms["elb503Metric"]
        + terms["albDelay"]
        + terms["wakeAlarm"]
        + terms["nodeReady"]
        + terms["targetHealthy"]
    )
    # Pools with a floor have neither.
    assert not [r for r in prod.of_type(POLICY) if r.name.startswith("pool-llama-8b-scaling-wake")]


def test_a_pool_of_fixed_size_declares_no_scaling(render, stack_input) -> None:
    prod = render("prod", {"gpuPools": pools_with(stack_input, minSize=4, maxSize=4)})
    assert [r.name for r in prod.of_type(SCALING)] == ["pool-llama-8b-scaling", "pool-llama-8b-west-scaling"]
    assert "qwen-14b" not in prod.outputs["budgets"]["gpuScaling"]


def test_the_budget_adds_up_its_named_terms(render) -> None:
    budget = render("prod").outputs["budgets"]["gpuScaling"]["llama-8b"]
    t = budget["termsSeconds"]
    seen, serving = t["sample"] + t["publish"] + t["cloudWatchDelay"], t["nodeReady"] + t["targetHealthy"]
    assert budget["loadStepToServingSeconds"] == {
        "queuePath": seen + t["queueAlarm"] + serving,
        "trackingPath": seen + t["trackingAlarm"] + serving,
    }
    assert budget["instanceWarmupSeconds"] == t["nodeReady"] + t["targetHealthy"] + t["publish"]
    assert (budget["concurrency"], budget["targetLoadPerNode"]) == (32, 22.4)


def test_a_node_may_publish_only_the_fleets_metrics_and_protect_only_in_its_group(render) -> None:
    prod = render("prod")
    (policy,) = in_pool(prod, "llama-8b", IAM_ROLE_POLICY)
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    assert statements["PublishNodeMetrics"] == {
        "Sid": "PublishNodeMetrics",
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {"StringEquals": {"cloudwatch:namespace": fm.NODE_NAMESPACE}},
    }
    protect = statements["ProtectOwnGroupsInstances"]
    assert protect["Action"] == "autoscaling:SetInstanceProtection"
    assert protect["Resource"] == statements["CompleteOwnLifecycleAction"]["Resource"]
    (group,) = in_pool(prod, "llama-8b", AUTOSCALING_GROUP)
    assert protect["Resource"].endswith(f":autoScalingGroupName/{group.physical_name}")
    assert statements["ReadGroups"]["Action"] == "autoscaling:DescribeAutoScalingGroups"  # read-only
    # An instance refresh replaces protected nodes too (after their drain) instead of waiting an hour.
    assert group.inputs["instanceRefresh"]["preferences"]["scaleInProtectedInstances"] == "Refresh"


def test_the_agent_is_told_to_publish_and_protect_and_its_engine_takes_the_concurrency(render) -> None:
    prod = render("prod")
    for pool, model in (("llama-8b", "meta-llama/Llama-3.1-8B-Instruct"), ("qwen-14b", "qwen2.5:14b")):
        (template,) = in_pool(prod, pool, LAUNCH_TEMPLATE)
        files = {
            e["path"]: e["content"]
            for e in yaml.safe_load(base64.b64decode(template.inputs["userData"]).decode())["write_files"]
        }
        config = AgentConfig.model_validate(tomllib.loads(files[AGENT_CONFIG_PATH]))
        (group,) = in_pool(prod, pool, AUTOSCALING_GROUP)
        assert config.cloudwatch.enabled and config.cloudwatch.model == model
        assert config.scale_in_protection.group_name == group.physical_name
        if pool == "qwen-14b":
            assert files[OLLAMA_ENV_PATH].startswith("OLLAMA_NUM_PARALLEL=4\n")
            assert config.engine.parallel == 4


CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "an idle period where the pool keeps a floor",
        {"scaling": {"idleMinutes": 5}},
        "inference-fleet:gpuPools[1].scaling.idleMinutes: set on a pool with minSize 1; a pool goes back to zero "
        "only from minSize 0",
    ),
    (
        "an idle period target tracking's own scale-in would cut short",
        {"minSize": 0, "onDemandBase": 0, "spotPercentage": 0, "scaling": {"idleMinutes": 30}},
        "inference-fleet:gpuPools[1].scaling.idleMinutes: ...",
    ),
    (
        "the engine's concurrency as an engine argument",
        {"index": 0, "engineArgs": ["--max-num-seqs", "64"]},
        "inference-fleet:gpuPools[0].engineArgs[0]: got '--max-num-seqs'; set scaling.concurrency instead ...",
    ),
    (
        "a utilization target over 100 %",
        {"scaling": {"targetUtilization": 120}},
        "inference-fleet:gpuPools[1].scaling.targetUtilization: ...",
    ),
]


@pytest.mark.parametrize(("change", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_scaling_keys_the_cloud_or_the_design_would_refuse_get_one_line(
    stack_input, config_problems, change: dict[str, Any], expected: str
) -> None:
    raw = json.loads(stack_input("prod").config["inference-fleet:gpuPools"])
    index = change.pop("index", 1)
    raw[index] = {**raw[index], **change}
    (line,) = config_problems("prod", {"gpuPools": raw})
    if expected.endswith("..."):
        assert line.startswith(expected.removesuffix("...")), line
    else:
        assert line == expected
