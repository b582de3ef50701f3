"""Observability: the stack's SLO burn-rate alarms per region, its CloudWatch dashboard, its AWS Budgets
budget, the collector security group for Prometheus, and the rendered Grafana dashboard and scrape config.

It declares nothing the others watch themselves (each capability keeps its own health alarms; the
controller owns the ReadyNodes-below-minimum alarm per pool, which the dashboard shows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.core.context import StackContext
from components.core.security import SecurityGroups
from components.observability import grafana, prometheus
from components.observability.alarms import (
    BurnAlarmPair,
    declare_burn_alarms,
    pool_indicator,
    region_indicators,
)
from components.observability.budget import declare_budget
from components.observability.config import MonitoringConfig, SloConfig
from components.observability.cost import StackCost
from components.observability.dashboard import PoolView, RegionView, dashboard_body

HTTPS_PORT = 443


@dataclass(frozen=True)
class ObservabilityArgs:
    stack: StackContext
    slo: SloConfig
    monitoring: MonitoringConfig
    # Each control-plane region's alert topic, primary first.
    topic_arns: Mapping[str, pulumi.Input[str]]
    regions: Sequence[RegionView]
    pools: Sequence[PoolView]
    # Per region with pools: its VPC and the pools' node security groups (the collector's way in).
    vpc_ids: Mapping[str, pulumi.Input[str]]
    node_security_group_ids: Mapping[str, pulumi.Input[str]]
    agent_port: int
    health_check_ids: Mapping[str, pulumi.Input[str]]
    estimate: StackCost
    budget_usd: float


class Observability(pulumi.ComponentResource):
    burn_alarms: list[tuple[str, BurnAlarmPair]]
    dashboard_name: str
    grafana_dashboard: pulumi.Output[str]
    scrape_config: str
    collector_security_groups: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("inference-fleet:observability:Observability", name, None, opts)
        stack, slo = args.stack, args.slo
        primary = args.regions[0].region
        self.burn_alarms = []
        for view in args.regions:
            region = stack.region(view.region)
            indicators = region_indicators(slo, view.alb_suffix, view.target_group_suffix)
            indicators += [
                pool_indicator(slo, p.name, p.model) for p in args.pools if p.region == view.region
            ]
            for indicator in indicators:
                pairs = declare_burn_alarms(
                    f"{name}-{view.region}", indicator, slo, stack, region, args.topic_arns[view.region], self
                )
                self.burn_alarms += [(view.region, pair) for pair in pairs]

        self.dashboard_name = stack.physical_name("fleet")
        body = dashboard_body(
            stack=stack.stack,
            slo=slo,
            regions=args.regions,
            pools=args.pools,
            alarm_arns=[pair.composite.arn for _, pair in self.burn_alarms],
            health_check_ids=args.health_check_ids,
            estimate=args.estimate.figures(),
            budget_usd=args.budget_usd,
        )
        aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=self.dashboard_name,
            dashboard_body=pulumi.Output.json_dumps(body),
            opts=stack.region(primary).options(self),
        )
        declare_budget(
            f"{name}-budget", stack, stack.region(primary), args.budget_usd, args.topic_arns[primary], self
        )
        self.collector_security_groups = self._collectors(name, args)
        self.grafana_dashboard = grafana.dashboard(stack.stack, slo, args.regions, args.pools)
        self.scrape_config = prometheus.scrape_config_yaml(
            stack.stack, args.pools, args.agent_port, args.monitoring.remote_write_url
        )
        self.register_outputs({"dashboardName": self.dashboard_name})

    def _collectors(self, name: str, args: ObservabilityArgs) -> dict[str, pulumi.Output[str]]:
        """Per region with pools: a group for the team's metrics collector, which the nodes admit on the
        agent's port; it may reach the nodes there and HTTPS (EC2 discovery, the remote-write endpoint)."""
        groups: dict[str, pulumi.Output[str]] = {}
        for region_name, vpc_id in args.vpc_ids.items():
            region = args.stack.region(region_name)
            rules = SecurityGroups(f"{name}-{region_name}", vpc_id, region.options(self))
            collector = rules.group(
                "metrics-collector", "Prometheus collector: scrapes the GPU nodes' agents, remote-writes out"
            )
            rules.allow(
                "out",
                "collector-https",
                collector.id,
                HTTPS_PORT,
                "EC2 discovery, remote write",
                cidr="0.0.0.0/0",
            )
            for pool, node_group in args.node_security_group_ids.items():
                if next(p.region for p in args.pools if p.name == pool) != region_name:
                    continue
                rules.allow(
                    "out",
                    f"collector-to-{pool}",
                    collector.id,
                    args.agent_port,
                    f"scrape pool {pool}'s agents",
                    peer=node_group,
                )
                rules.allow(
                    "in",
                    f"{pool}-from-collector",
                    node_group,
                    args.agent_port,
                    "the metrics collector scrapes /metrics",
                    peer=collector.id,
                )
            groups[region_name] = collector.id
        return groups
