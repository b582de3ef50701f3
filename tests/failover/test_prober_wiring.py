"""How the prober is wired: everything in the standby region, on a schedule, inside the standby's network
with a way to the primary writer over the peering, a role that can do this one thing only, and alarms on
its own failures. Nothing of it lives in the primary region."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.core.catalog.resource_types import (
    EVENT_RULE,
    EVENT_TARGET,
    IAM_ROLE,
    IAM_ROLE_POLICY,
    LAMBDA_EVENT_INVOKE_CONFIG,
    LAMBDA_FUNCTION,
    LAMBDA_PERMISSION,
    METRIC_ALARM,
    RDS_CLUSTER,
    RDS_GLOBAL_CLUSTER,
    SECURITY_GROUP,
    SECURITY_GROUP_EGRESS_RULE,
    SECURITY_GROUP_INGRESS_RULE,
    SQS_QUEUE,
    SSM_PARAMETER,
)
from components.network import subnet_plan
from fleet.harness import RecordedResource, Rendering
from functions.failover_prober.settings import ProberSettings

PROBER_TYPE = "inference-fleet:failover:FailoverProber"
FUNCTION = LAMBDA_FUNCTION
ALARM = METRIC_ALARM
PROBER = Path(__file__).resolve().parents[2] / "functions" / "failover_prober"


def provider_region(rendering: Rendering, resource: RecordedResource) -> str:
    assert resource.provider
    return rendering.get(resource.provider).inputs["region"]


def policy_of(rendering: Rendering, role: RecordedResource) -> list[dict[str, Any]]:
    (policy,) = [p for p in rendering.of_type(IAM_ROLE_POLICY) if p.inputs["role"] == role.id]
    return json.loads(policy.inputs["policy"])["Statement"]


def cluster_in(rendering: Rendering, region: str) -> RecordedResource:
    return next(c for c in rendering.of_type(RDS_CLUSTER) if provider_region(rendering, c) == region)


@pytest.fixture
def prod(render) -> Rendering:
    return render("prod")


def prober(rendering: Rendering) -> RecordedResource:
    return rendering.one(FUNCTION, "promotion-function")


def of_prober(rendering: Rendering, resource_type: str) -> list[RecordedResource]:
    """The prober's resources of a type (the fleet controllers have schedules and functions too)."""
    return [r for r in rendering.descendants(rendering.one(PROBER_TYPE)) if r.type == resource_type]


def test_everything_the_prober_uses_lives_in_the_standby_region(prod):
    component = prod.one(PROBER_TYPE)
    children = [r for r in prod.descendants(component) if r.custom]
    assert {provider_region(prod, r) for r in children} == {"us-west-2"}
    assert all(r.name.startswith("promotion-") for r in prod.descendants(component))
    # The alarm -> EventBridge -> forwarder path in the primary region is gone (the primary's schedules
    # are its fleet controller's and the writer's heartbeat, test_heartbeat_wiring.py).
    assert sorted(r.name for r in prod.of_type(EVENT_RULE) if provider_region(prod, r) == "us-east-1") == [
        "controller-us-east-1-schedule",
        "heartbeat-schedule",
    ]
    assert not [a for a in prod.of_type(ALARM) if a.inputs.get("namespace") == "AWS/Route53"]


def test_a_schedule_runs_it_every_minute(prod):
    (rule,) = of_prober(prod, EVENT_RULE)
    assert rule.inputs["scheduleExpression"] == "rate(1 minute)"
    (target,) = of_prober(prod, EVENT_TARGET)
    assert (target.inputs["rule"], target.inputs["arn"]) == (
        rule.outputs["name"],
        prober(prod).outputs["arn"],
    )
    (permission,) = of_prober(prod, LAMBDA_PERMISSION)
    assert (permission.inputs["principal"], permission.inputs["sourceArn"]) == (
        "events.amazonaws.com",
        rule.outputs["arn"],
    )


