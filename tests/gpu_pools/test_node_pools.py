"""The GPU pools as the program declares them for prod: per pool, the baked image feeding a launch template
with IMDSv2 required, a mixed-instances group whose on-demand base and spot share come from config, with
capacity rebalancing, a termination lifecycle hook and an internal load balancer whose health check is the
agent's readiness; who may reach whom; what a node may do."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from components.core.catalog.resource_types import (
    AUTOSCALING_GROUP,
    IAM_INSTANCE_PROFILE,
    IAM_ROLE,
    IAM_ROLE_POLICY,
    IMAGE_BUILDER_DISTRIBUTION,
    IMAGE_BUILDER_IMAGE,
    IMAGE_BUILDER_INFRASTRUCTURE,
    IMAGE_RECIPE,
    LAUNCH_TEMPLATE,
    LIFECYCLE_HOOK,
    LISTENER,
    LOAD_BALANCER,
    METRIC_ALARM,
    ROUTE53_RECORD,
    SECRET,
    SECURITY_GROUP,
    SECURITY_GROUP_EGRESS_RULE,
    SECURITY_GROUP_INGRESS_RULE,
    SNS_TOPIC,
    TARGET_GROUP,
)
from components.gpu_pools import GpuPoolConfig
from fleet.harness import RecordedResource, Rendering
from fleet_agent import constants as agent_constants
from fleet_agent import fleet_metrics

POOL = "inference-fleet:gpu_pools:GpuNodePool"
IMAGE = IMAGE_BUILDER_IMAGE
HOOK = LIFECYCLE_HOOK
METRIC_ALARM = METRIC_ALARM
REQUEST_TIMEOUT_S = 600  # prod's controlPlane.gateway.requestTimeoutSeconds


def config_pools(stack_input, stack: str = "prod") -> list[GpuPoolConfig]:
    raw = json.loads(stack_input(stack).config["inference-fleet:gpuPools"])
    return [GpuPoolConfig.model_validate(p) for p in raw]


def child(rendering: Rendering, pool: str, resource_type: str, name: str | None = None) -> RecordedResource:
    component = rendering.one(POOL, f"pool-{pool}")
    (found,) = [
        r
        for r in rendering.children(component)
        if r.type == resource_type and (name is None or r.name == f"pool-{pool}-{name}")
    ]
    return found


def by_id(rendering: Rendering, value: Any) -> RecordedResource:
    return rendering.by_id(str(value))


def test_prod_has_two_pools_in_the_primary_and_one_in_the_standby(render) -> None:
    prod = render("prod")
    names = [p.name.removeprefix("pool-") for p in prod.of_type(POOL)]
    providers = {
        name: str(child(prod, name, AUTOSCALING_GROUP).provider).rsplit("::", 1)[-1] for name in names
    }
    assert providers == {
        "llama-8b": "aws-us-east-1",
        "qwen-14b": "aws-us-east-1",
        "llama-8b-west": "aws-us-west-2",
    }
    dev = render("dev")
    assert [p.name for p in dev.of_type(POOL)] == ["pool-llama-8b"]


@pytest.mark.parametrize("pool", ["llama-8b", "qwen-14b", "llama-8b-west"])
def test_each_pool_boots_the_baked_image_for_its_engine_and_region(render, stack_input, pool: str) -> None:
    prod = render("prod")
    config = next(p for p in config_pools(stack_input) if p.name == pool)
    template = child(prod, pool, LAUNCH_TEMPLATE)
    image = prod.one(IMAGE, f"node-image-{config.engine}")
    amis = {a["region"]: a["image"] for a in image.outputs["outputResources"][0]["amis"]}
    assert template.inputs["imageId"] == amis[config.region]
    # The image's recipe is its engine's, on the pinned parent, with an encrypted root.
    recipe = prod.one(IMAGE_RECIPE, f"node-image-{config.engine}")
    assert image.inputs["imageRecipeArn"] == recipe.outputs["arn"]
    assert recipe.inputs["parentImage"].startswith("ssm:/aws/service/canonical/ubuntu/server/24.04/stable/")
    assert {p["value"] for c in recipe.inputs["components"] for p in c["parameters"]} == {config.engine}
    (root,) = recipe.inputs["blockDeviceMappings"]
    assert root["ebs"]["encrypted"] == "true"


@pytest.mark.parametrize("pool", ["llama-8b", "qwen-14b", "llama-8b-west"])
def test_the_launch_template_requires_imdsv2_and_encrypts_the_root(render, stack_input, pool: str) -> None:
    template = child(render("prod"), pool, LAUNCH_TEMPLATE)
    config = next(p for p in config_pools(stack_input) if p.name == pool)
    metadata = template.inputs["metadataOptions"]
    assert metadata["httpTokens"] == "required"
    assert metadata["httpPutResponseHopLimit"] == 2  # containers on the node reach IMDS too
    (root,) = template.inputs["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/sda1"
    assert root["ebs"] == {
        "volumeSize": config.disk_gib,
        "volumeType": "gp3",
        "encrypted": "true",
        "deleteOnTermination": "true",
    }
    assert template.inputs["privateDnsNameOptions"]["hostnameType"] == "resource-name"
    assert "instanceType" not in template.inputs  # several types: the group's overrides list them


@pytest.mark.parametrize("pool", ["llama-8b", "qwen-14b", "llama-8b-west"])
def test_the_group_mixes_an_on_demand_base_with_spot_as_configured(render, stack_input, pool: str) -> None:
    prod = render("prod")
    config = next(p for p in config_pools(stack_input) if p.name == pool)
    group = child(prod, pool, AUTOSCALING_GROUP)
    inputs = group.inputs
    assert (inputs["minSize"], inputs["maxSize"]) == (config.min_size, config.max_size)
    policy = inputs["mixedInstancesPolicy"]
    distribution = policy["instancesDistribution"]
    assert distribution["onDemandBaseCapacity"] == config.on_demand_base
    assert distribution["onDemandPercentageAboveBaseCapacity"] == 100 - config.spot_percentage
    assert distribution["spotAllocationStrategy"] == "price-capacity-optimized"
    assert [o["instanceType"] for o in policy["launchTemplate"]["overrides"]] == config.instance_types
    spec = policy["launchTemplate"]["launchTemplateSpecification"]
    template = child(prod, pool, LAUNCH_TEMPLATE)
    assert spec["launchTemplateId"] == template.id
    assert spec["version"] == str(template.outputs["latestVersion"])  # a new version rolls the group
    assert inputs["capacityRebalance"] is True
    refresh = inputs["instanceRefresh"]
    assert refresh["strategy"] == "Rolling"
    assert refresh["preferences"]["minHealthyPercentage"] == 100  # replacements before removals
    assert inputs["vpcZoneIdentifiers"] == prod.outputs["networks"][config.region]["privateSubnetIds"]
    assert inputs["name"] == group.physical_name
    assert inputs["waitForCapacityTimeout"] == "0"
    propagated = {t["key"] for t in inputs["tags"] if t["propagateAtLaunch"]}
    assert {"owner", "cost-center", "tier", "pool"} <= propagated
    assert "desiredCapacity" in group.options.ignore_changes


@pytest.mark.parametrize("pool", ["llama-8b", "llama-8b-west"])
def test_termination_waits_for_the_agents_drain_as_long_as_a_request(render, pool: str) -> None:
    prod = render("prod")
    hook = child(prod, pool, HOOK, "drain")
    group = child(prod, pool, AUTOSCALING_GROUP)
    assert hook.inputs["autoscalingGroupName"] == group.outputs["name"]
    assert hook.inputs["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook.inputs["defaultResult"] == "CONTINUE"
    # Without heartbeats the agent's SIGTERM drain and engine stop fit; with them (a third of it apart),
    # the action stays open up to its global timeout, far beyond the longest request.
    drain = agent_constants.DRAIN_TIMEOUT_S + agent_constants.ENGINE_STOP_GRACE_S
    assert hook.inputs["heartbeatTimeout"] > drain
    assert min(172800, 100 * hook.inputs["heartbeatTimeout"]) > REQUEST_TIMEOUT_S
    # The load balancer lets a deregistering node finish what it serves for as long as the gateway waits,
    # a request it routed while letting go included.
    target_group = child(prod, pool, TARGET_GROUP)
    assert target_group.inputs["deregistrationDelay"] == agent_constants.LB_LEAVE_S + REQUEST_TIMEOUT_S
    assert group.inputs["targetGroupArns"] == [target_group.outputs["arn"]]
    leave = prod.outputs["budgets"]["gpuPoolTimings"][pool]["leave"]
    assert leave["termsSeconds"]["deregistration"] == agent_constants.LB_LEAVE_S + 600
    # The agent's lifecycle drain: its leave, a request begun at its end running 600 s, its reserve.
    drain_terms = agent_constants.LB_LEAVE_S + 600 + agent_constants.DRAIN_RESERVE_S
    assert leave["termsSeconds"]["lifecycleDrain"] == drain_terms
    assert leave["terminateHook"]["heartbeatTimeoutSeconds"] == hook.inputs["heartbeatTimeout"]


@pytest.mark.parametrize("pool", ["llama-8b", "qwen-14b", "llama-8b-west"])
def test_a_new_node_is_in_service_only_once_ready(render, pool: str) -> None:
    """The launch hook, on the group at creation (its first nodes) and as a resource (groups that exist):
    the agent completes it when ready; past the pool's launch-to-ready budget the node is abandoned."""
    prod = render("prod")
    group = child(prod, pool, AUTOSCALING_GROUP)
    (inline,) = group.inputs["initialLifecycleHooks"]
    hook = child(prod, pool, HOOK, "ready")
    ready = prod.outputs["budgets"]["gpuPoolTimings"][pool]["ready"]
    for declared in (inline, hook.inputs):
        assert declared["name"] == "fleet-ready"
        assert declared["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
        assert declared["defaultResult"] == "ABANDON"
        assert declared["heartbeatTimeout"] == ready["launchToReadySeconds"]
    assert hook.inputs["autoscalingGroupName"] == group.outputs["name"]
    # Readiness replacement is the fleet controller's; EC2's checks need no grace behind the hook.
    assert (group.inputs["healthCheckType"], group.inputs["healthCheckGracePeriod"]) == ("EC2", 0)


def test_the_ready_budget_comes_from_the_models_size_and_the_stores_throughput(render) -> None:
    ready = render("prod").outputs["budgets"]["gpuPoolTimings"]["llama-8b"]["ready"]
    # 15 GiB (modelStore.models[].sizeGib) at g6e.xlarge's 2.5 Gbps baseline, the pool's slowest type.
    assert (ready["modelGib"], ready["storeGbps"]) == (15, 2.5)
    transfer = 15 * 8 * 1024**3 / 1e9 / 2.5
    assert ready["termsSeconds"]["storeTransfer"] == pytest.approx(transfer, abs=0.1)
    assert ready["warmUpLimitSeconds"] == math.ceil(transfer + ready["termsSeconds"]["engineStart"])
    assert ready["launchToReadySeconds"] == ready["warmUpLimitSeconds"] + ready["termsSeconds"]["boot"]
    # Without a declared size: what fits the GPU memory of the pool's smallest node bounds it.
    models = [
        {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        {"name": "qwen2.5:14b", "path": "ollama/qwen2.5-14b"},
    ]
    unsized = render("prod", {"modelStore": {"models": models}}).outputs["budgets"]["gpuPoolTimings"]
    assert unsized["llama-8b"]["ready"]["modelGib"] == 24  # g5.2xlarge / g6.2xlarge: one 24 GiB GPU
    assert unsized["llama-8b"]["ready"]["warmUpLimitSeconds"] > ready["warmUpLimitSeconds"]


@pytest.mark.parametrize("pool", ["llama-8b", "qwen-14b", "llama-8b-west"])
def test_instance_refresh_canaries_one_node_and_rolls_back_on_the_ready_nodes_alarm(
    render, stack_input, pool: str
) -> None:
    prod = render("prod")
    config = next(p for p in config_pools(stack_input) if p.name == pool)
    group = child(prod, pool, AUTOSCALING_GROUP)
    template = child(prod, pool, LAUNCH_TEMPLATE)
    spec = group.inputs["mixedInstancesPolicy"]["launchTemplate"]["launchTemplateSpecification"]
    assert spec["version"].isdigit() and spec["version"] == str(template.outputs["latestVersion"])
    preferences = group.inputs["instanceRefresh"]["preferences"]
    assert preferences["autoRollback"] is True
    assert preferences["checkpointPercentages"] == [1, 100]  # the first new node, then the rest
    assert preferences["checkpointDelay"] == "600" and preferences["instanceWarmup"] == "180"
    assert (preferences["scaleInProtectedInstances"], preferences["standbyInstances"]) == (
        "Refresh",
        "Ignore",
    )
    alarm = child(prod, pool, METRIC_ALARM, "ready-nodes")
    assert preferences["alarmSpecification"]["alarms"] == [alarm.physical_name]
    # The controller's ReadyNodes for this pool, below its minimum for three minutes.
    assert (alarm.inputs["namespace"], alarm.inputs["metricName"]) == (
        fleet_metrics.CONTROLLER_NAMESPACE,
        fleet_metrics.READY_NODES,
    )
    assert alarm.inputs["dimensions"] == {fleet_metrics.POOL_DIMENSION: pool}
    assert alarm.inputs["comparisonOperator"] == "LessThanThreshold"
    assert alarm.inputs["threshold"] == config.min_size
    assert alarm.inputs["evaluationPeriods"] * alarm.inputs["period"] == 180
    topic = next(t for t in prod.of_type(SNS_TOPIC) if t.name == f"alerts-{config.region}")
    assert alarm.inputs["alarmActions"] == [topic.outputs["arn"]]


def test_a_pool_that_may_scale_to_zero_has_no_ready_alarm_and_still_rolls_back(render, stack_input) -> None:
    raw = json.loads(stack_input("dev").config["inference-fleet:gpuPools"])
    raw[0] |= {"minSize": 0}
    dev = render("dev", {"gpuPools": raw})
    assert [a for a in dev.of_type(METRIC_ALARM) if a.name.endswith("ready-nodes")] == []
    preferences = child(dev, "llama-8b", AUTOSCALING_GROUP).inputs["instanceRefresh"]["preferences"]
    assert preferences["autoRollback"] is True and "alarmSpecification" not in preferences


@pytest.mark.parametrize("pool", ["llama-8b", "qwen-14b", "llama-8b-west"])
def test_an_internal_load_balancer_checks_the_agents_readiness(render, pool: str) -> None:
    prod = render("prod")
    balancer = child(prod, pool, LOAD_BALANCER)
    assert balancer.inputs["internal"] is True
    assert len(balancer.physical_name or "") <= 32
    target_group = child(prod, pool, TARGET_GROUP)
    check = target_group.inputs["healthCheck"]
    assert check["path"] == agent_constants.READINESS_PATH
    assert check["matcher"] == "200"
    # A dead node is out within 10 s: the API's minimum interval (5 s) and unhealthy threshold (2), a
    # timeout (2 s, its minimum) shorter than the interval.
    assert check["interval"] * check["unhealthyThreshold"] <= 10
    assert (check["interval"], check["unhealthyThreshold"], check["timeout"]) == (5, 2, 2)
    dead = prod.outputs["budgets"]["gpuPoolTimings"][pool]["dead"]
    assert dead["deadNodeOutOfRotationSeconds"] == 10
    # Every node its share: a node that fails fast is not favoured (least outstanding requests would).
    assert target_group.inputs["loadBalancingAlgorithmType"] == "round_robin"
    assert target_group.inputs["port"] == agent_constants.DEFAULT_SERVING_PORT
    assert len(target_group.physical_name or "") <= 32
    listener = child(prod, pool, LISTENER)
    assert listener.inputs["loadBalancerArn"] == balancer.outputs["arn"]
    assert listener.inputs["defaultActions"][0]["targetGroupArn"] == target_group.outputs["arn"]
    record = child(prod, pool, ROUTE53_RECORD)
    assert record.inputs["name"] == f"{pool}.pools.fleet.example.com"
    assert record.inputs["aliases"][0]["name"] == balancer.outputs["dnsName"]


def rules_on(rendering: Rendering, group_id: str) -> list[dict[str, Any]]:
    """Every rule on a security group: direction, port, peer (a group id or a CIDR)."""
    found = []
    for resource_type, direction in (
        (SECURITY_GROUP_INGRESS_RULE, "in"),
        (SECURITY_GROUP_EGRESS_RULE, "out"),
    ):
        for rule in rendering.of_type(resource_type):
            if rule.inputs["securityGroupId"] == group_id:
                peer = rule.inputs.get("referencedSecurityGroupId") or rule.inputs.get("cidrIpv4")
                found.append({"direction": direction, "port": rule.inputs["fromPort"], "peer": peer})
    return found


def test_only_the_gateway_reaches_the_pool_and_only_the_pool_reaches_the_agents(render) -> None:
    prod = render("prod")
    balancer = child(prod, "llama-8b", LOAD_BALANCER)
    (lb_sg,) = balancer.inputs["securityGroups"]
    template = child(prod, "llama-8b", LAUNCH_TEMPLATE)
    # The node's own group, and the model store's client group (tests/model_store checks that one).
    node_sg, _store_client_sg = template.inputs["vpcSecurityGroupIds"]
    plane = prod.one("inference-fleet:control_plane:RegionalControlPlane", "control-plane-us-east-1")
    groups = {r.name: r.id for r in prod.descendants(plane) if r.type == SECURITY_GROUP}
    gateway_sg, redis_sg = (
        groups["control-plane-us-east-1-gateway-sg"],
        groups["control-plane-us-east-1-redis-sg"],
    )
    agent = agent_constants.DEFAULT_SERVING_PORT
    assert sorted(rules_on(prod, lb_sg), key=str) == sorted(
        [
            {"direction": "in", "port": 80, "peer": gateway_sg},
            {"direction": "out", "port": agent, "peer": node_sg},
        ],
        key=str,
    )
    controller_sg = prod.one(SECURITY_GROUP, "controller-us-east-1-sg").id
    collector_sg = prod.one(SECURITY_GROUP, "observability-us-east-1-metrics-collector").id
    assert sorted(rules_on(prod, node_sg), key=str) == sorted(
        [
            {"direction": "in", "port": agent, "peer": lb_sg},
            {"direction": "in", "port": agent, "peer": controller_sg},  # the fleet controller's poll
            {"direction": "in", "port": agent, "peer": collector_sg},  # a Prometheus collector's scrape
            {"direction": "out", "port": 6379, "peer": redis_sg},
            {"direction": "out", "port": 443, "peer": "0.0.0.0/0"},
        ],
        key=str,
    )  # no other way in: the engines listen on 127.0.0.1 behind the agent
    assert {"direction": "out", "port": 80, "peer": lb_sg} in rules_on(prod, gateway_sg)
    assert {"direction": "in", "port": 6379, "peer": node_sg} in rules_on(prod, redis_sg)


def test_a_node_may_complete_only_its_own_groups_lifecycle_action(render) -> None:
    prod = render("prod")
    policy = child(prod, "llama-8b", IAM_ROLE_POLICY)
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    # Its own, the model store's reads (tests/model_store checks those) and the scaling's
    # (tests/gpu_pools/test_scaling.py).
    scaling = {"PublishNodeMetrics", "ProtectOwnGroupsInstances", "ReadGroups"}
    store = {"ReadModelStoreChunks", "ReadModelStoreToken", "DecryptModelStoreToken"}
    assert set(statements) - store - scaling == {
        "CompleteOwnLifecycleAction",
        "LeaveOwnTargetGroup",
        "ReadNodeSecret",
        "DecryptNodeSecret",
    }
    group = child(prod, "llama-8b", AUTOSCALING_GROUP)
    lifecycle = statements["CompleteOwnLifecycleAction"]
    assert lifecycle["Action"] == [
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:RecordLifecycleActionHeartbeat",
    ]
    # Out of its own pool's target group only, before it refuses work.
    target_group = child(prod, "llama-8b", TARGET_GROUP)
    assert statements["LeaveOwnTargetGroup"] == {
        "Sid": "LeaveOwnTargetGroup",
        "Effect": "Allow",
        "Action": "elasticloadbalancing:DeregisterTargets",
        "Resource": target_group.outputs["arn"],
    }
    assert lifecycle["Resource"] == (
        f"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/{group.physical_name}"
    )
    secret = child(prod, "llama-8b", SECRET)
    assert statements["ReadNodeSecret"]["Resource"] == secret.outputs["arn"]
    profile = child(prod, "llama-8b", IAM_INSTANCE_PROFILE)
    template = child(prod, "llama-8b", LAUNCH_TEMPLATE)
    assert template.inputs["iamInstanceProfile"]["arn"] == profile.outputs["arn"]
    role = child(prod, "llama-8b", IAM_ROLE)
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_the_image_is_built_in_the_primary_with_imdsv2_and_copied_where_the_pools_run(render) -> None:
    prod = render("prod")
    infrastructure = prod.one(IMAGE_BUILDER_INFRASTRUCTURE)
    assert infrastructure.provider and infrastructure.provider.endswith("aws-us-east-1")
    assert infrastructure.inputs["instanceMetadataOptions"]["httpTokens"] == "required"
    assert infrastructure.inputs["instanceTypes"] == ["g6.xlarge"]  # a GPU: the test phase runs nvidia-smi
    for engine in ("vllm", "ollama"):
        distribution = prod.one(IMAGE_BUILDER_DISTRIBUTION, f"node-image-{engine}")
        regions = [d["region"] for d in distribution.inputs["distributions"]]
        assert regions == ["us-east-1", "us-west-2"]
        image = prod.one(IMAGE, f"node-image-{engine}")
        assert image.inputs["imageTestsConfiguration"]["imageTestsEnabled"] is True
    dev = render("dev")
    (distribution,) = dev.of_type(IMAGE_BUILDER_DISTRIBUTION)
    assert [d["region"] for d in distribution.inputs["distributions"]] == ["us-east-1"]
    assert [i.name for i in dev.of_type(IMAGE)] == ["node-image-vllm"]  # only the engines pools use


def test_a_warm_pool_gets_one_launch_template_and_no_spot(render, stack_input) -> None:
    raw = json.loads(stack_input("prod").config["inference-fleet:gpuPools"])
    raw[0] |= {"instanceTypes": ["g6e.xlarge"], "spotPercentage": 0, "warmPool": {"minSize": 2}}
    group = child(render("prod", {"gpuPools": raw}), "llama-8b", AUTOSCALING_GROUP)
    assert group.inputs.get("mixedInstancesPolicy") is None
    assert group.inputs["launchTemplate"]["version"] == "1"
    assert group.inputs["warmPool"] == {
        "poolState": "Stopped",
        "minSize": 2,
        "instanceReusePolicy": {"reuseOnScaleIn": True},
    }
    assert group.inputs["capacityRebalance"] is False  # no spot to rebalance
