"""The fleet controller as `fleet plan` renders it: one per GPU region on a one-minute schedule, its config
the function accepts, a role scoped to the region's pool groups and this stack's tagged instances, its
own ways to the agents and to Redis, the restart document wired to the image's restart unit, the budget,
and the config it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.controller import budget_for
from components.controller.budget import run_handover_s
from components.core.catalog.resource_types import (
    AUTOSCALING_GROUP,
    CACHE_USER,
    EVENT_RULE,
    EVENT_TARGET,
    IAM_ROLE_POLICY,
    IAM_ROLE_POLICY_ATTACHMENT,
    LAMBDA_EVENT_INVOKE_CONFIG,
    LAMBDA_FUNCTION,
    LAUNCH_TEMPLATE,
    METRIC_ALARM,
    REDIS_REPLICATION_GROUP,
    SECRET,
    SECURITY_GROUP,
    SECURITY_GROUP_EGRESS_RULE,
    SECURITY_GROUP_INGRESS_RULE,
    SSM_DOCUMENT,
)
from components.core.config import PROJECT
from fleet_agent import constants as agent_constants
from fleet_agent import fleet_metrics
from functions.fleet_controller import settings as settings_module
from functions.fleet_controller.settings import RUN_SECONDS, ControllerSettings

REPO = Path(__file__).resolve().parents[2]
FUNCTION = LAMBDA_FUNCTION
POLICY = IAM_ROLE_POLICY
SG = SECURITY_GROUP
INGRESS = SECURITY_GROUP_INGRESS_RULE
EGRESS = SECURITY_GROUP_EGRESS_RULE


def rendered_settings(rendering, region: str) -> ControllerSettings:
    function = rendering.one(FUNCTION, f"controller-{region}-function")
    env = function.inputs["environment"]["variables"]
    settings = ControllerSettings.from_env(env)
    assert settings.to_env() == env  # the function reads back exactly what was rendered
    return settings


def statements(rendering, region: str) -> dict[str, dict]:
    policy = rendering.one(POLICY, f"controller-{region}-function")
    return {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}


def test_a_controller_per_gpu_region_on_a_one_minute_schedule(render) -> None:
    prod, dev = render("prod"), render("dev")
    assert sorted(f.name for f in prod.of_type(FUNCTION) if f.name.startswith("controller-")) == [
        "controller-us-east-1-function",
        "controller-us-west-2-function",
    ]
    assert [f.name for f in dev.of_type(FUNCTION) if f.name.startswith("controller-")] == [
        "controller-us-east-1-function"
    ]
    function = prod.one(FUNCTION, "controller-us-east-1-function")
    assert function.inputs["handler"] == "fleet_controller.handler.handle"
    assert function.inputs["timeout"] > RUN_SECONDS  # a run ticks for RUN_SECONDS, then ends
    assert function.inputs["vpcConfig"]["subnetIds"]  # in the private subnets, next to the nodes
    rule = prod.one(EVENT_RULE, "controller-us-east-1-schedule")
    assert rule.inputs["scheduleExpression"] == "rate(1 minute)"
    target = prod.one(EVENT_TARGET, "controller-us-east-1-function")
    assert target.inputs["arn"] == function.outputs["arn"]
    retries = prod.one(LAMBDA_EVENT_INVOKE_CONFIG, "controller-us-east-1-retries")
    assert retries.inputs["maximumRetryAttempts"] == 0  # the next minute's run is the retry
    alarms = {a.name for a in prod.of_type(METRIC_ALARM)}
    assert {"controller-us-east-1-errors", "controller-us-east-1-blind"} <= alarms


def test_the_rendered_config_is_what_the_function_reads(render) -> None:
    prod = render("prod")
    east = rendered_settings(prod, "us-east-1")
    groups = {g.inputs["name"]: g for g in prod.of_type(AUTOSCALING_GROUP)}
    assert {(p.name, p.group) for p in east.pools} == {
        ("llama-8b", "fleet-prod-use1-pool-llama-8b"),
        ("qwen-14b", "fleet-prod-use1-pool-qwen-14b"),
    }
    for spec in east.pools:
        assert spec.target_group_arn in groups[spec.group].inputs["targetGroupArns"]
    redis = prod.one(REDIS_REPLICATION_GROUP, "control-plane-us-east-1-redis")
    assert (east.redis_host, east.redis_tls, east.redis_user) == (
        redis.outputs["primaryEndpointAddress"],
        True,
        "fleet-controller",
    )
    assert (east.agent_port, east.key_prefix) == (
        agent_constants.DEFAULT_SERVING_PORT,
        agent_constants.HEARTBEAT_KEY_PREFIX,
    )
    assert east.fleet_tags == {"project": PROJECT, "stack": "prod"}
    # The fewest ready replicas default to the pools' minSize in that region.
    assert east.min_ready == {"meta-llama/Llama-3.1-8B-Instruct": 2, "qwen2.5:14b": 1}
    assert rendered_settings(prod, "us-west-2").min_ready == {"meta-llama/Llama-3.1-8B-Instruct": 1}
    secret = prod.one(SECRET, "controller-us-east-1-redis-password")
    assert east.redis_password_secret_arn == secret.outputs["arn"]
    assert secret.options.protect
    # Each pool's warm-up limit is its readiness budget's; the not-ready grace is the configured one.
    timings = prod.outputs["budgets"]["gpuPoolTimings"]
    assert {p.name: p.warm_limit_s for p in east.pools} == {
        name: timings[name]["ready"]["warmUpLimitSeconds"] for name in ("llama-8b", "qwen-14b")
    }
    assert east.not_ready_grace_s == 180


def test_the_lambdas_metric_names_are_the_shared_contracts() -> None:
    """The function cannot import the agent's package: its own copies must equal fleet_metrics'."""
    assert (
        settings_module.METRIC_NAMESPACE,
        settings_module.READY_NODES_METRIC,
        settings_module.POOL_DIMENSION,
    ) == (
        fleet_metrics.CONTROLLER_NAMESPACE,
        fleet_metrics.READY_NODES,
        fleet_metrics.POOL_DIMENSION,
    )


def test_the_role_is_scoped_to_the_regions_groups_and_this_stacks_instances(render) -> None:
    prod = render("prod")
    found = statements(prod, "us-east-1")
    groups = sorted(
        f"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/{g}"
        for g in ("fleet-prod-use1-pool-llama-8b", "fleet-prod-use1-pool-qwen-14b")
    )
    repair = found["RepairPoolNodes"]
    assert sorted(repair["Resource"]) == groups
    assert set(repair["Action"]) == {"autoscaling:SetInstanceHealth", "autoscaling:SetDesiredCapacity"}
    tags = {"project": PROJECT, "stack": "prod"}
    restart = found["RestartAgentsOfThisStack"]
    assert restart["Resource"] == "arn:aws:ec2:us-east-1:123456789012:instance/*"
    assert restart["Condition"] == {"StringEquals": {f"ssm:resourceTag/{k}": v for k, v in tags.items()}}
    document = prod.one(SSM_DOCUMENT, "controller-us-east-1-agent-restart")
    assert found["OnlyTheRestartDocument"]["Resource"] == document.outputs["arn"]
    terminate = found["TerminateOrphansOfThisStack"]
    assert terminate["Condition"]["StringEquals"] == {f"aws:ResourceTag/{k}": v for k, v in tags.items()}
    assert terminate["Condition"]["Null"] == {"aws:ResourceTag/pool": "false"}
    # '*' only where the API has no resource-level permissions: the reads, and Lambda's network interfaces.
    starred = {sid for sid, s in found.items() if s["Resource"] == "*"}
    assert starred == {"ReadFleet", "VpcNetworkInterfaces"}
    assert set(found["ReadFleet"]["Action"]) == {
        "autoscaling:DescribeAutoScalingGroups",
        "ec2:DescribeInstances",
        "elasticloadbalancing:DescribeTargetHealth",
    }
    # The standby region's controller repairs the standby's pool only.
    west = statements(prod, "us-west-2")["RepairPoolNodes"]["Resource"]
    assert [r.rsplit("/", 1)[1] for r in west] == ["fleet-prod-usw2-pool-llama-8b-west"]


def test_the_controller_reaches_the_agents_and_redis_and_nothing_else(render) -> None:
    prod = render("prod")
    controller_sg = prod.one(SG, "controller-us-east-1-sg").id
    out = {(r.inputs.get("referencedSecurityGroupId") or r.inputs.get("cidrIpv4"), r.inputs["fromPort"])
           for r in prod.of_type(EGRESS) if r.inputs["securityGroupId"] == controller_sg}  # fmt: skip
    templates = {t.name: t for t in prod.of_type(LAUNCH_TEMPLATE)}
    node_sgs = [templates[f"pool-{p}-lt"].inputs["vpcSecurityGroupIds"][0] for p in ("llama-8b", "qwen-14b")]
    redis_sg = prod.one(SG, "control-plane-us-east-1-redis-sg").id
    agent = agent_constants.DEFAULT_SERVING_PORT
    assert out == {*((sg, agent) for sg in node_sgs), (redis_sg, 6379), ("0.0.0.0/0", 443)}
    into = {(r.inputs["securityGroupId"], r.inputs["fromPort"])
            for r in prod.of_type(INGRESS) if r.inputs.get("referencedSecurityGroupId") == controller_sg}  # fmt: skip
    assert into == {*((sg, agent) for sg in node_sgs), (redis_sg, 6379)}


def test_the_restart_document_starts_the_images_restart_unit(render) -> None:
    document = render("prod").one(SSM_DOCUMENT, "controller-us-east-1-agent-restart")
    content = json.loads(document.inputs["content"])
    (step,) = content["mainSteps"]
    assert step["inputs"]["runCommand"][0] == "systemctl start fleet-agent-restart.service"
    assert document.inputs["documentType"] == "Command"
    unit = (REPO / "node_image" / "systemd" / "fleet-agent-restart.service").read_text()
    # A stopped or wedged agent ignores SIGTERM (or drains for minutes): killed, then started again.
    starts = [line.removeprefix("ExecStart=") for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert starts == [
        "/usr/bin/systemctl kill --kill-whom=all --signal=SIGKILL fleet-agent.service",
        "/usr/bin/systemctl reset-failed fleet-agent.service",
        "/usr/bin/systemctl restart fleet-agent.service",
    ]
    recipe = (REPO / "node_image" / "recipe" / "steps" / "units.sh").read_text()
    assert '"${units}/fleet-agent-restart.service" /etc/systemd/system/fleet-agent-restart.service' in recipe


def test_nodes_run_systems_managers_agent_for_the_restart(render) -> None:
    prod = render("prod")
    attached = [
        a.inputs["policyArn"]
        for a in prod.of_type(IAM_ROLE_POLICY_ATTACHMENT)
        if a.name.startswith("pool-llama-8b-node")
    ]
    assert attached == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]


def test_the_budget_is_computed_from_the_configured_periods(render) -> None:
    figures = render("prod").outputs["budgets"]["fleetController"]
    expected = budget_for(
        tick_s=10, confirmations=2, poll_timeout_s=3.0, restart_grace_s=60,
        heartbeat_ttl_s=agent_constants.HEARTBEAT_TTL_S, handover_s=run_handover_s(), not_ready_grace_s=180,
    )  # fmt: skip
    assert figures == expected.figures()
    assert figures["killedNodeToReplacementSeconds"] == 15 + 10 + 10 + 7 + 5
    # Not ready (an XID): the agent's GPU check, the first tick, the grace and its tick, one confirmation.
    assert figures["notReadyNodeToReplacementSeconds"] == 5 + 10 + 180 + 10 + 10 + 7 + 5
    faster = {"tickSeconds": 5, "confirmations": 3, "pollTimeoutSeconds": 2}
    figures = render("prod", {"controller": faster}).outputs["budgets"]["fleetController"]
    assert figures["killedNodeToReplacementSeconds"] == 15 + 5 + 10 + 7 + 4


def test_dry_run_and_periods_reach_the_function(render) -> None:
    changed = render(
        "prod",
        {"controller": {"dryRun": True, "maxDisruptionShare": 0.5, "minReadyReplicas": {"qwen2.5:14b": 3}}},
    )
    settings = rendered_settings(changed, "us-east-1")
    assert (settings.dry_run, settings.max_share) == (True, 0.5)
    assert settings.min_ready["qwen2.5:14b"] == 3


def test_no_pools_no_controller(render) -> None:
    bare = render("dev", {"gpuPools": [], "controlPlane": {"gateway": {"routes": [
        {"model": "gpt-4o-mini", "endpoints": ["openai-gpt-4o-mini"]}],
        "serverlessEndpoints": [{"name": "openai-gpt-4o-mini", "provider": "openai", "model": "gpt-4o-mini",
                                 "inputCostPerMillionTokens": 0.15, "outputCostPerMillionTokens": 0.6}]}}})  # fmt: skip
    assert not [f for f in bare.of_type(FUNCTION) if f.name.startswith("controller-")]
    assert "fleetController" not in bare.outputs["budgets"]
    users = {u.inputs["userName"] for u in bare.of_type(CACHE_USER)}
    assert users == {"default"}  # only the gateway uses its Redis


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"pollTimeoutSeconds": 6},
            "inference-fleet:controller.pollTimeoutSeconds: got 6; at most half of tickSeconds (10): a tick "
            "must finish before the next one",
        ),
        (
            {"tickSeconds": 20, "restartGraceSeconds": 30},
            "inference-fleet:controller.restartGraceSeconds: got 30; at least two ticks (40 s): the restarted "
            "agent's first heartbeat must be seen",
        ),
        (
            {"notReadyGraceSeconds": 30, "tickSeconds": 20, "restartGraceSeconds": 60},
            "inference-fleet:controller.notReadyGraceSeconds: got 30; at least two ticks (40 s): one tick's "
            "reading never replaces a node",
        ),
        (
            {"minReadyReplicas": {"mistral:7b": 1}},
            "inference-fleet:controller.minReadyReplicas.mistral:7b: no GPU pool serves 'mistral:7b'; pool "
            "models: meta-llama/Llama-3.1-8B-Instruct, qwen2.5:14b",
        ),
        (
            {"minReadyReplicas": {"qwen2.5:14b": 5}},
            "inference-fleet:controller.minReadyReplicas.qwen2.5:14b: got 5; the pools serving it in us-east-1 "
            "reach 4 nodes at maxSize",
        ),
    ],
)
def test_config_refusals(config_problems, changes, problem) -> None:
    assert problem in config_problems("prod", {"controller": changes})
