"""FailoverDns: the API name clients use, pointed at the healthy region.

With a standby region: a Route53 health check per region on the gateway's readiness path over HTTPS, and
a PRIMARY/SECONDARY failover pair for the API name, each record tied to its region's health check. While
the primary's check passes, Route53 answers with the primary; when it fails, with the standby; when both
fail, with the primary (Route53's fail-open).

The record shape is chosen to meet the RTO. An alias to an ALB costs nothing per query but is answered
with the load balancer's 60 s TTL, so resolvers may hold the dead region for a full minute after the
switch: 10 s x 3 + 60 s = 90 s, past a 60 s RTO. A CNAME to the ALB's DNS name carries our own TTL
(15 s in prod): 10 s x 3 + 15 s = 45 s. The CNAME's target, the ALB name, never changes meaning, so its
own 60 s TTL does not delay the switch. The worst case is computed here from the very values declared.

Without a standby (dev) it is one plain record and no health checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.failover.budget import FailoverBudget, failover_budget
from components.failover.config import DnsConfig, FailoverConfig

HTTPS_PORT = 443


@dataclass(frozen=True)
class RegionEndpoint:
    """One region's gateway as DNS sees it."""

    region: str
    regional_name: str
    alb_dns_name: pulumi.Input[str]
    alb_zone_id: pulumi.Input[str]
    # What Route53 probes over HTTPS to decide whether the region serves.
    health_check_path: str


@dataclass(frozen=True)
class FailoverDnsOutputs:
    api_url: pulumi.Output[str]
    health_check_ids: dict[str, pulumi.Output[str]]
    budget: FailoverBudget | None
    rto_seconds: int

    def exports(self) -> dict[str, Any]:
        failover: dict[str, Any] = {}
        if self.budget is not None:
            failover = {
                "worstCaseSeconds": self.budget.worst_case_seconds,
                "detectionSeconds": self.budget.detection_seconds,
                "dnsTtlSeconds": self.budget.dns_ttl_seconds,
                "rtoSeconds": self.rto_seconds,
            }
        return {"apiUrl": self.api_url, "healthCheckIds": self.health_check_ids, "failover": failover}

    def budgets(self) -> dict[str, Any]:
        if self.budget is None:
            return {}
        return {
            "worstCaseFailoverSeconds": self.budget.worst_case_seconds,
            "failoverRtoSeconds": self.rto_seconds,
        }


@dataclass(frozen=True)
class FailoverDnsArgs:
    domain: str
    api_name: str
    primary: RegionEndpoint
    standby: RegionEndpoint | None
    dns: DnsConfig
    failover: FailoverConfig


class FailoverDns(pulumi.ComponentResource):
    """Route53 health checks and the API record(s). Give it a provider through `opts.providers`."""

    outputs: FailoverDnsOutputs

    def __init__(self, name: str, args: FailoverDnsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inference-fleet:failover_dns:FailoverDns", name, None, opts)
        self._name, self._args = name, args
        zone_id = aws.route53.get_zone_output(
            name=args.domain, private_zone=False, opts=pulumi.InvokeOutputOptions(parent=self)
        ).zone_id
        health_check_ids: dict[str, pulumi.Output[str]] = {}
        budget: FailoverBudget | None = None

        if args.standby is None:
            self._record(f"{name}-api", zone_id, args.primary)
        else:
            fo, dns = args.failover, args.dns
            interval, threshold = fo.health_check_interval_seconds, fo.failure_threshold
            for role, endpoint in (("PRIMARY", args.primary), ("SECONDARY", args.standby)):
                check = aws.route53.HealthCheck(
                    f"{name}-{endpoint.region}",
                    type="HTTPS",
                    fqdn=endpoint.regional_name,
                    port=HTTPS_PORT,
                    resource_path=endpoint.health_check_path,
                    enable_sni=True,
                    request_interval=interval,
                    failure_threshold=threshold,
                    regions=list(fo.checker_regions),
                    tags={"Name": f"{name}-{endpoint.region} gateway readiness"},
                    opts=pulumi.ResourceOptions(parent=self),
                )
                health_check_ids[endpoint.region] = check.id
                self._record(
                    f"{name}-api-{role.lower()}",
                    zone_id,
                    endpoint,
                    failover=role,
                    health_check_id=check.id,
                )
            # Computed from the values just declared: the checks' interval and threshold, the records' shape.
            budget = failover_budget(interval, threshold, dns.record_type, dns.ttl_seconds)

        self.outputs = FailoverDnsOutputs(
            api_url=pulumi.Output.from_input(f"https://{args.api_name}"),
            health_check_ids=health_check_ids,
            budget=budget,
            rto_seconds=args.failover.rto_seconds,
        )
        self.register_outputs(
            {
                "apiUrl": self.outputs.api_url,
                "healthCheckIds": health_check_ids,
                "worstCaseFailoverSeconds": budget.worst_case_seconds if budget else None,
            }
        )

    def _record(
        self,
        resource_name: str,
        zone_id: pulumi.Input[str],
        endpoint: RegionEndpoint,
        failover: str | None = None,
        health_check_id: pulumi.Input[str] | None = None,
    ) -> aws.route53.Record:
        args = self._args
        set_identifier = f"{endpoint.region}-{failover.lower()}" if failover else None
        policies = [aws.route53.RecordFailoverRoutingPolicyArgs(type=failover)] if failover else None
        if args.dns.record_type == "alias":
            return aws.route53.Record(
                resource_name,
                zone_id=zone_id,
                name=args.api_name,
                type="A",
                aliases=[
                    aws.route53.RecordAliasArgs(
                        name=endpoint.alb_dns_name, zone_id=endpoint.alb_zone_id, evaluate_target_health=True
                    )
                ],
                set_identifier=set_identifier,
                failover_routing_policies=policies,
                health_check_id=health_check_id,
                opts=pulumi.ResourceOptions(parent=self),
            )
        return aws.route53.Record(
            resource_name,
            zone_id=zone_id,
            name=args.api_name,
            type="CNAME",
            ttl=args.dns.ttl_seconds,
            records=[endpoint.alb_dns_name],
            set_identifier=set_identifier,
            failover_routing_policies=policies,
            health_check_id=health_check_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
