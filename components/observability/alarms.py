"""The SLO burn-rate alarms: per service level indicator, a fast and a slow pair of windows (slo.py), each
window a metric alarm whose value is the burn rate, each pair a composite alarm (both windows burning)
that notifies the region's alert topic. Only the composites page; the window alarms carry no action.

Indicators, per control-plane region (each region's gateway serves when DNS points at it):
- availability at the public load balancer: server errors (the ALB's own 5xx, and the gateway's) over
  requests to the gateway's target group (the region-health probes' group is left out: Route53's checkers
  would otherwise dominate the count, and a region that cannot serve answers them 503 on purpose);
- gateway errors from LiteLLM's own counters (gateway_metrics.py): requests it failed with a 5xx, which
  include failures the load balancer sees as 200 (an error frame inside a started stream);
- latency at the load balancer: the share of requests slower than the target. CloudWatch states it
  directly as percentile rank: `PR(:t)` of TargetResponseTime is the percentage of requests answered
  within t seconds (CloudWatch User Guide, "Statistics definitions"; PutMetricAlarm accepts PR(n:m) as an
  extended statistic), so slow share = 100 - PR(:t), a good-events ratio over exactly the window. A
  percentile alarm (p95 > 2 s) would say whether the window's p95 was over, not how fast the budget
  burns, and cannot be compared across windows;
- time to first token per GPU pool (and so per model), from the agents' per-request TimeToFirstToken
  values in the same way (fleet_metrics.py: Pool and Model dimensions).

ALB metrics are sent only while requests flow and the 5xx counts only when non-zero (ALB User Guide,
"CloudWatch metrics for your Application Load Balancer"): the error counts are FILLed with 0, a window
without requests is a burn of 0, and a window without data is not breaching. Windows slide: an alarm
evaluates the last `period` seconds each time (PutMetricAlarm EvaluationWindow: sliding by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.control_plane import gateway_metrics
from components.core.context import RegionContext, StackContext
from components.observability.config import SloConfig
from components.observability.slo import BURN_ALERTS, BurnAlert
from fleet_agent import fleet_metrics

ALB_NAMESPACE = "AWS/ApplicationELB"
QueryArgs = aws.cloudwatch.MetricAlarmMetricQueryArgs
MetricArgs = aws.cloudwatch.MetricAlarmMetricQueryMetricArgs


@dataclass(frozen=True)
class Indicator:
    """One service level indicator in one region: what is measured, its budget, and how CloudWatch
    computes its bad share (0-1) over a window."""

    key: str  # part of the alarms' names: availability, latency, gateway-errors, ttft-<pool>
    what: str  # for people: what the objective promises
    budget: float  # the share of events allowed to be bad
    kind: str  # "ratio": bad / total counts; "rank": 100 - percentile rank of good values
    namespace: str
    dimensions: dict[str, pulumi.Input[str]]
    bad_metric: str = ""
    total_metric: str = ""
    # ratio only: a count that is bad but not in total (the ALB's own 5xx, answered without a target).
    extra_bad_metric: str = ""
    extra_bad_dimensions: dict[str, pulumi.Input[str]] | None = None
    value_metric: str = ""  # rank only: the metric whose values are compared with the threshold
    threshold_seconds: float = 0.0

    def queries(self, period: int) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
        """The alarm's metric math: the last query returns the burn rate (bad share / budget)."""
        if self.kind == "rank":
            good = self._stat("good", self.value_metric, f"PR(:{self.threshold_seconds:g})", period)
            return [good, _expression("burn", f"(100 - good) / {100 * self.budget:.10g}", "burn rate")]
        queries = [
            self._stat("bad", self.bad_metric, "Sum", period),
            self._stat("requests", self.total_metric, "Sum", period),
        ]
        bad, total = "FILL(bad, 0)", "FILL(requests, 0)"
        if self.extra_bad_metric:
            queries.append(self._stat("elb", self.extra_bad_metric, "Sum", period, self.extra_bad_dimensions))
            bad, total = f"({bad} + FILL(elb, 0))", f"({total} + FILL(elb, 0))"
        queries.append(
            _expression("burn", f"IF({total} > 0, {bad} / {total}, 0) / {self.budget:.10g}", "burn rate")
        )
        return queries

    def _stat(
        self,
        query_id: str,
        metric: str,
        stat: str,
        period: int,
        dimensions: dict[str, pulumi.Input[str]] | None = None,
    ) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
        return QueryArgs(
            id=query_id,
            metric=MetricArgs(
                namespace=self.namespace,
                metric_name=metric,
                dimensions=dimensions if dimensions is not None else self.dimensions,
                period=period,
                stat=stat,
            ),
        )