def test_it_observes_this_database_and_reads_route53s_verdict_through_dns(prod):
    function = prober(prod)
    env = function.inputs["environment"]["variables"]
    standby, primary = cluster_in(prod, "us-west-2"), cluster_in(prod, "us-east-1")
    assert env["GLOBAL_CLUSTER_ID"] == prod.one(RDS_GLOBAL_CLUSTER).id
    assert env["TARGET_CLUSTER_ARN"] == standby.outputs["arn"]
    assert env["STANDBY_CLUSTER_ID"] == standby.outputs["clusterIdentifier"]
    # The primary's own cluster endpoint (not the global one, which follows the writer).
    assert env["PRIMARY_WRITER_HOST"] == primary.outputs["endpoint"]
    # The heartbeat from the standby's own replica, as its own reader role.
    assert env["STANDBY_READER_HOST"] == standby.outputs["readerEndpoint"]
    assert (env["DATABASE_NAME"], env["WITNESS_USER"], env["HEARTBEAT_STALE_SECONDS"]) == (
        "litellm",
        "fleet_prober",
        "30",
    )
    assert env["STATUS_RECORD"] == prod.outputs["failover"]["statusRecord"]
    assert (env["AGREE_SECONDS"], env["RPO_SECONDS"]) == ("60", "60")
    # One region loss's witnesses fall within Route53's detection, the status record's TTL and a probe
    # interval (the writes budget's terms, worst case), read once a probe interval.
    terms = prod.outputs["budgets"]["failover"]["regionLossWrites"]["terms"]
    writes = {t["term"]: int(t["worst"]) for t in terms}
    route53 = ("firstProbeOffset", "probeIntervals", "probeTimeout", "statusRecordTtl")
    assert env["DETECTION_SECONDS"] == str(sum(writes[t] for t in route53) + 10 + 10) == "66"
    assert env["STACK"] == "prod"
    # The function reads back exactly what was rendered, each value under its one name.
    settings = ProberSettings.from_env(env)
    assert settings.to_env() == env
    assert (settings.promote_after_seconds, settings.probe_interval_seconds) == (60, 10)
    assert env["TOPIC_ARN"] == prod.outputs["alertTopics"]["us-west-2"]
    # No reserved concurrency: new accounts often cannot reserve any, and a second run is harmless.
    assert function.inputs.get("reservedConcurrentExecutions") is None
    assert function.inputs["handler"] == "failover_prober.handler.handle"


def test_it_runs_in_the_standby_network_and_reaches_only_the_two_databases_and_https(prod):
    function = prober(prod)
    vpc = function.inputs["vpcConfig"]
    assert vpc["subnetIds"] == prod.outputs["networks"]["us-west-2"]["privateSubnetIds"]
    (group_id,) = vpc["securityGroupIds"]
    rules = [r for r in prod.of_type(SECURITY_GROUP_EGRESS_RULE) if r.inputs["securityGroupId"] == group_id]
    ports = {
        (r.inputs.get("cidrIpv4") or r.inputs["referencedSecurityGroupId"], r.inputs["fromPort"])
        for r in rules
    }
    primary_private = {(c, 5432) for c in subnet_plan("10.10.0.0/16", 3)[0]}
    standby_database = prod.one(SECURITY_GROUP, "data-us-west-2-sg").id
    assert ports == primary_private | {("0.0.0.0/0", 443), (standby_database, 5432)}
    # The standby's database lets the prober in, by its group.
    (inbound,) = [
        r
        for r in prod.of_type(SECURITY_GROUP_INGRESS_RULE)
        if r.inputs.get("referencedSecurityGroupId") == group_id
    ]
    assert (inbound.inputs["securityGroupId"], inbound.inputs["fromPort"]) == (standby_database, 5432)
    # And the primary's database lets the standby's private subnets in (the data tier's rule).
    ingress = [
        r.inputs["cidrIpv4"]
        for r in prod.of_type(SECURITY_GROUP_INGRESS_RULE)
        if r.name.startswith("data-us-east-1-remote-")
    ]
    assert len(ingress) == 3


def test_the_function_ships_the_prober_package_from_this_repository(prod):
    assets = getattr(prober(prod).inputs["code"], "assets", None) or {}
    assert set(assets) == {f"failover_prober/{p.name}" for p in PROBER.glob("*.py")}
    for name, asset in assets.items():
        assert Path(asset.path) == PROBER / name.split("/", 1)[1]
    # The PostgreSQL client is the database bootstrap's, one file linked into both packages.
    assert (
        Path(assets["failover_prober/pgwire.py"].path).resolve()
        == PROBER.parent / "db_bootstrap" / "pgwire.py"
    )


def test_a_failed_run_is_kept_for_a_person_and_the_schedule_is_its_retry(prod):
    (config,) = of_prober(prod, LAMBDA_EVENT_INVOKE_CONFIG)
    assert config.inputs["functionName"] == prober(prod).outputs["name"]
    assert (config.inputs["maximumRetryAttempts"], config.inputs["maximumEventAgeInSeconds"]) == (0, 60)
    queue = prod.one(SQS_QUEUE)
    assert config.inputs["destinationConfig"]["onFailure"]["destination"] == queue.outputs["arn"]
    alarms = {a.name: a for a in prod.of_type(ALARM) if a.name.startswith("promotion-")}
    assert set(alarms) == {
        "promotion-errors",
        "promotion-failures-queued",
        "promotion-witnesses-degraded",
        "promotion-writer-in-standby",
    }
    topic = prod.outputs["alertTopics"]["us-west-2"]
    assert alarms["promotion-errors"].inputs["dimensions"] == {"FunctionName": prober(prod).outputs["name"]}
    assert alarms["promotion-failures-queued"].inputs["dimensions"] == {"QueueName": queue.outputs["name"]}
    assert all(a.inputs["alarmActions"] == [topic] for a in alarms.values())


