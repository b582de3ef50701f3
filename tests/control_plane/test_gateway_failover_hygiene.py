"""The gateway as failover needs it: the region-health sidecar and what it checks, keep-alive above the
load balancer's idle timeout, migrations never a condition of starting, alarms that reach a person, the
standby growing to the primary's size when it takes traffic, and the image from the region's own ECR."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.control_plane.region_health import probe_key
from components.core.catalog.resource_types import (
    AWS_PROVIDER,
    ECR_PULL_THROUGH_CACHE_RULE,
    ECS_TASK_DEFINITION,
    LOAD_BALANCER,
    METRIC_ALARM,
    S3_OBJECT,
    SCALING_POLICY,
    SECRET,
    SNS_SUBSCRIPTION,
    SNS_TOPIC,
)
from fleet.harness import RecordedResource, Rendering
from functions.region_health.settings import RegionHealthSettings

REGIONS = ("us-east-1", "us-west-2")
SIDECAR_PACKAGE = Path(__file__).resolve().parents[2] / "functions" / "region_health"


def in_region(rendering: Rendering, region: str, resource_type: str) -> list[RecordedResource]:
    provider = rendering.one(AWS_PROVIDER, f"aws-{region}").urn
    return [r for r in rendering.of_type(resource_type) if r.provider == provider]


def containers(rendering: Rendering, region: str) -> dict[str, dict[str, Any]]:
    (task,) = in_region(rendering, region, ECS_TASK_DEFINITION)
    return {c["name"]: c for c in json.loads(task.inputs["containerDefinitions"])}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["environment"]}


@pytest.mark.parametrize("region", REGIONS)
def test_the_region_health_sidecar_runs_this_repositorys_code_in_the_gateway_image(render, region):
    prod = render("prod")
    found = containers(prod, region)
    sidecar, register, gateway = found["region-health"], found["region-health-key"], found["gateway"]
    assert sidecar["essential"] is True and register["essential"] is False
    assert sidecar["image"] == register["image"] == gateway["image"]
    assert sidecar["entryPoint"][:2] == register["entryPoint"][:2] == ["python3", "-c"]
    # The key is registered first; the sidecar starts once that has run, whatever its outcome.
    assert sidecar["dependsOn"] == [{"containerName": "region-health-key", "condition": "COMPLETE"}]
    env = env_of(sidecar)
    assert env == env_of(register)
    shipped = json.loads(env.pop("FLEET_REGION_HEALTH_CODE"))
    assert shipped == {m.name: m.read_text() for m in SIDECAR_PACKAGE.glob("*.py")}
    # The rest is its settings, read back whole by the sidecar's own dataclass.
    settings = RegionHealthSettings.from_env(env)
    assert settings.to_env() == env
    assert settings.gateway_url == "http://127.0.0.1:4000"
    assert settings.key_alias == f"inference-fleet-region-health-{region}"
    assert settings.serverless_only_healthy is False  # prod: failover.serverlessOnly failing
    assert sidecar["portMappings"][0]["containerPort"] == settings.port == 4001
    # It completes through every deployment of the config the gateway runs, by id; its own pools are
    # those tried first. No base URL of ours: LiteLLM says where it called.
    config_object = prod.one(S3_OBJECT, f"control-plane-{region}-litellm-config")
    config = yaml.safe_load(config_object.inputs["content"])
    assert [p.deployment for p in settings.probes] == [d["model_info"]["id"] for d in config["model_list"]]
    own = {p.deployment for p in settings.own}
    pools = {"us-east-1": {"llama-8b", "qwen-14b"}, "us-west-2": {"llama-8b-west"}}[region]
    assert {d.rsplit("/", 1)[-1] for d in own} == pools and all("/pool/" in d for d in own)
    assert not [v for v in env.values() if "https://" in v]


@pytest.mark.parametrize("region", REGIONS)
def test_the_sidecars_key_is_its_own_from_the_tasks_secret(render, region):
    prod = render("prod")
    found = containers(prod, region)
    sidecar, register = found["region-health"], found["region-health-key"]
    (key,) = sidecar["secrets"]
    assert key["name"] == "FLEET_REGION_HEALTH_KEY"
    gateway_secret = found["gateway"]["secrets"][0]["valueFrom"].split(":LITELLM_MASTER_KEY::")[0]
    assert key["valueFrom"] == f"{gateway_secret}:FLEET_REGION_HEALTH_KEY::"
    # The registration writes it through the gateway's own database role, nothing more.
    assert [s["name"] for s in register["secrets"]] == ["FLEET_REGION_HEALTH_KEY", "DATABASE_URL"]
    assert "LITELLM_MASTER_KEY" not in {s["name"] for s in sidecar["secrets"] + register["secrets"]}


def test_each_region_derives_a_key_of_its_own_from_the_master_key():
    keys = {probe_key("sk-master-0123456789", region) for region in REGIONS}
    assert len(keys) == 2
    assert all(k.startswith("sk-") and "sk-master-0123456789" not in k for k in keys)
    assert probe_key("sk-master-rotated-0000", REGIONS[0]) not in keys


@pytest.mark.parametrize("region", REGIONS)
def test_the_gateway_keeps_connections_longer_than_the_load_balancer(render, region):
    prod = render("prod")
    command = containers(prod, region)["gateway"]["command"]
    keepalive = int(command[command.index("--keepalive_timeout") + 1])
    alb = prod.one(LOAD_BALANCER, f"control-plane-{region}-alb")
    assert alb.inputs["idleTimeout"] < keepalive


@pytest.mark.parametrize("region", REGIONS)
def test_migrations_run_first_and_never_keep_the_gateway_from_starting(render, region):
    found = containers(render("prod"), region)
    gateway, migrate = found["gateway"], found["migrate"]
    # The server skips them; a container of its own runs them to completion, successful or not.
    assert env_of(gateway)["DISABLE_SCHEMA_UPDATE"] == "true"
    assert gateway["dependsOn"] == [{"containerName": "migrate", "condition": "COMPLETE"}]
    assert (migrate["essential"], migrate["command"]) == (False, ["--skip_server_startup"])
    assert "DISABLE_SCHEMA_UPDATE" not in env_of(migrate)
    assert migrate["image"] == gateway["image"] and migrate["secrets"] == gateway["secrets"]


@pytest.mark.parametrize("region", REGIONS)
def test_every_control_plane_alarm_reaches_the_regions_topic(render, region):
    prod = render("prod")
    topic = prod.outputs["alertTopics"][region]
    alarms = {
        a.name.removeprefix(f"control-plane-{region}-"): a for a in in_region(prod, region, METRIC_ALARM)
    }
    expected = {"alb-5xx", "unhealthy-targets", "tasks-below-desired"}
    assert expected <= set(alarms)
    for name in expected:
        assert alarms[name].inputs["alarmActions"] == [topic]
        assert alarms[name].inputs["okActions"] == [topic]
    assert alarms["alb-5xx"].inputs["metricName"] == "HTTPCode_ELB_5XX_Count"
    running = {q["id"]: q for q in alarms["tasks-below-desired"].inputs["metricQueries"]}
    assert running["missing"]["expression"] == "desired - running"
    assert running["running"]["metric"]["namespace"] == "ECS/ContainerInsights"


def test_the_standby_takes_the_primarys_size_when_it_takes_traffic(render):
    prod = render("prod")
    (alarm,) = [a for a in in_region(prod, "us-west-2", METRIC_ALARM) if a.name.endswith("taking-traffic")]
    (policy,) = [p for p in in_region(prod, "us-west-2", SCALING_POLICY) if p.name.endswith("takeover")]
    step = policy.inputs["stepScalingPolicyConfiguration"]
    assert step["adjustmentType"] == "ExactCapacity"
    assert [s["scalingAdjustment"] for s in step["stepAdjustments"]] == [3]  # the primary's minTasks
    assert policy.outputs["arn"] in alarm.inputs["alarmActions"]
    assert alarm.inputs["metricName"] == "RequestCount"
    assert alarm.inputs["threshold"] == 600  # one task's worth a minute: far above the health checks
    assert not [a for a in in_region(prod, "us-east-1", METRIC_ALARM) if a.name.endswith("taking-traffic")]


def test_prod_protects_the_gateways_secrets(render):
    prod = render("prod")
    secrets = prod.of_type(SECRET)
    assert secrets and all(s.options.protect for s in secrets)
    assert not any(s.options.protect for s in render("dev").of_type(SECRET))


def test_an_image_already_in_ecr_is_pulled_as_it_is(render, stack_input):
    config = json.loads(stack_input("prod").config["inference-fleet:controlPlane"])
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/litellm-database@sha256:" + "a" * 64
    config["gateway"]["image"] = image
    rendering = render("prod", {"controlPlane": config})
    assert rendering.of_type(ECR_PULL_THROUGH_CACHE_RULE) == []
    assert containers(rendering, "us-west-2")["gateway"]["image"] == image


def test_alerts_go_to_a_topic_per_region_with_the_configured_subscriptions(render):
    prod = render("prod")
    topics = prod.of_type(SNS_TOPIC)
    assert sorted(t.physical_name for t in topics) == ["fleet-prod-use1-alerts", "fleet-prod-usw2-alerts"]
    subscriptions = prod.of_type(SNS_SUBSCRIPTION)
    assert {(s.inputs["topic"], s.inputs["protocol"], s.inputs["endpoint"]) for s in subscriptions} == {
        (t.outputs["arn"], "email", "ml-platform-oncall@example.com") for t in topics
    }


def test_prod_without_anyone_to_alert_is_refused(config_problems):
    assert config_problems("prod", {"alerts": {"subscriptions": []}}) == [
        "inference-fleet:alerts.subscriptions: empty; prod names at least one: failover decisions and alarms "
        "must reach a person"
    ]
    assert config_problems(
        "prod", {"alerts": {"subscriptions": [{"protocol": "sms", "endpoint": "555-1234"}]}}
    ) == [
        "inference-fleet:alerts.subscriptions[0].endpoint: got '555-1234'; sms takes a phone number in E.164 form "
        "(+15551234567)"
    ]
