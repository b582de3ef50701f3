"""The `controlPlane.dns` and `controlPlane.failover` sections: the API record, how it fails over, and
the targets (gateway-level RTO, region-loss RTO, RPO) a stack is held to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from components.control_plane import GATEWAY_TIMINGS
from components.core.catalog.aws import (
    AURORA_GLOBAL_DB_RPO_MIN_SECONDS,
    ROUTE53_CHECKER_REGIONS,
    ROUTE53_HEALTHY_CHECKER_SHARE,
    ROUTE53_MIN_CHECKER_REGIONS,
)
from components.core.config import Problem, Section, StackView, rule
from components.core.fields import in_, listed
from components.data_tier import DatabaseConfig
from components.failover.budget import (
    MIN_PROMOTE_AFTER_SECONDS,
    MIN_RECORD_TTL_SECONDS,
    PROBE_INTERVAL_SECONDS,
    Budget,
    Term,
    gateway_failure_budget,
    region_loss_write_budget,
)

CheckerRegion = Annotated[
    str, AfterValidator(in_(ROUTE53_CHECKER_REGIONS, "Route53 checks from")), listed(ROUTE53_CHECKER_REGIONS)
]
FASTEST_INTERVAL = 10


def checker_regions_outside(*regions: str | None) -> list[str]:
    """The first checker regions of Route53's list that are none of `regions`, as many as a check needs."""
    outside = [r for r in ROUTE53_CHECKER_REGIONS if r not in regions]
    return outside[:ROUTE53_MIN_CHECKER_REGIONS]


class DnsConfig(Section):
    """The API record: cname (its own TTL) or alias (free queries, but resolvers hold it the ALB's 60 s)."""

    record_type: Literal["cname", "alias"] = "cname"
    ttl_seconds: int = Field(
        default=10, ge=MIN_RECORD_TTL_SECONDS, le=3600, description="TTL of a cname record"
    )