def _expression(query_id: str, expression: str, label: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return QueryArgs(id=query_id, expression=expression, label=label, return_data=True)


def region_indicators(
    slo: SloConfig, alb_suffix: pulumi.Input[str], target_group_suffix: pulumi.Input[str]
) -> list[Indicator]:
    """The indicators of one region's gateway: availability, gateway errors, latency."""
    lb = {"LoadBalancer": alb_suffix}
    gateway_group = {**lb, "TargetGroup": target_group_suffix}
    latency = slo.latency
    return [
        Indicator(
            key="availability",
            what=f"{slo.availability_percent}% of requests answered without a server error",
            budget=slo.availability_budget,
            kind="ratio",
            namespace=ALB_NAMESPACE,
            dimensions=gateway_group,
            bad_metric="HTTPCode_Target_5XX_Count",
            total_metric="RequestCount",
            extra_bad_metric="HTTPCode_ELB_5XX_Count",
            extra_bad_dimensions=lb,
        ),
        Indicator(
            key="gateway-errors",
            what=f"{slo.availability_percent}% of requests not failed by the gateway (LiteLLM's counters)",
            budget=slo.availability_budget,
            kind="ratio",
            namespace=gateway_metrics.GATEWAY_METRICS_NAMESPACE,
            dimensions={gateway_metrics.SERVICE_DIMENSION: gateway_metrics.SERVICE},
            bad_metric=gateway_metrics.FAILED_REQUESTS,
            total_metric=gateway_metrics.REQUESTS,
        ),
        Indicator(
            key="latency",
            what=f"{latency.percentile}% of requests answered within {latency.target_seconds:g} s",
            budget=slo.latency_budget,
            kind="rank",
            namespace=ALB_NAMESPACE,
            dimensions=gateway_group,
            value_metric="TargetResponseTime",
            threshold_seconds=latency.target_seconds,
        ),
    ]


def pool_indicator(slo: SloConfig, pool: str, model: str) -> Indicator:
    """Time to first token on one GPU pool's nodes (the model it serves), from the agents' metrics."""
    return Indicator(
        key=f"ttft-{pool}",
        what=(
            f"{slo.latency.percentile}% of {model} requests on pool {pool} start within "
            f"{slo.time_to_first_token_seconds:g} s"
        ),
        budget=slo.latency_budget,
        kind="rank",
        namespace=fleet_metrics.NODE_NAMESPACE,
        dimensions={fleet_metrics.POOL_DIMENSION: pool, fleet_metrics.MODEL_DIMENSION: model},
        value_metric=fleet_metrics.TIME_TO_FIRST_TOKEN,
        threshold_seconds=slo.time_to_first_token_seconds,
    )


@dataclass(frozen=True)
class BurnAlarmPair:
    """A declared pair: its composite (the page) and its two window alarms."""

    indicator: str
    alert: str
    burn_rate: float
    composite: aws.cloudwatch.CompositeAlarm
    windows: tuple[aws.cloudwatch.MetricAlarm, aws.cloudwatch.MetricAlarm]


def declare_burn_alarms(
    name: str,
    indicator: Indicator,
    slo: SloConfig,
    stack: StackContext,
    region: RegionContext,
    topic_arn: pulumi.Input[str],
    parent: pulumi.Resource,
    alerts: Sequence[BurnAlert] = BURN_ALERTS,
) -> list[BurnAlarmPair]:
    """The fast and slow pairs of one indicator in one region."""
    pairs = []
    for alert in alerts:
        burn = alert.burn_rate(slo.window_days)
        share = f"{alert.budget_share:.0%} of the {slo.window_days}-day error budget"
        windows = tuple(
            aws.cloudwatch.MetricAlarm(
                f"{name}-{indicator.key}-{label}",
                name=stack.physical_name(f"slo-{indicator.key}-{label}", region),
                alarm_description=(
                    f"{indicator.what}: burning the error budget at {burn}x or faster over {label} "
                    f"(one window of the {alert.name} burn pair; the pair's composite alarm pages)."
                ),
                metric_queries=indicator.queries(seconds),
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=burn,
                evaluation_periods=1,
                treat_missing_data="notBreaching",
                opts=region.options(parent),
            )
            for label, seconds in (
                (alert.long_label, alert.long_seconds),
                (alert.short_label, alert.short_seconds),
            )
        )
        long_alarm, short_alarm = windows
        composite = aws.cloudwatch.CompositeAlarm(
            f"{name}-{indicator.key}-{alert.name}-burn",
            alarm_name=stack.physical_name(f"slo-{indicator.key}-{alert.name}-burn", region),
            alarm_description=(
                f"SLO {indicator.what} ({region.region}): at this rate {share} is spent in "
                f"{alert.long_label} ({burn}x the sustainable rate over {alert.long_label} and "
                f"{alert.short_label})."
            ),
            alarm_rule=pulumi.Output.format(
                'ALARM("{0}") AND ALARM("{1}")', long_alarm.name, short_alarm.name
            ),
            alarm_actions=[topic_arn],
            ok_actions=[topic_arn],
            opts=region.options(parent),
        )
        pairs.append(BurnAlarmPair(indicator.key, alert.name, burn, composite, (long_alarm, short_alarm)))
    return pairs
