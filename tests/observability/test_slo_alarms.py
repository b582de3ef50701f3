"""The `slo` section and the multiwindow, multi-burn-rate alarms it becomes: burn rates computed from the
window (the SRE workbook's 14.4 and 6 for 30 days), per region a fast and a slow pair for the load
balancer's availability and latency and the gateway's own errors, per GPU pool one for time to first
token; only the pairs' composite alarms page, to the region's alert topic."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.control_plane import gateway_metrics
from components.core.catalog.resource_types import COMPOSITE_ALARM, METRIC_ALARM, SNS_TOPIC
from components.observability.slo import FAST_BURN, SLOW_BURN, lowest_alertable_objective
from fleet.harness import RecordedResource, Rendering
from fleet_agent import fleet_metrics

REGIONS = ("us-east-1", "us-west-2")
POOLS = {"us-east-1": ("llama-8b", "qwen-14b"), "us-west-2": ("llama-8b-west",)}


def test_the_workbooks_burn_rates_for_a_30_day_window_and_computed_for_others() -> None:
    assert (FAST_BURN.burn_rate(30), SLOW_BURN.burn_rate(30)) == (14.4, 6.0)
    assert (FAST_BURN.burn_rate(28), SLOW_BURN.burn_rate(28)) == (13.44, 5.6)
    assert (FAST_BURN.long_label, FAST_BURN.short_label, SLOW_BURN.long_label, SLOW_BURN.short_label) == (
        "1h", "5m", "6h", "30m",
    )  # fmt: skip


def test_tiers_default_to_the_planning_documents_objectives(render) -> None:
    assert render("prod").outputs["budgets"]["slo"]["availabilityPercent"] == 99.99
    dev = render("dev").outputs["budgets"]["slo"]
    assert dev["availabilityPercent"] == 99.5
    assert (dev["latency"], dev["windowDays"]) == ("p95 within 2 s", 30)
    assert dev["burnAlerts"]["fast"] == {
        "windows": ["1h", "5m"],
        "burnRate": 14.4,
        "budgetSpentInLongWindow": "2%",
    }


def test_an_objective_no_burn_alarm_could_reach_is_one_line(config_problems) -> None:
    lowest = lowest_alertable_objective(30)
    assert lowest == 93.06
    assert config_problems("prod", {"slo": {"latency": {"percentile": 90}}}) == [
        f"inference-fleet:slo.latency.percentile: got 90.0; with windowDays 30 the fast burn alarm pages at 14.4x "
        f"the error budget, which below {lowest} needs more than every request to fail: use at least {lowest}, "
        "or a shorter windowDays"
    ]


def test_a_latency_target_at_the_request_timeout_is_refused(config_problems) -> None:
    (problem,) = config_problems("dev", {"slo": {"latency": {"targetSeconds": 600}}})
    assert problem.startswith(
        "inference-fleet:slo.latency.targetSeconds: got 600.0; must be below the gateway"
    )


def test_an_unknown_slo_key_is_refused(config_problems) -> None:
    (problem,) = config_problems("dev", {"slo": {"availability": 99.9}})
    assert problem.startswith("inference-fleet:slo.availability:")


def alarms_by_name(rendering: Rendering) -> dict[str, RecordedResource]:
    return {r.inputs["name"]: r for r in rendering.of_type(METRIC_ALARM) if "name" in r.inputs}


def composites(rendering: Rendering) -> list[RecordedResource]:
    return rendering.of_type(COMPOSITE_ALARM)


def topic_of(rendering: Rendering, region: str) -> str:
    (topic,) = [t for t in rendering.of_type(SNS_TOPIC) if t.name == f"alerts-{region}"]
    return topic.outputs["arn"]


def period(alarm: RecordedResource) -> int:
    periods = {q["metric"]["period"] for q in alarm.inputs["metricQueries"] if "metric" in q}
    (only,) = periods  # every metric of a math alarm has the same period (CloudWatch's rule)
    return only


def test_each_indicator_pages_through_a_fast_and_a_slow_pair_to_its_regions_topic(render) -> None:
    rendering = render("prod")
    windows = alarms_by_name(rendering)
    indicators = {
        region: ["availability", "gateway-errors", "latency", *(f"ttft-{p}" for p in POOLS[region])]
        for region in REGIONS
    }
    assert rendering.outputs["budgets"]["slo"]["burnAlarmPairs"] == {
        region: {key: ["fast", "slow"] for key in keys} for region, keys in indicators.items()
    }
    assert len(composites(rendering)) == sum(2 * len(keys) for keys in indicators.values())
    for composite in composites(rendering):
        region = "us-east-1" if "-use1-" in composite.inputs["alarmName"] else "us-west-2"
        assert composite.inputs["alarmActions"] == [topic_of(rendering, region)]
        assert composite.inputs["okActions"] == [topic_of(rendering, region)]
        long_name, short_name = re.fullmatch(
            r'ALARM\("(.+)"\) AND ALARM\("(.+)"\)', composite.inputs["alarmRule"]
        ).groups()
        long_alarm, short_alarm = windows[long_name], windows[short_name]
        fast = composite.inputs["alarmName"].endswith("-fast-burn")
        burn = FAST_BURN if fast else SLOW_BURN
        assert (period(long_alarm), period(short_alarm)) == (burn.long_seconds, burn.short_seconds)
        for window in (long_alarm, short_alarm):
            assert window.inputs["threshold"] == burn.burn_rate(30)
            assert window.inputs["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
            assert window.inputs["treatMissingData"] == "notBreaching"
            assert "alarmActions" not in window.inputs  # only the pair pages
            assert window.provider == composite.provider  # the same region


def queries(alarm: RecordedResource) -> dict[str, dict[str, Any]]:
    return {q["id"]: q for q in alarm.inputs["metricQueries"]}


def test_availability_counts_the_load_balancers_and_the_gateways_5xx_over_the_gateways_requests(
    render,
) -> None:
    alarm = alarms_by_name(render("prod"))["fleet-prod-use1-slo-availability-5m"]
    q = queries(alarm)
    group = q["requests"]["metric"]["dimensions"]
    assert set(group) == {"LoadBalancer", "TargetGroup"}  # the gateway's group, not the health probes'
    assert (q["requests"]["metric"]["metricName"], q["bad"]["metric"]["metricName"]) == (
        "RequestCount", "HTTPCode_Target_5XX_Count",
    )  # fmt: skip
    assert q["elb"]["metric"]["metricName"] == "HTTPCode_ELB_5XX_Count"
    assert set(q["elb"]["metric"]["dimensions"]) == {"LoadBalancer"}
    # 99.99 %: a budget of 0.0001 of requests; the counts ALB sends only when non-zero are filled with 0.
    assert q["burn"]["expression"] == (
        "IF((FILL(requests, 0) + FILL(elb, 0)) > 0, (FILL(bad, 0) + FILL(elb, 0)) / "
        "(FILL(requests, 0) + FILL(elb, 0)), 0) / 0.0001"
    )
    assert q["burn"]["returnData"] is True


def test_latency_burn_is_the_share_of_requests_slower_than_the_target_by_percentile_rank(render) -> None:
    q = queries(alarms_by_name(render("prod"))["fleet-prod-use1-slo-latency-1h"])
    assert q["good"]["metric"]["metricName"] == "TargetResponseTime"
    assert q["good"]["metric"]["stat"] == "PR(:2)"  # percent of requests answered within 2 s
    assert q["burn"]["expression"] == "(100 - good) / 5"  # p95: 5 % may be slower


def test_time_to_first_token_is_watched_per_pool_and_model_from_the_agents_metrics(render) -> None:
    q = queries(alarms_by_name(render("prod"))["fleet-prod-usw2-slo-ttft-llama-8b-west-30m"])
    metric = q["good"]["metric"]
    assert (metric["namespace"], metric["metricName"], metric["stat"]) == (
        fleet_metrics.NODE_NAMESPACE, fleet_metrics.TIME_TO_FIRST_TOKEN, "PR(:1)",
    )  # fmt: skip
    assert metric["dimensions"] == {
        fleet_metrics.POOL_DIMENSION: "llama-8b-west",
        fleet_metrics.MODEL_DIMENSION: "meta-llama/Llama-3.1-8B-Instruct",
    }


def test_gateway_errors_come_from_litellms_counters(render) -> None:
    q = queries(alarms_by_name(render("prod"))["fleet-prod-use1-slo-gateway-errors-6h"])
    assert q["bad"]["metric"]["metricName"] == gateway_metrics.FAILED_REQUESTS
    assert q["requests"]["metric"]["metricName"] == gateway_metrics.REQUESTS
    assert q["bad"]["metric"]["namespace"] == gateway_metrics.GATEWAY_METRICS_NAMESPACE


@pytest.mark.parametrize("stack", ["dev", "k8s-example"])
def test_every_stack_has_its_alarms_heard(render, stack: str) -> None:
    from fleet.policy_run import evaluate

    rendering = render(stack)
    assert composites(rendering)
    assert [v for v in evaluate(rendering).violations if v.policy == "alarm-has-action"] == []