def test_the_role_can_only_read_and_promote_this_database_and_keep_its_record(prod):
    function = prober(prod)
    (role,) = [r for r in prod.of_type(IAM_ROLE) if r.outputs["arn"] == function.inputs["role"]]
    statements = {s["Sid"]: s for s in policy_of(prod, role)}
    global_arn = prod.one(RDS_GLOBAL_CLUSTER).outputs["arn"]
    clusters = sorted(c.outputs["arn"] for c in prod.of_type(RDS_CLUSTER))
    assert statements["ReadGlobalDatabase"]["Resource"] == global_arn
    assert statements["FailOverGlobalDatabase"]["Action"] == "rds:FailoverGlobalCluster"
    assert sorted(statements["FailOverGlobalDatabase"]["Resource"]) == sorted([global_arn, *clusters])
    parameters = sorted(p.outputs["arn"] for p in prod.of_type(SSM_PARAMETER))
    assert sorted(statements["RecordAndState"]["Resource"]) == parameters
    assert statements["Tell"]["Resource"] == prod.outputs["alertTopics"]["us-west-2"]
    # Log in to the standby's replica as the heartbeat's reader, nothing else of the database.
    standby = cluster_in(prod, "us-west-2")
    assert statements["ReadHeartbeat"]["Action"] == "rds-db:connect"
    assert statements["ReadHeartbeat"]["Resource"] == (
        f"arn:aws:rds-db:us-west-2:123456789012:dbuser:{standby.outputs['clusterResourceId']}/fleet_prober"
    )
    for sid, statement in statements.items():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any("*" in a for a in actions)
        # Reading metrics and managing the function's network interfaces: AWS defines no resources.
        assert statement["Resource"] != "*" or sid in ("ReadLag", "VpcNetworkInterfaces")


def test_failover_safety_alarms_when_a_witness_is_unknown_or_they_disagree_for_five_minutes(prod):
    """The issue's standing peering break was heard of only at the next failure: now the prober publishes
    whether its witnesses agree, every observation, and five minutes of disagreement page a person."""
    degraded = prod.one(ALARM, "promotion-witnesses-degraded")
    assert (degraded.inputs["namespace"], degraded.inputs["metricName"]) == (
        "inference-fleet/failover",
        "WitnessesDegraded",
    )
    assert degraded.inputs["dimensions"] == {"Stack": "prod"}
    # Every minute of five: each of its observations degraded.
    assert (
        degraded.inputs["statistic"],
        degraded.inputs["period"],
        degraded.inputs["evaluationPeriods"],
    ) == (
        "Minimum",
        60,
        5,
    )
    assert (degraded.inputs["comparisonOperator"], degraded.inputs["threshold"]) == (
        "GreaterThanOrEqualToThreshold",
        1,
    )
    assert degraded.inputs["alarmActions"] == [prod.outputs["alertTopics"]["us-west-2"]]
    # It publishes with the embedded metric format, which needs its lines as printed.
    assert prober(prod).inputs["loggingConfig"]["logFormat"] == "Text"


def test_prod_outputs_the_record_and_the_lossless_moves(prod):
    promotion = prod.outputs["promotion"]
    standby, primary = cluster_in(prod, "us-west-2"), cluster_in(prod, "us-east-1")
    assert promotion["switchoverCommand"] == (
        "aws rds switchover-global-cluster --region us-west-2 --global-cluster-identifier inference-fleet-prod "
        f"--target-db-cluster-identifier {standby.outputs['arn']}"
    )
    assert promotion["failbackCommand"] == (
        "aws rds switchover-global-cluster --region us-east-1 --global-cluster-identifier inference-fleet-prod "
        f"--target-db-cluster-identifier {primary.outputs['arn']}"
    )
    assert promotion["record"] == "/inference-fleet/prod/aurora-promotion/last"


def test_the_prober_keeps_the_urns_it_had_as_aurora_promotion(prod):
    component = prod.one(PROBER_TYPE)
    for resource in [component, *prod.descendants(component)]:
        former = resource.urn.replace(PROBER_TYPE, "inference-fleet:promotion:AuroraPromotion")
        assert former != resource.urn and former in prod.known_as(resource), resource.name


def test_dev_has_nothing_to_promote(render):
    dev = render("dev")
    assert dev.of_type(PROBER_TYPE) == []
    assert dev.outputs["failover"] == {} and dev.outputs["promotion"] == {}
