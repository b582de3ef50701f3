"""The `controlPlane.dns` and `controlPlane.failover` sections: the API record, how it fails over, and
the targets (gateway-level RTO, region-loss RTO, RPO) a stack is held to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from components.control_plane import GATEWAY_DATABASE_RECOVERY_SECONDS
from components.core.catalog.aws import (
    AURORA_GLOBAL_DB_RPO_MIN_SECONDS,
    ROUTE53_CHECKER_REGIONS,
    ROUTE53_MIN_CHECKER_REGIONS,
)
from components.core.config import Problem, Section, StackView, rule
from components.core.fields import in_, listed
from components.data_tier import DatabaseConfig
from components.failover.budget import (
    MIN_PROMOTE_AFTER_SECONDS,
    MIN_RECORD_TTL_SECONDS,
    PROBE_INTERVAL_SECONDS,
    DnsFailoverBudget,
    dns_failover_budget,
    region_loss_budget,
)

CheckerRegion = Annotated[
    str, AfterValidator(in_(ROUTE53_CHECKER_REGIONS, "Route53 checks from")), listed(ROUTE53_CHECKER_REGIONS)
]
FASTEST_INTERVAL = 10


class DnsConfig(Section):
    """The API record: cname (its own TTL) or alias (free queries, but resolvers hold it the ALB's 60 s)."""

    record_type: Literal["cname", "alias"] = "cname"
    # 10 s: with the default checks (10 s x 3) DNS failover takes 56 s, within the default 60 s target.
    ttl_seconds: int = Field(
        default=10, ge=MIN_RECORD_TTL_SECONDS, le=3600, description="TTL of a cname record"
    )


class FailoverConfig(Section):
    health_check_interval_seconds: Literal[10, 30] = 10
    failure_threshold: int = Field(default=3, ge=1, le=10)
    checker_regions: list[CheckerRegion] = Field(
        default_factory=lambda: ["us-east-1", "us-west-2", "eu-west-1"], max_length=8
    )
    rto_seconds: int = Field(
        default=60, ge=1, le=3600, description="target: DNS moves off a failed gateway within this"
    )
    region_loss_rto_seconds: int = Field(
        default=600, ge=1, le=86400, description="target: the database writes again after a region loss"
    )
    rpo_seconds: int = Field(default=60, ge=1, le=86400, description="target: data a region loss may lose")
    promote_after_seconds: int = Field(
        default=60,
        ge=MIN_PROMOTE_AFTER_SECONDS,
        le=3600,
        description="the prober's signals must agree this long before it promotes the standby database",
    )


@rule(FailoverConfig)
def _failover_needs_a_standby(fo: FailoverConfig, view: StackView) -> Iterator[Problem]:
    if view.standby_region is None and fo.model_fields_set:
        yield "", "set, but there is no standbyRegion to fail over to; one region serves a plain record"


@rule(FailoverConfig)
def _checkers(fo: FailoverConfig, view: StackView) -> Iterator[Problem]:
    if len(fo.checker_regions) < ROUTE53_MIN_CHECKER_REGIONS:
        yield (
            "checkerRegions",
            f"got {len(fo.checker_regions)} region(s); "
            f"Route53 checks from at least {ROUTE53_MIN_CHECKER_REGIONS}",
        )
    if fo.promote_after_seconds % PROBE_INTERVAL_SECONDS:
        yield (
            "promoteAfterSeconds",
            f"got {fo.promote_after_seconds}; the prober observes every {PROBE_INTERVAL_SECONDS} s: "
            f"give a multiple of {PROBE_INTERVAL_SECONDS}",
        )


def _dns(fo: FailoverConfig, view: StackView) -> DnsFailoverBudget:
    dns = view.section(DnsConfig)
    return dns_failover_budget(
        fo.health_check_interval_seconds, fo.failure_threshold, dns.record_type, dns.ttl_seconds
    )


def _fastest_dns() -> DnsFailoverBudget:
    return dns_failover_budget(FASTEST_INTERVAL, 1, "cname", MIN_RECORD_TTL_SECONDS)


def _most_failed_probes(rto_seconds: int) -> int:
    """The largest failure threshold that, at 10 s and with the shortest TTL, still meets the RTO."""
    threshold = 1
    while threshold < 10:
        nxt = dns_failover_budget(FASTEST_INTERVAL, threshold + 1, "cname", MIN_RECORD_TTL_SECONDS)
        if nxt.worst_case_seconds > rto_seconds:
            break
        threshold += 1
    return threshold


@rule(FailoverConfig)
def _dns_failover_meets_rto(fo: FailoverConfig, view: StackView) -> Iterator[Problem]:
    if view.standby_region is None:
        return
    budget = _dns(fo, view)
    if budget.worst_case_seconds <= fo.rto_seconds:
        return
    dns = view.section(DnsConfig)
    ttl_source = "an alias to an ALB is held" if dns.record_type == "alias" else "the record's TTL"
    fastest = _fastest_dns().worst_case_seconds
    room = fo.rto_seconds - budget.detection_seconds
    if fo.rto_seconds < fastest:
        hint = (
            f"no setting fails DNS over faster than {fastest} s (10 s checks, threshold 1, a 5 s cname): "
            f"raise rtoSeconds to at least {fastest}"
        )
    elif room >= MIN_RECORD_TTL_SECONDS:
        hint = (
            f"use dns.recordType cname with dns.ttlSeconds at most {room}"
            if dns.record_type == "alias"
            else f"lower dns.ttlSeconds to at most {room}, or detect faster"
        )
    else:
        # Detection alone leaves no room for a TTL: fewer failed probes, at 10 s, must fit.
        threshold = _most_failed_probes(fo.rto_seconds)
        ttl = fo.rto_seconds - dns_failover_budget(FASTEST_INTERVAL, threshold, "cname", 0).worst_case_seconds
        interval = (
            "" if fo.health_check_interval_seconds == FASTEST_INTERVAL else "healthCheckIntervalSeconds 10, "
        )
        hint = (
            f"detection alone takes {budget.detection_seconds} s, leaving less than the shortest TTL "
            f"({MIN_RECORD_TTL_SECONDS} s): use {interval}failureThreshold at most {threshold} "
            f"and a cname dns.ttlSeconds of at most {ttl}"
        )
    yield (
        "rtoSeconds",
        f"got {fo.rto_seconds}, but DNS failover can take {budget.worst_case_seconds} s "
        f"({budget.detection_seconds} s to detect with {fo.health_check_interval_seconds} s x "
        f"{fo.failure_threshold} checks + {budget.dns_ttl_seconds} s {ttl_source}); {hint}",
    )


@rule(FailoverConfig)
def _region_loss_meets_rto(fo: FailoverConfig, view: StackView) -> Iterator[Problem]:
    if view.standby_region is None:
        return
    dns = _dns(fo, view)
    budget = region_loss_budget(dns, fo.promote_after_seconds, GATEWAY_DATABASE_RECOVERY_SECONDS)
    if budget.rto_seconds <= fo.region_loss_rto_seconds:
        return
    others = budget.rto_seconds - fo.promote_after_seconds
    room = (fo.region_loss_rto_seconds - others) // PROBE_INTERVAL_SECONDS * PROBE_INTERVAL_SECONDS
    if room >= MIN_PROMOTE_AFTER_SECONDS:
        hint = f"lower promoteAfterSeconds to at most {room}"
    else:
        least = region_loss_budget(
            _fastest_dns(), MIN_PROMOTE_AFTER_SECONDS, GATEWAY_DATABASE_RECOVERY_SECONDS
        )
        hint = (
            f"even the fastest detection and promoteAfterSeconds {MIN_PROMOTE_AFTER_SECONDS} take "
            f"{least.rto_seconds} s: raise regionLossRtoSeconds to at least {least.rto_seconds}"
            if least.rto_seconds > fo.region_loss_rto_seconds
            else f"detect faster (healthCheckIntervalSeconds, failureThreshold, dns.ttlSeconds) and lower "
            "promoteAfterSeconds, or raise regionLossRtoSeconds to at least "
            f"{others + MIN_PROMOTE_AFTER_SECONDS}"
        )
    terms = " + ".join(f"{v} s {k}" for k, v in budget.terms().items())
    yield (
        "regionLossRtoSeconds",
        f"got {fo.region_loss_rto_seconds}, but recovering from a region loss can take "
        f"{budget.rto_seconds} s ({terms}); {hint}",
    )


@rule(FailoverConfig)
def _rpo(fo: FailoverConfig, view: StackView) -> Iterator[Problem]:
    if view.standby_region is None:
        return
    if fo.rpo_seconds < AURORA_GLOBAL_DB_RPO_MIN_SECONDS:
        yield (
            "rpoSeconds",
            f"got {fo.rpo_seconds}; Aurora bounds a global database's RPO at "
            f"{AURORA_GLOBAL_DB_RPO_MIN_SECONDS} s at the least (rds.global_db_rpo): raise rpoSeconds to at "
            f"least {AURORA_GLOBAL_DB_RPO_MIN_SECONDS}",
        )
        return
    bound = view.section(DatabaseConfig).global_rpo_seconds
    if bound > fo.rpo_seconds:
        yield (
            "rpoSeconds",
            f"got {fo.rpo_seconds}, but the database bounds its RPO at {bound} s (database.globalRpoSeconds, "
            f"Aurora's rds.global_db_rpo): lower database.globalRpoSeconds to at most {fo.rpo_seconds}",
        )
