"""How the heartbeat witness is wired: a function in the primary region that reaches only the primary's
Aurora writer and logs in to it as the heartbeat's writer role (IAM database authentication), the table
and roles made by the database bootstrap, overlapping runs every minute, and an alarm on its failures."""

from __future__ import annotations

import json

import pytest

from components.core.catalog.resource_types import (
    EVENT_RULE,
    IAM_ROLE,
    IAM_ROLE_POLICY,
    LAMBDA_FUNCTION,
    LAMBDA_INVOCATION,
    METRIC_ALARM,
    RDS_CLUSTER,
    SECURITY_GROUP,
    SECURITY_GROUP_EGRESS_RULE,
    SECURITY_GROUP_INGRESS_RULE,
)
from fleet.harness import RecordedResource, Rendering
from functions.failover_prober.settings import HeartbeatSettings

HEARTBEAT_TYPE = "inference-fleet:failover:FailoverHeartbeat"
FUNCTION = LAMBDA_FUNCTION


@pytest.fixture
def prod(render) -> Rendering:
    return render("prod")


def region_of(rendering: Rendering, resource: RecordedResource) -> str:
    assert resource.provider
    return rendering.get(resource.provider).inputs["region"]


def primary_cluster(rendering: Rendering) -> RecordedResource:
    return next(c for c in rendering.of_type(RDS_CLUSTER) if region_of(rendering, c) == "us-east-1")


def test_it_lives_in_the_primary_region_and_beats_through_the_primary_writer(prod):
    component = prod.one(HEARTBEAT_TYPE)
    children = [r for r in prod.descendants(component) if r.custom]
    assert {region_of(prod, r) for r in children} == {"us-east-1"}
    function = prod.one(FUNCTION, "heartbeat-function")
    assert function.inputs["handler"] == "failover_prober.heartbeat.handle"
    settings = HeartbeatSettings.from_env(function.inputs["environment"]["variables"])
    assert settings.writer_host == primary_cluster(prod).outputs["endpoint"]
    assert (settings.writer_user, settings.database_name, settings.region) == (
        "fleet_heartbeat",
        "litellm",
        "us-east-1",
    )
    # Runs of 115 s every minute overlap: a schedule's jitter leaves no gap longer than a beat.
    assert (settings.interval_seconds, settings.run_seconds) == (5, 115)
    assert function.inputs["timeout"] > settings.run_seconds
    (rule,) = [r for r in prod.descendants(component) if r.type == EVENT_RULE]
    assert rule.inputs["scheduleExpression"] == "rate(1 minute)"


def test_it_reaches_only_the_primary_writer(prod):
    function = prod.one(FUNCTION, "heartbeat-function")
    (group_id,) = function.inputs["vpcConfig"]["securityGroupIds"]
    database = prod.one(SECURITY_GROUP, "data-us-east-1-sg").id
    egress = [
        r.inputs for r in prod.of_type(SECURITY_GROUP_EGRESS_RULE) if r.inputs["securityGroupId"] == group_id
    ]
    assert [(e["referencedSecurityGroupId"], e["fromPort"]) for e in egress] == [(database, 5432)]
    ingress = [
        r.inputs
        for r in prod.of_type(SECURITY_GROUP_INGRESS_RULE)
        if r.inputs.get("referencedSecurityGroupId") == group_id
    ]
    assert [(i["securityGroupId"], i["fromPort"]) for i in ingress] == [(database, 5432)]


def test_its_role_logs_in_as_the_heartbeat_writer_and_nothing_else(prod):
    function = prod.one(FUNCTION, "heartbeat-function")
    (role,) = [r for r in prod.of_type(IAM_ROLE) if r.outputs["arn"] == function.inputs["role"]]
    (policy,) = [p for p in prod.of_type(IAM_ROLE_POLICY) if p.inputs["role"] == role.id]
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    assert set(statements) == {"WriteHeartbeat", "Logs", "VpcNetworkInterfaces"}
    resource_id = primary_cluster(prod).outputs["clusterResourceId"]
    assert statements["WriteHeartbeat"] == {
        "Sid": "WriteHeartbeat",
        "Effect": "Allow",
        "Action": "rds-db:connect",
        "Resource": f"arn:aws:rds-db:us-east-1:123456789012:dbuser:{resource_id}/fleet_heartbeat",
    }


def test_both_global_members_take_iam_logins_and_the_bootstrap_makes_the_witness(prod, render):
    for cluster in prod.of_type(RDS_CLUSTER):
        assert cluster.inputs["iamDatabaseAuthenticationEnabled"] is True
    invocation = prod.one(LAMBDA_INVOCATION, "data-gateway-role-run")
    event = json.loads(invocation.inputs["input"]["value"])  # a secret: it carries passwords
    assert event["witness"] == {
        "table": "fleet_failover.heartbeat",
        "writer": "fleet_heartbeat",
        "reader": "fleet_prober",
    }
    # One region: no failover, no witness, no IAM logins, and the bootstrap's event as it always was.
    dev = render("dev")
    (cluster,) = dev.of_type(RDS_CLUSTER)
    assert cluster.inputs["iamDatabaseAuthenticationEnabled"] is False
    invocation = dev.one(LAMBDA_INVOCATION, "data-gateway-role-run")
    assert "witness" not in json.loads(invocation.inputs["input"]["value"])
    assert dev.of_type(HEARTBEAT_TYPE) == []


def test_a_run_that_writes_nothing_alarms_in_the_primary_region(prod):
    (alarm,) = [a for a in prod.of_type(METRIC_ALARM) if a.name == "heartbeat-errors"]
    function = prod.one(FUNCTION, "heartbeat-function")
    assert alarm.inputs["dimensions"] == {"FunctionName": function.outputs["name"]}
    assert alarm.inputs["alarmActions"] == [prod.outputs["alertTopics"]["us-east-1"]]


def test_the_witness_spread_covers_the_later_of_route53_and_the_heartbeat(prod):
    """At the stacks' settings Route53's verdict is the later witness (the writes budget's detection terms
    are the real ones); at Route53's fastest (10 s, threshold 1) the heartbeat's staleness is, and the
    prober still accepts one loss's witnesses that far apart."""
    from components.failover.budget import (
        MIN_PROMOTE_AFTER_SECONDS,
        PROBE_INTERVAL_SECONDS,
        region_loss_write_budget,
        witness_spread_seconds,
    )
    from components.failover.config import gateway_reconnect
    from functions.failover_prober.settings import HEARTBEAT_INTERVAL_SECONDS, HEARTBEAT_STALE_SECONDS

    terms = prod.outputs["budgets"]["failover"]["regionLossWrites"]["terms"]
    writes = {t["term"]: int(t["worst"]) for t in terms}
    route53 = writes["firstProbeOffset"] + writes["probeIntervals"] + writes["probeTimeout"]
    assert route53 + writes["statusRecordTtl"] > HEARTBEAT_STALE_SECONDS
    fastest = region_loss_write_budget(10, 1, MIN_PROMOTE_AFTER_SECONDS, gateway_reconnect())
    assert witness_spread_seconds(fastest) == HEARTBEAT_STALE_SECONDS + PROBE_INTERVAL_SECONDS
    # And a live writer's beat is never stale: several beats fit in the staleness.
    assert HEARTBEAT_STALE_SECONDS >= 4 * HEARTBEAT_INTERVAL_SECONDS
