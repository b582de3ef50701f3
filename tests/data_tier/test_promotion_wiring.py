"""How the promotion is wired with the cloud's own parts: health-check alarm, event rules, the function
in the standby region, its retries, and a role that can do this one thing only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleet.harness import RecordedResource, Rendering

PROMOTION = "inference-fleet:promotion:AuroraPromotion"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
FUNCTION = "aws:lambda/function:Function"
HANDLER = Path(__file__).resolve().parents[2] / "functions" / "aurora_promotion" / "handler.py"


def provider_region(rendering: Rendering, resource: RecordedResource) -> str:
    assert resource.provider
    return rendering.get(resource.provider).inputs["region"]


def policy_of(rendering: Rendering, role: RecordedResource) -> list[dict[str, Any]]:
    (policy,) = [p for p in rendering.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id]
    return json.loads(policy.inputs["policy"])["Statement"]


@pytest.fixture
def prod(render) -> Rendering:
    return render("prod")


def test_the_alarm_watches_the_primary_health_check_where_route53_publishes_it(prod):
    alarm = prod.one(ALARM)
    assert provider_region(prod, alarm) == "us-east-1"
    assert (alarm.inputs["namespace"], alarm.inputs["metricName"]) == ("AWS/Route53", "HealthCheckStatus")
    assert alarm.inputs["dimensions"] == {"HealthCheckId": prod.outputs["healthCheckIds"]["us-east-1"]}
    assert alarm.inputs["statistic"] == "Minimum"
    assert alarm.inputs["comparisonOperator"] == "LessThanThreshold" and alarm.inputs["threshold"] == 1
    # promoteAfterSeconds 60 in prod: one failed one-minute period.
    assert alarm.inputs["period"] * alarm.inputs["evaluationPeriods"] == 60
    assert alarm.inputs["datapointsToAlarm"] == alarm.inputs["evaluationPeriods"]
    assert alarm.inputs["treatMissingData"] == "notBreaching"


def test_a_longer_promotion_delay_means_more_failed_periods(render, stack_input):
    config = json.loads(stack_input("prod").config["inference-fleet:controlPlane"])
    config["failover"]["promoteAfterSeconds"] = 300
    alarm = render("prod", {"controlPlane": config}).one(ALARM)
    assert (alarm.inputs["period"], alarm.inputs["evaluationPeriods"]) == (60, 5)


def test_the_alarm_entering_alarm_reaches_the_function_in_the_standby_region(prod):
    alarm = prod.one(ALARM)
    rules = {provider_region(prod, r): r for r in prod.of_type(RULE)}
    assert set(rules) == {"us-east-1", "us-west-2"}
    for rule in rules.values():
        assert json.loads(rule.inputs["eventPattern"]) == {
            "source": ["aws.cloudwatch"],
            "detail-type": ["CloudWatch Alarm State Change"],
            "resources": [alarm.outputs["arn"]],
            "detail": {"state": {"value": ["ALARM"]}},
        }
    targets = {t.inputs["rule"]: t for t in prod.of_type(TARGET)}
    forward = targets[rules["us-east-1"].outputs["name"]]
    assert forward.inputs["arn"] == "arn:aws:events:us-west-2:123456789012:event-bus/default"
    function = prod.one(FUNCTION)
    assert provider_region(prod, function) == "us-west-2"
    assert targets[rules["us-west-2"].outputs["name"]].inputs["arn"] == function.outputs["arn"]
    permission = prod.one("aws:lambda/permission:Permission")
    assert permission.inputs["principal"] == "events.amazonaws.com"
    assert permission.inputs["sourceArn"] == rules["us-west-2"].outputs["arn"]

    (forward_role,) = [
        r for r in prod.of_type("aws:iam/role:Role") if r.outputs["arn"] == forward.inputs["roleArn"]
    ]
    assert policy_of(prod, forward_role) == [
        {"Effect": "Allow", "Action": "events:PutEvents", "Resource": forward.inputs["arn"]}
    ]


def test_the_function_acts_on_this_database_one_invocation_at_a_time(prod):
    function = prod.one(FUNCTION)
    env = function.inputs["environment"]["variables"]
    standby_cluster = next(
        c for c in prod.of_type("aws:rds/cluster:Cluster") if provider_region(prod, c) == "us-west-2"
    )
    assert env == {
        "GLOBAL_CLUSTER_ID": prod.one("aws:rds/globalCluster:GlobalCluster").id,
        "TARGET_CLUSTER_ARN": standby_cluster.outputs["arn"],
        "ALARM_ARN": prod.one(ALARM).outputs["arn"],
        "RECORD_PARAMETER": prod.one("aws:ssm/parameter:Parameter").outputs["name"],
    }
    assert function.inputs["reservedConcurrentExecutions"] == 1
    assert function.inputs["handler"] == "handler.handle"
    assert function.inputs["runtime"].startswith("python3.")


def test_the_function_ships_the_handler_from_this_repository(prod):
    code = prod.one(FUNCTION).inputs["code"]
    assets = getattr(code, "assets", None) or {}
    assert set(assets) == {"handler.py"}
    assert Path(assets["handler.py"].path).resolve() == HANDLER


def test_failed_invocations_are_retried_then_kept_for_a_person(prod):
    config = prod.one("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig")
    assert config.inputs["functionName"] == prod.one(FUNCTION).outputs["name"]
    assert config.inputs["maximumRetryAttempts"] == 2
    queue = prod.one("aws:sqs/queue:Queue")
    assert config.inputs["destinationConfig"]["onFailure"]["destination"] == queue.outputs["arn"]
    assert queue.inputs["sqsManagedSseEnabled"] is True


def test_the_function_role_can_only_promote_this_database_and_record_it(prod):
    function = prod.one(FUNCTION)
    (role,) = [r for r in prod.of_type("aws:iam/role:Role") if r.outputs["arn"] == function.inputs["role"]]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    statements = {s["Sid"]: s for s in policy_of(prod, role)}
    global_arn = prod.one("aws:rds/globalCluster:GlobalCluster").outputs["arn"]
    clusters = sorted(c.outputs["arn"] for c in prod.of_type("aws:rds/cluster:Cluster"))
    assert statements["ReadGlobalDatabase"]["Action"] == "rds:DescribeGlobalClusters"
    assert statements["ReadGlobalDatabase"]["Resource"] == global_arn
    assert statements["FailOverGlobalDatabase"]["Action"] == "rds:FailoverGlobalCluster"
    assert sorted(statements["FailOverGlobalDatabase"]["Resource"]) == sorted([global_arn, *clusters])
    assert statements["Record"] == {
        "Sid": "Record",
        "Effect": "Allow",
        "Action": "ssm:PutParameter",
        "Resource": prod.one("aws:ssm/parameter:Parameter").outputs["arn"],
    }
    for statement in statements.values():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        assert not any("*" in a for a in actions)
        assert "*" not in resources


def test_promotion_is_one_component_under_both_regions_providers(prod):
    component = prod.one(PROMOTION)
    regions = {provider_region(prod, r) for r in prod.descendants(component) if r.custom}
    assert regions == {"us-east-1", "us-west-2"}
    assert all(r.name.startswith("promotion-") for r in prod.descendants(component))


def test_prod_outputs_the_planned_switchover_command(prod):
    promotion = prod.outputs["promotion"]
    standby_cluster = next(
        c for c in prod.of_type("aws:rds/cluster:Cluster") if provider_region(prod, c) == "us-west-2"
    )
    assert promotion["switchoverCommand"] == (
        "aws rds switchover-global-cluster --region us-west-2 --global-cluster-identifier inference-fleet-prod "
        f"--target-db-cluster-identifier {standby_cluster.outputs['arn']}"
    )
    assert promotion["record"] == "/inference-fleet/prod/aurora-promotion/last"


def test_dev_has_nothing_to_promote(render):
    dev = render("dev")
    assert dev.of_type(PROMOTION) == []
    assert dev.of_type(ALARM) == []
    assert dev.outputs["failover"] == {}
