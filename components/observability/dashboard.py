"""The stack's CloudWatch dashboard: one page per stack, declared in the primary region, its widgets
reading each region's metrics (a widget names its region). Rows, top to bottom: traffic, latency, errors
and the SLO alarms, capacity and scaling, cost, failover state.

Sources: the public ALBs (AWS/ApplicationELB, the gateway's target group), the gateway's own counters
(gateway_metrics.py), the agents' per-node metrics and the controller's ReadyNodes (fleet_metrics.py), the
gateway service's tasks (ECS Container Insights), the estimated charges (AWS/Billing, published in
us-east-1 only and once billing alerts are enabled for the account), and the DNS health checks
(AWS/Route53, us-east-1 only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.control_plane import gateway_metrics
from components.observability.config import SloConfig
from fleet_agent import fleet_metrics

WIDTH = 24  # the dashboard grid's columns
HEIGHT = 6
# Billing and Route53 publish their metrics in us-east-1 only.
GLOBAL_METRICS_REGION = "us-east-1"
ALB = "AWS/ApplicationELB"


@dataclass(frozen=True)
class RegionView:
    """What the dashboard shows of one control-plane region."""

    region: str
    alb_suffix: pulumi.Input[str]
    target_group_suffix: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]


@dataclass(frozen=True)
class PoolView:
    name: str
    region: str
    model: str


@dataclass
class _Grid:
    widgets: list[dict[str, Any]]
    y: int = 0

    def row(self, title: str, widgets: Sequence[dict[str, Any]]) -> None:
        self.widgets.append(
            {
                "type": "text",
                "x": 0,
                "y": self.y,
                "width": WIDTH,
                "height": 1,
                "properties": {"markdown": f"## {title}"},
            }
        )
        self.y += 1
        width = max(WIDTH // max(len(widgets), 1), 6)
        x = 0
        for widget in widgets:
            if x + width > WIDTH:
                x, self.y = 0, self.y + HEIGHT
            self.widgets.append({**widget, "x": x, "y": self.y, "width": width, "height": HEIGHT})
            x += width
        self.y += HEIGHT


def _metric(
    title: str, region: str, metrics: list[list[Any]], stat: str = "Sum", **extra: Any
) -> dict[str, Any]:
    return {
        "type": "metric",
        "properties": {
            "title": title,
            "region": region,
            "metrics": metrics,
            "stat": stat,
            "period": 60,
            "view": "timeSeries",
            **extra,
        },
    }


def dashboard_body(
    *,
    stack: str,
    slo: SloConfig,
    regions: Sequence[RegionView],
    pools: Sequence[PoolView],
    alarm_arns: Sequence[pulumi.Input[str]],
    health_check_ids: Mapping[str, pulumi.Input[str]],
    estimate: Mapping[str, Any],
    budget_usd: float,
) -> dict[str, Any]:
    """The dashboard's body (CloudWatch's dashboard body structure), Outputs where resources are named."""
    grid = _Grid([])
    target = slo.latency.target_seconds
    grid.row(
        "Traffic",
        [
            _metric(
                f"Requests a minute: {v.region}",
                v.region,
                [
                    [
                        ALB,
                        "RequestCount",
                        "LoadBalancer",
                        v.alb_suffix,
                        "TargetGroup",
                        v.target_group_suffix,
                        {"label": "at the load balancer"},
                    ],
                    [
                        gateway_metrics.GATEWAY_METRICS_NAMESPACE,
                        gateway_metrics.REQUESTS,
                        gateway_metrics.SERVICE_DIMENSION,
                        gateway_metrics.SERVICE,
                        {"label": "at the gateway"},
                    ],
                    [
                        gateway_metrics.GATEWAY_METRICS_NAMESPACE,
                        gateway_metrics.FALLBACKS_SUCCEEDED,
                        gateway_metrics.SERVICE_DIMENSION,
                        gateway_metrics.SERVICE,
                        {"label": "fallbacks"},
                    ],
                ],
            )
            for v in regions
        ],
    )
    grid.row(
        "Latency",
        [
            _metric(
                f"Gateway response time: {v.region} (SLO: p{slo.latency.percentile:g} within {target:g} s)",
                v.region,
                [
                    [
                        ALB,
                        "TargetResponseTime",
                        "LoadBalancer",
                        v.alb_suffix,
                        "TargetGroup",
                        v.target_group_suffix,
                        {"stat": stat, "label": stat},
                    ]
                    for stat in ("p50", f"p{slo.latency.percentile:g}", "p99")
                ],
                stat="Average",
                annotations={"horizontal": [{"label": "target", "value": target}]},
            )
            for v in regions
        ]
        + [
            _metric(
                f"Time to first token by pool, p{slo.latency.percentile:g}: {region}",
                region,
                [
                    [
                        fleet_metrics.NODE_NAMESPACE,
                        fleet_metrics.TIME_TO_FIRST_TOKEN,
                        fleet_metrics.POOL_DIMENSION,
                        p.name,
                        fleet_metrics.MODEL_DIMENSION,
                        p.model,
                        {"label": p.name},
                    ]
                    for p in pools
                    if p.region == region
                ],
                stat=f"p{slo.latency.percentile:g}",
                annotations={"horizontal": [{"label": "target", "value": slo.time_to_first_token_seconds}]},
            )
            for region in _pool_regions(pools)
        ],
    )
    grid.row(
        "Errors and SLO burn",
        [
            _metric(
                f"Server errors a minute: {v.region}",
                v.region,
                [
                    [
                        ALB,
                        "HTTPCode_ELB_5XX_Count",
                        "LoadBalancer",
                        v.alb_suffix,
                        {"label": "load balancer 5xx"},
                    ],
                    [
                        ALB,
                        "HTTPCode_Target_5XX_Count",
                        "LoadBalancer",
                        v.alb_suffix,
                        "TargetGroup",
                        v.target_group_suffix,
                        {"label": "gateway 5xx"},
                    ],
                    [
                        gateway_metrics.GATEWAY_METRICS_NAMESPACE,
                        gateway_metrics.FAILED_REQUESTS,
                        gateway_metrics.SERVICE_DIMENSION,
                        gateway_metrics.SERVICE,
                        {"label": "failed by the gateway"},
                    ],
                ],
            )
            for v in regions
        ]
        + [
            {
                "type": "alarm",
                "properties": {
                    "title": "SLO burn-rate alarms (each pages when both windows burn)",
                    "alarms": list(alarm_arns),
                },
            }
        ],
    )
    capacity: list[dict[str, Any]] = []
    for region in _pool_regions(pools):
        here = [p for p in pools if p.region == region]
        capacity += [
            _metric(
                f"Ready nodes by pool: {region}",
                region,
                [
                    [
                        fleet_metrics.CONTROLLER_NAMESPACE,
                        fleet_metrics.READY_NODES,
                        fleet_metrics.POOL_DIMENSION,
                        p.name,
                        {"label": p.name},
                    ]
                    for p in here
                ],
                stat="Minimum",
            ),
            _metric(
                f"Load per node (in flight + waiting): {region}",
                region,
                [
                    [
                        fleet_metrics.NODE_NAMESPACE,
                        fleet_metrics.LOAD,
                        fleet_metrics.POOL_DIMENSION,
                        p.name,
                        fleet_metrics.MODEL_DIMENSION,
                        p.model,
                        {"label": p.name},
                    ]
                    for p in here
                ],
                stat="Average",
            ),
            _metric(
                f"GPU utilisation and generated tokens/s: {region}",
                region,
                [
                    [
                        fleet_metrics.NODE_NAMESPACE,
                        metric,
                        fleet_metrics.POOL_DIMENSION,
                        p.name,
                        fleet_metrics.MODEL_DIMENSION,
                        p.model,
                        {"label": f"{p.name} {label}"},
                    ]
                    for p in here
                    for metric, label in (
                        (fleet_metrics.GPU_UTILIZATION, "GPU %"),
                        (fleet_metrics.TOKENS_PER_SECOND, "tokens/s"),
                    )
                ],
                stat="Average",
            ),
        ]
    capacity += [
        _metric(
            f"Gateway tasks: {v.region}",
            v.region,
            [
                [
                    "ECS/ContainerInsights",
                    metric,
                    "ClusterName",
                    v.cluster_name,
                    "ServiceName",
                    v.service_name,
                    {"label": metric},
                ]
                for metric in ("RunningTaskCount", "DesiredTaskCount")
            ],
            stat="Average",
        )
        for v in regions
    ]
    grid.row("Capacity and scaling", capacity)
    at_min, at_max = estimate.get("usdPerMonthAtMin"), estimate.get("usdPerMonthAtMax")
    grid.row(
        "Cost",
        [
            _metric(
                "Estimated charges this month (account, USD)",
                GLOBAL_METRICS_REGION,
                [["AWS/Billing", "EstimatedCharges", "Currency", "USD", {"label": "estimated charges"}]],
                stat="Maximum",
                period=21600,
                annotations={"horizontal": [{"label": "stack budget", "value": budget_usd}]},
            ),
            _metric(
                "Spend the gateway recorded (USD a minute: own pools at cost per token, fallbacks at list)",
                regions[0].region,
                [
                    [
                        gateway_metrics.GATEWAY_METRICS_NAMESPACE,
                        gateway_metrics.SPEND,
                        gateway_metrics.SERVICE_DIMENSION,
                        gateway_metrics.SERVICE,
                        {"label": "spend", "region": v.region},
                    ]
                    for v in regions
                ],
            ),
            {
                "type": "text",
                "properties": {
                    "markdown": (
                        f"**Plan estimate for {stack}** (budgets.stackCost): {at_min} USD a month at min, "
                        f"{at_max} at full scale. AWS Budgets limit: {budget_usd:g} USD (alerts at 80% and "
                        "100% to the alert topic). Usage-priced terms are not in the estimate."
                    )
                },
            },
        ],
    )
    grid.row(
        "Failover",
        [
            _metric(
                "Region health as Route53 sees it (1 healthy, 0 not)",
                GLOBAL_METRICS_REGION,
                [
                    ["AWS/Route53", "HealthCheckStatus", "HealthCheckId", check, {"label": region}]
                    for region, check in health_check_ids.items()
                ],
                stat="Minimum",
            )
        ]
        if health_check_ids
        else [{"type": "text", "properties": {"markdown": "One region: no DNS failover pair."}}],
    )
    return {"start": "-PT6H", "periodOverride": "inherit", "widgets": grid.widgets}


def _pool_regions(pools: Sequence[PoolView]) -> list[str]:
    return list(dict.fromkeys(p.region for p in pools))
