"""A Grafana dashboard (JSON model, schemaVersion 39) of the stack, for teams on Amazon Managed Grafana.

Two data sources, chosen on import (dashboard variables): Prometheus (Amazon Managed Prometheus, fed by
the scrape config in prometheus.py) for the agents' own metrics, named as the agent exposes them on
/metrics; CloudWatch for what lives only there: the public load balancers (latency and errors as clients
see them) and the gateway's counters, which its metrics sidecar writes as EMF (gateway_metrics.py; the
Prometheus histograms of LiteLLM do not survive that path, so gateway latency comes from the ALB).
Published as the stack output `grafanaDashboard` (README: Dashboards): the load balancers' dimensions are
known once the stack is up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from components.control_plane import gateway_metrics
from components.observability.config import SloConfig
from components.observability.dashboard import ALB, PoolView, RegionView

SCHEMA_VERSION = 39
PROMETHEUS = {"type": "prometheus", "uid": "${prometheus}"}
CLOUDWATCH = {"type": "cloudwatch", "uid": "${cloudwatch}"}
PANEL_WIDTH, PANEL_HEIGHT = 12, 8


def _prometheus_target(ref: str, expr: str, legend: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend}


def _cloudwatch_target(
    ref: str, region: str, namespace: str, metric: str, dimensions: dict[str, Any], statistic: str, label: str
) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": CLOUDWATCH,
        "queryMode": "Metrics",
        "region": region,
        "namespace": namespace,
        "metricName": metric,
        "dimensions": dimensions,
        "statistic": statistic,
        "period": "60",
        "matchExact": True,
        "label": label,
    }


class _Panels:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y = 0, self.y + PANEL_HEIGHT
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def timeseries(
        self, title: str, unit: str, targets: list[dict[str, Any]], datasource: dict[str, str]
    ) -> None:
        self.panels.append(
            {
                "type": "timeseries",
                "id": self._id(),
                "title": title,
                "datasource": datasource,
                "gridPos": {"h": PANEL_HEIGHT, "w": PANEL_WIDTH, "x": self.x, "y": self.y},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": targets,
            }
        )
        self.x += PANEL_WIDTH
        if self.x >= 24:
            self.x, self.y = 0, self.y + PANEL_HEIGHT

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def dashboard(
    stack: str, slo: SloConfig, regions: Sequence[RegionView], pools: Sequence[PoolView]
) -> pulumi.Output[str]:
    """The dashboard as JSON text (an Output: the load balancers' dimensions are the cloud's)."""
    p = _Panels()
    quantile = slo.latency.percentile / 100
    gw_ns, service = (
        gateway_metrics.GATEWAY_METRICS_NAMESPACE,
        {gateway_metrics.SERVICE_DIMENSION: gateway_metrics.SERVICE},
    )
    p.row("Traffic and errors (CloudWatch: load balancers, gateway)")
    for v in regions:
        group = {"LoadBalancer": v.alb_suffix, "TargetGroup": v.target_group_suffix}
        p.timeseries(
            f"Requests and server errors a minute: {v.region}",
            "short",
            [
                _cloudwatch_target("A", v.region, ALB, "RequestCount", group, "Sum", "requests"),
                _cloudwatch_target(
                    "B", v.region, ALB, "HTTPCode_Target_5XX_Count", group, "Sum", "gateway 5xx"
                ),
                _cloudwatch_target(
                    "C",
                    v.region,
                    ALB,
                    "HTTPCode_ELB_5XX_Count",
                    {"LoadBalancer": v.alb_suffix},
                    "Sum",
                    "load balancer 5xx",
                ),
                _cloudwatch_target(
                    "D",
                    v.region,
                    gw_ns,
                    gateway_metrics.FAILED_REQUESTS,
                    service,
                    "Sum",
                    "failed by the gateway",
                ),
                _cloudwatch_target(
                    "E", v.region, gw_ns, gateway_metrics.FALLBACKS_SUCCEEDED, service, "Sum", "fallbacks"
                ),
            ],
            CLOUDWATCH,
        )
        p.timeseries(
            f"Gateway response time: {v.region} (SLO p{slo.latency.percentile:g} within "
            f"{slo.latency.target_seconds:g} s)",
            "s",
            [
                _cloudwatch_target(ref, v.region, ALB, "TargetResponseTime", group, stat, stat)
                for ref, stat in (("A", "p50"), ("B", f"p{slo.latency.percentile:g}"), ("C", "p99"))
            ],
            CLOUDWATCH,
        )
    p.row("GPU pools (Prometheus: the agents' /metrics)")
    p.timeseries(
        f"Time to first byte by pool, p{slo.latency.percentile:g} "
        f"(SLO: {slo.time_to_first_token_seconds:g} s)",
        "s",
        [
            _prometheus_target(
                "A",
                f"histogram_quantile({quantile:g}, sum by (le, pool) "
                "(rate(fleet_agent_time_to_first_byte_seconds_bucket[5m])))",
                "{{pool}}",
            )
        ],
        PROMETHEUS,
    )
    p.timeseries(
        "Request duration by pool, p50 and p99",
        "s",
        [
            _prometheus_target(
                ref,
                f"histogram_quantile({q}, sum by (le, pool) "
                "(rate(fleet_agent_request_duration_seconds_bucket[5m])))",
                f"{{{{pool}}}} p{q[2:]}",
            )
            for ref, q in (("A", "0.50"), ("B", "0.99"))
        ],
        PROMETHEUS,
    )
    p.timeseries(
        "Requests in flight and ready nodes by pool",
        "short",
        [
            _prometheus_target("A", "sum by (pool) (fleet_agent_requests_in_flight)", "{{pool}} in flight"),
            _prometheus_target("B", "sum by (pool) (fleet_agent_ready)", "{{pool}} ready nodes"),
        ],
        PROMETHEUS,
    )
    p.timeseries(
        "GPU utilisation by pool",
        "percentunit",
        [_prometheus_target("A", "avg by (pool) (fleet_agent_gpu_utilization_ratio)", "{{pool}}")],
        PROMETHEUS,
    )
    p.timeseries(
        "Agent errors and refusals by pool",
        "reqps",
        [
            _prometheus_target(
                "A", 'sum by (pool) (rate(fleet_agent_requests_total{code=~"5.."}[5m]))', "{{pool}} 5xx"
            ),
            _prometheus_target(
                "B", "sum by (pool) (rate(fleet_agent_requests_rejected_total[5m]))", "{{pool}} refused"
            ),
        ],
        PROMETHEUS,
    )
    p.row("Cost (CloudWatch: what the gateway recorded)")
    for v in regions:
        p.timeseries(
            f"Spend and tokens a minute: {v.region} (own pools at cost per token, fallbacks at list price)",
            "short",
            [
                _cloudwatch_target("A", v.region, gw_ns, gateway_metrics.SPEND, service, "Sum", "USD"),
                _cloudwatch_target("B", v.region, gw_ns, gateway_metrics.TOKENS, service, "Sum", "tokens"),
            ],
            CLOUDWATCH,
        )
    model = {
        "uid": f"fleet-{stack}"[:40],
        "title": f"inference-fleet {stack}",
        "tags": ["inference-fleet", stack],
        "timezone": "utc",
        "editable": True,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "prometheus", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
                {"name": "cloudwatch", "label": "CloudWatch", "type": "datasource", "query": "cloudwatch"},
            ]
        },
        "panels": p.panels,
    }
    return pulumi.Output.json_dumps(model, indent=2, sort_keys=True)
