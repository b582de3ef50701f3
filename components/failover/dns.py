"""FailoverDns: the API name clients use, pointed at the healthy region.

With a standby region: a Route53 health check per region on the region's "can serve" path over HTTPS
(a real completion through the region's own gateway, its keys checked against the region's own reader;
never the global writer, so losing it never fails both regions), and a PRIMARY/SECONDARY failover pair
for the API name, each record tied to its
region's health check. While the primary's check passes, Route53 answers with the primary; when it
fails, with the standby; when both fail, with the primary (Route53's fail-open).

The checks run from Route53 checker regions outside both control-plane regions (config.py's rule): a
region's own checkers could keep a primary cut off from the rest of the internet healthy, since Route53
counts an endpoint healthy while more than 18% of its checkers say so.

The record shape is chosen to meet the RTO. An alias to an ALB costs nothing per query but is answered
with the load balancer's 60 s TTL. A CNAME to the ALB's DNS name carries our own TTL; its target, the ALB
name, never changes meaning, so its own 60 s TTL does not delay the switch. The gateway-level failover
budget (budget.py) is computed here from the very values declared.

The status record: `_status.<primary region>.api.<domain>` TXT answers "healthy" while the primary's
check passes and "failing" while it fails (a failover pair on that check and on its inverse). The
standby's prober reads it through DNS: Route53's verdict from its checkers in several regions, without
calling Route53's API (served from us-east-1, which may be the region that is lost).

DNS follows the writer. The PRIMARY API record's health check is a calculated one: the primary can serve
*and* the database writer is not the standby's (a CloudWatch-alarm check on the prober's WriterInStandby
alarm, in the standby region). After a failover the record stays unhealthy when the primary's gateways
come back, so clients are not sent to a region whose every write would cross to the standby (over the
very path that may have broken); a planned switchover moves the traffic with the writer. Failback stays a
person's lossless switchover (promotion.failbackCommand), and DNS returns with it. The status record keeps
the primary's own check: the prober's witness is whether the primary can serve, not where the writer is.

Without a standby (dev) it is one plain record and no health checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.failover.budget import STATUS_RECORD_TTL_SECONDS, Budget
from components.failover.config import DnsConfig, FailoverConfig, gateway_failure
from functions.failover_prober.settings import STATUS_FAILING, STATUS_HEALTHY

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
    # DNS failover after a gateway-level failure (None without a standby).
    budget: Budget | None
    # The name the prober resolves for Route53's view of the primary (None without a standby).
    status_record: str | None


@dataclass(frozen=True)
class WriterAlarm:
    """The alarm in ALARM while the database writer is the standby's (components/failover/prober.py)."""

    name: pulumi.Input[str]
    region: str


@dataclass(frozen=True)
class FailoverDnsArgs:
    domain: str
    api_name: str
    primary: RegionEndpoint
    standby: RegionEndpoint | None
    dns: DnsConfig
    failover: FailoverConfig
    # Where Route53 checks from: outside both control-plane regions.
    checker_regions: list[str]
    # With a standby: the PRIMARY record follows the writer (None: it follows the primary's check alone).
    writer_alarm: WriterAlarm | None = None


def status_record_name(primary: RegionEndpoint) -> str:
    """The TXT name that answers with Route53's verdict on the primary (the prober resolves it)."""
    return f"_status.{primary.regional_name}"


