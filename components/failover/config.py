"""The `controlPlane.dns` and `controlPlane.failover` sections: the API record and how it fails over."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from components.core.catalog.aws import (
    ROUTE53_CHECKER_REGIONS,
    ROUTE53_METRIC_PERIOD_SECONDS,
    ROUTE53_MIN_CHECKER_REGIONS,
)
from components.core.config import Problem, Section, StackView, rule
from components.core.fields import in_
from components.failover.budget import MIN_RECORD_TTL_SECONDS, failover_budget

CheckerRegion = Annotated[str, AfterValidator(in_(ROUTE53_CHECKER_REGIONS, "Route53 checks from"))]


class DnsConfig(Section):
    """The API record: cname (its own TTL) or alias (free queries, but resolvers hold it the ALB's 60 s)."""

    record_type: Literal["cname", "alias"] = "cname"
    ttl_seconds: int = Field(
        default=15, ge=MIN_RECORD_TTL_SECONDS, le=3600, description="TTL of a cname record"
    )


class FailoverConfig(Section):
    health_check_interval_seconds: Literal[10, 30] = 10
    failure_threshold: int = Field(default=3, ge=1, le=10)
    checker_regions: list[CheckerRegion] = Field(
        default_factory=lambda: ["us-east-1", "us-west-2", "eu-west-1"], max_length=8
    )
    rto_seconds: int = Field(default=60, ge=1, le=3600)
    promote_after_seconds: int = Field(
        default=60,
        ge=60,
        le=3600,
        description="the primary's health check failing this long promotes the standby DB",
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
    if fo.promote_after_seconds % ROUTE53_METRIC_PERIOD_SECONDS:
        periods = fo.promote_after_seconds // ROUTE53_METRIC_PERIOD_SECONDS
        yield (
            "promoteAfterSeconds",
            f"got {fo.promote_after_seconds}; "
            f"the alarm counts whole {ROUTE53_METRIC_PERIOD_SECONDS} s periods "
            f"and would promote after {periods * ROUTE53_METRIC_PERIOD_SECONDS} s: give a multiple of "
            f"{ROUTE53_METRIC_PERIOD_SECONDS}",
        )


@rule(FailoverConfig)
def _failover_meets_rto(fo: FailoverConfig, view: StackView) -> Iterator[Problem]:
    if view.standby_region is None:
        return
    dns = view.section(DnsConfig)
    budget = failover_budget(
        fo.health_check_interval_seconds, fo.failure_threshold, dns.record_type, dns.ttl_seconds
    )
    if budget.worst_case_seconds <= fo.rto_seconds:
        return
    ttl_source = "an alias to an ALB is held" if dns.record_type == "alias" else "the record's TTL"
    room = fo.rto_seconds - budget.detection_seconds
    if room < MIN_RECORD_TTL_SECONDS:
        # Even the shortest TTL would not fit: only faster detection (or a looser RTO) can.
        hint = (
            f"detection alone leaves {max(room, 0)} s, "
            f"less than the shortest TTL ({MIN_RECORD_TTL_SECONDS} s): "
            "lower healthCheckIntervalSeconds or failureThreshold"
        )
    elif dns.record_type == "alias":
        hint = f"use dns.recordType cname with dns.ttlSeconds at most {room}"
    else:
        hint = f"lower dns.ttlSeconds to at most {room}, or detect faster"
    yield (
        "rtoSeconds",
        f"got {fo.rto_seconds}, but failover can take {budget.worst_case_seconds} s "
        f"({fo.health_check_interval_seconds} s x {fo.failure_threshold} failed checks to detect "
        f"+ {budget.dns_ttl_seconds} s {ttl_source}); {hint}",
    )
