"""The failover capability: the API name clients use, health-checked per region, and its DNS budget.

Published: `DnsConfig`, `FailoverConfig`, `FailoverDnsOutputs`, `declare`.
"""

from __future__ import annotations

import pulumi

from components.control_plane import ControlPlaneOutputs
from components.core.context import StackContext
from components.failover.budget import FailoverBudget, failover_budget
from components.failover.config import DnsConfig, FailoverConfig
from components.failover.dns import FailoverDns, FailoverDnsArgs, FailoverDnsOutputs, RegionEndpoint

__all__ = [
    "DnsConfig",
    "FailoverBudget",
    "FailoverConfig",
    "FailoverDnsOutputs",
    "declare",
    "failover_budget",
]


def declare(
    stack: StackContext, domain: str, dns: DnsConfig, failover: FailoverConfig, planes: ControlPlaneOutputs
) -> FailoverDnsOutputs:
    """The API record (`dns`): a plain one for one region, a health-checked failover pair for two."""
    endpoints = [
        RegionEndpoint(cp.region, cp.regional_name, cp.alb_dns_name, cp.alb_zone_id, cp.health_check_path)
        for cp in planes.regions.values()
    ]
    primary = endpoints[0]
    return FailoverDns(
        "dns",
        FailoverDnsArgs(
            domain=domain,
            api_name=f"api.{domain}",
            primary=primary,
            standby=endpoints[1] if len(endpoints) > 1 else None,
            dns=dns,
            failover=failover,
        ),
        opts=pulumi.ResourceOptions(providers=[stack.region(primary.region).provider]),
    ).outputs