class FailoverDns(pulumi.ComponentResource):
    """Route53 health checks and the API record(s). Give it a provider through `opts.providers`."""

    outputs: FailoverDnsOutputs

    def __init__(self, name: str, args: FailoverDnsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            "inference-fleet:failover:FailoverDns",
            name,
            None,
            # Its type until it lined up with its package: the URNs in the stacks' state keep it.
            pulumi.ResourceOptions.merge(
                opts,
                pulumi.ResourceOptions(
                    aliases=[pulumi.Alias(type_="inference-fleet:failover_dns:FailoverDns")]
                ),
            ),
        )
        self._name, self._args = name, args
        zone_id = aws.route53.get_zone_output(
            name=args.domain, private_zone=False, opts=pulumi.InvokeOutputOptions(parent=self)
        ).zone_id
        health_check_ids: dict[str, pulumi.Output[str]] = {}
        budget: Budget | None = None
        status_record: str | None = None

        if args.standby is None:
            self._record(f"{name}-api", zone_id, args.primary)
        else:
            fo, dns = args.failover, args.dns
            interval, threshold = fo.health_check_interval_seconds, fo.failure_threshold
            checks: dict[str, aws.route53.HealthCheck] = {}
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
                    regions=list(args.checker_regions),
                    tags={"Name": f"{name}-{endpoint.region} can serve"},
                    opts=pulumi.ResourceOptions(parent=self),
                )
                checks[endpoint.region] = check
                health_check_ids[endpoint.region] = check.id
                record_check = check
                if role == "PRIMARY" and args.writer_alarm is not None:
                    record_check = self._with_the_writer(name, endpoint, check, args.writer_alarm)
                self._record(
                    f"{name}-api-{role.lower()}",
                    zone_id,
                    endpoint,
                    failover=role,
                    health_check_id=record_check.id,
                )
            status_record = self._status_record(name, zone_id, args.primary, checks[args.primary.region])
            # Computed from the values just declared: the checks' interval and threshold, the records' shape.
            budget = gateway_failure(fo, dns)

        self.outputs = FailoverDnsOutputs(
            api_url=pulumi.Output.from_input(f"https://{args.api_name}"),
            health_check_ids=health_check_ids,
            budget=budget,
            status_record=status_record,
        )
        self.register_outputs(
            {
                "apiUrl": self.outputs.api_url,
                "healthCheckIds": health_check_ids,
                "dnsFailoverWorstCaseSeconds": budget.worst_seconds if budget else None,
            }
        )

    def _with_the_writer(
        self, name: str, primary: RegionEndpoint, serves: aws.route53.HealthCheck, writer: WriterAlarm
    ) -> aws.route53.HealthCheck:
        """Healthy while the primary can serve and the writer is not the standby's."""
        writer_home = aws.route53.HealthCheck(
            f"{name}-{primary.region}-holds-writer",
            type="CLOUDWATCH_METRIC",
            cloudwatch_alarm_name=writer.name,
            cloudwatch_alarm_region=writer.region,
            # A prober that stops publishing moves no traffic either way.
            insufficient_data_health_status="LastKnownStatus",
            tags={"Name": f"{name}-{primary.region} holds the database writer"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return aws.route53.HealthCheck(
            f"{name}-{primary.region}-serves-with-writer",
            type="CALCULATED",
            child_healthchecks=[serves.id, writer_home.id],
            child_health_threshold=2,
            tags={"Name": f"{name}-{primary.region} can serve and holds the writer"},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _status_record(
        self, name: str, zone_id: pulumi.Input[str], primary: RegionEndpoint, check: aws.route53.HealthCheck
    ) -> str:
        """A TXT failover pair that answers with Route53's verdict on the primary's check."""
        record_name = status_record_name(primary)
        # Healthy exactly when the primary's check is not: the SECONDARY answers while the primary fails.
        inverse = aws.route53.HealthCheck(
            f"{name}-{primary.region}-inverse",
            type="CALCULATED",
            child_healthchecks=[check.id],
            child_health_threshold=1,
            invert_healthcheck=True,
            tags={"Name": f"{name}-{primary.region} cannot serve"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        for role, value, health_check in (
            ("PRIMARY", STATUS_HEALTHY, check),
            ("SECONDARY", STATUS_FAILING, inverse),
        ):
            aws.route53.Record(
                f"{name}-status-{role.lower()}",
                zone_id=zone_id,
                name=record_name,
                type="TXT",
                ttl=STATUS_RECORD_TTL_SECONDS,
                records=[value],
                set_identifier=f"{primary.region}-status-{role.lower()}",
                failover_routing_policies=[aws.route53.RecordFailoverRoutingPolicyArgs(type=role)],
                health_check_id=health_check.id,
                opts=pulumi.ResourceOptions(parent=self),
            )
        return record_name

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
