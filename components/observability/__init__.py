"""The observability capability: the promises the stack makes and watches (SLO burn-rate alarms), what it
shows (a CloudWatch dashboard; a Grafana dashboard and a Prometheus scrape config for teams on Amazon
Managed Prometheus and Grafana) and what it costs (the plan's estimate, an AWS Budgets budget).

Published: `SloConfig`, `CostBudgetConfig`, `MonitoringConfig`, `ObservabilityOutputs`, `stack_cost`,
`declare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.alerts import AlertsOutputs
from components.control_plane import ControlPlaneOutputs
from components.core.context import StackContext
from components.failover import FailoverOutputs
from components.gpu_pools import AGENT_PORT, GpuPoolConfig, GpuPoolsOutputs, token_cost
from components.network import NetworkOutputs
from components.observability.config import CostBudgetConfig, MonitoringConfig, SloConfig
from components.observability.cost import StackCost, monthly_limit, stack_cost
from components.observability.dashboard import PoolView, RegionView
from components.observability.observability import Observability, ObservabilityArgs
from components.observability.slo import BURN_ALERTS

__all__ = [
    "CostBudgetConfig",
    "MonitoringConfig",
    "ObservabilityOutputs",
    "SloConfig",
    "declare",
    "stack_cost",
]


@dataclass(frozen=True)
class ObservabilityOutputs:
    component: Observability
    slo: SloConfig
    estimate: StackCost
    budget_usd: float
    pools: tuple[GpuPoolConfig, ...]
    primary_region: str

    def exports(self) -> dict[str, Any]:
        c = self.component
        return {
            "dashboardUrl": (
                f"https://{self.primary_region}.console.aws.amazon.com/cloudwatch/home?region="
                f"{self.primary_region}#dashboards/dashboard/{c.dashboard_name}"
            ),
            "grafanaDashboard": c.grafana_dashboard,
            "prometheusScrapeConfig": c.scrape_config,
            "metricsCollectorSecurityGroups": c.collector_security_groups,
        }

    def budgets(self) -> dict[str, Any]:
        slo = self.slo
        pairs: dict[str, dict[str, list[str]]] = {}
        for region, pair in self.component.burn_alarms:
            pairs.setdefault(region, {}).setdefault(pair.indicator, []).append(pair.alert)
        # A pool the catalog cannot price is named: LiteLLM records its requests at $0.
        unpriced = {"notPriced": "its types or region have no price in the catalog: the gateway records $0"}
        token_costs = {p.name: cost.figures() if (cost := token_cost(p)) else unpriced for p in self.pools}
        return {
            "slo": {
                "availabilityPercent": slo.availability_percent,
                "latency": f"p{slo.latency.percentile:g} within {slo.latency.target_seconds:g} s",
                "timeToFirstToken": (
                    f"p{slo.latency.percentile:g} within {slo.time_to_first_token_seconds:g} s"
                ),
                "windowDays": slo.window_days,
                "burnAlerts": {
                    a.name: {
                        "windows": [a.long_label, a.short_label],
                        "burnRate": a.burn_rate(slo.window_days),
                        "budgetSpentInLongWindow": f"{a.budget_share:.0%}",
                    }
                    for a in BURN_ALERTS
                },
                "burnAlarmPairs": pairs,
            },
            "stackCost": self.estimate.figures(),
            "costBudgetUsdPerMonth": self.budget_usd,
            **({"tokenCost": token_costs} if token_costs else {}),
        }


def declare(
    stack: StackContext,
    *,
    slo: SloConfig,
    cost_budget: CostBudgetConfig,
    monitoring: MonitoringConfig,
    estimate: StackCost,
    pools: tuple[GpuPoolConfig, ...],
    topics: AlertsOutputs,
    networks: NetworkOutputs,
    planes: ControlPlaneOutputs,
    built_pools: GpuPoolsOutputs,
    resilience: FailoverOutputs,
) -> ObservabilityOutputs:
    """SLO alarms in every control-plane region, the dashboard and the budget (`observability`)."""
    regions = [
        RegionView(r, cp.alb_arn_suffix, cp.gateway_target_group_arn_suffix, cp.cluster_name, cp.service_name)
        for r, cp in planes.regions.items()
    ]
    views = [PoolView(p.name, p.region, p.model) for p in pools]
    budget_usd = cost_budget.monthly_usd or monthly_limit(estimate)
    pool_regions = {p.region for p in pools}
    component = Observability(
        "observability",
        ObservabilityArgs(
            stack=stack,
            slo=slo,
            monitoring=monitoring,
            topic_arns=topics.topic_arns,
            regions=regions,
            pools=views,
            vpc_ids={r: net.vpc_id for r, net in networks.regions.items() if r in pool_regions},
            node_security_group_ids={n: p.node_security_group_id for n, p in built_pools.pools.items()},
            agent_port=AGENT_PORT,
            health_check_ids=resilience.health_check_ids,
            estimate=estimate,
            budget_usd=budget_usd,
        ),
    )
    return ObservabilityOutputs(component, slo, estimate, budget_usd, pools, regions[0].region)