class FailoverConfig(Section):
    health_check_interval_seconds: Literal[10, 30] = 10
    failure_threshold: int = Field(default=3, ge=1, le=10)
    checker_regions: list[CheckerRegion] | None = Field(
        default=None,
        max_length=8,
        description="Route53 checker regions, at least 3, neither the primary nor the standby region; "
        "default: the first 3 of Route53's list outside both",
    )
    rto_seconds: int = Field(
        default=130,
        ge=1,
        le=3600,
        description="target: every client reaches the standby within this after a gateway-level failure",
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
    serverless_only: Literal["healthy", "failing"] = Field(
        default="failing",
        description="what Route53 hears from a region whose own GPU pools cannot serve but a serverless "
        "endpoint can: failing moves the API to a standby whose own pools serve (with both failing Route53 "
        "keeps the primary)",
    )

    def checkers(self, primary: str, standby: str | None) -> list[str]:
        """The regions Route53 checks from: as given, or three outside both control-plane regions."""
        return list(self.checker_regions or checker_regions_outside(primary, standby))


@rule(FailoverConfig)
def _failover_needs_a_standby(fo: FailoverConfig, view: StackView) -> Iterator[Problem]:
    if view.standby_region is None and fo.model_fields_set:
        yield "", "set, but there is no standbyRegion to fail over to; one region serves a plain record"


@rule(FailoverConfig)
def _checkers(fo: FailoverConfig, view: StackView) -> Iterator[Problem]:
    if fo.checker_regions is not None:
        if len(fo.checker_regions) < ROUTE53_MIN_CHECKER_REGIONS:
            yield (
                "checkerRegions",
                f"got {len(fo.checker_regions)} region(s); "
                f"Route53 checks from at least {ROUTE53_MIN_CHECKER_REGIONS}",
            )
        roles = {view.primary_region: "the primary", view.standby_region: "the standby"}
        for i, region in enumerate(fo.checker_regions):
            if region in roles:
                yield (
                    f"checkerRegions[{i}]",
                    f"got {region!r}, {roles[region]} region: its own checkers keep it healthy while the "
                    "rest of the internet cannot reach it (Route53 counts over "
                    f"{ROUTE53_HEALTHY_CHECKER_SHARE:.0%} healthy as healthy); check from outside both, e.g. "
                    f"{', '.join(checker_regions_outside(view.primary_region, view.standby_region))}",
                )
    if fo.promote_after_seconds % PROBE_INTERVAL_SECONDS:
        yield (
            "promoteAfterSeconds",
            f"got {fo.promote_after_seconds}; the prober observes every {PROBE_INTERVAL_SECONDS} s: "
            f"give a multiple of {PROBE_INTERVAL_SECONDS}",
        )


def gateway_failure(fo: FailoverConfig, dns: DnsConfig) -> Budget:
    """DNS failover after a gateway-level failure, as the stack declares it."""
    return gateway_failure_budget(
        fo.health_check_interval_seconds,
        fo.failure_threshold,
        dns.record_type,
        dns.ttl_seconds,
        GATEWAY_TIMINGS.client_keep_alive_seconds,
    )


def gateway_reconnect() -> Term:
    """The standby's gateways writing again once the writer moved: LiteLLM's database watchdog."""
    timings = GATEWAY_TIMINGS
    return Term(
        0,
        timings.watchdog_interval_seconds // 2,
        timings.database_recovery_seconds,
        "declared: LiteLLM's database watchdog (interval + probe timeout + reconnect timeout, as the gateway "
        "task sets them)",
    )


def region_loss_writes(fo: FailoverConfig) -> Budget:
    """Writes after a region loss, as the stack declares it."""
    return region_loss_write_budget(
        fo.health_check_interval_seconds, fo.failure_threshold, fo.promote_after_seconds, gateway_reconnect()
    )


@rule(FailoverConfig)
def _dns_failover_meets_rto(fo: FailoverConfig, view: StackView) -> Iterator[Problem]:
    if view.standby_region is None:
        return
    dns = view.section(DnsConfig)
    budget = gateway_failure(fo, dns)
    if budget.worst_seconds <= fo.rto_seconds:
        return
    fastest = gateway_failure(
        fo.model_copy(update={"health_check_interval_seconds": FASTEST_INTERVAL, "failure_threshold": 1}),
        DnsConfig.model_construct(record_type="cname", ttl_seconds=MIN_RECORD_TTL_SECONDS),
    ).worst_seconds
    hint = (
        f"no setting fails every client over faster than {fastest} s: raise rtoSeconds to at least "
        f"{budget.worst_seconds} as declared, or to {fastest} with 10 s checks, threshold 1 and a "
        f"{MIN_RECORD_TTL_SECONDS} s cname"
        if fo.rto_seconds < fastest
        else f"detect faster (healthCheckIntervalSeconds 10, a lower failureThreshold), use a cname with a "
        f"shorter dns.ttlSeconds, or raise rtoSeconds to at least {budget.worst_seconds}"
    )
    yield (
        "rtoSeconds",
        f"got {fo.rto_seconds}, but a gateway-level failover can take {budget.worst_seconds} s "
        f"({budget.worst_terms()}); {hint}",
    )


@rule(FailoverConfig)
def _region_loss_meets_rto(fo: FailoverConfig, view: StackView) -> Iterator[Problem]:
    if view.standby_region is None:
        return
    budget = region_loss_writes(fo)
    if budget.worst_seconds <= fo.region_loss_rto_seconds:
        return
    others = budget.worst_seconds - fo.promote_after_seconds
    room = (fo.region_loss_rto_seconds - others) // PROBE_INTERVAL_SECONDS * PROBE_INTERVAL_SECONDS
    if room >= MIN_PROMOTE_AFTER_SECONDS:
        hint = f"lower promoteAfterSeconds to at most {room}"
    else:
        least = region_loss_writes(
            fo.model_copy(
                update={
                    "health_check_interval_seconds": FASTEST_INTERVAL,
                    "failure_threshold": 1,
                    "promote_after_seconds": MIN_PROMOTE_AFTER_SECONDS,
                }
            )
        ).worst_seconds
        hint = (
            f"even the fastest detection and promoteAfterSeconds {MIN_PROMOTE_AFTER_SECONDS} take "
            f"{least} s: raise regionLossRtoSeconds to at least {least}"
            if least > fo.region_loss_rto_seconds
            else "detect faster (healthCheckIntervalSeconds, failureThreshold) and lower "
            "promoteAfterSeconds, or raise regionLossRtoSeconds to at least "
            f"{others + MIN_PROMOTE_AFTER_SECONDS}"
        )
    yield (
        "regionLossRtoSeconds",
        f"got {fo.region_loss_rto_seconds}, but writes can take {budget.worst_seconds} s to resume after a "
        f"region loss ({budget.worst_terms()}); {hint}",
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
