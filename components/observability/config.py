"""The `slo` and `costBudget` sections: the promises the stack makes (latency, availability, time to first
token, over a window) and the monthly spend it is held to.

Defaults follow the planning documents: p95 under 2 s everywhere; 99.5 % availability for dev stacks and
99.99 % for prod; a 30-day window (the SRE workbook's, whose burn rates 14.4 and 6 it reproduces).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from components.control_plane import GatewayConfig
from components.core.config import Problem, Section, StackShape, StackView, rule
from components.observability.slo import FAST_BURN, error_budget, lowest_alertable_objective

# Availability by tier (planning documents: 99.5 % uptime for the hybrid fleet, 99.99 % for the service).
TIER_AVAILABILITY_PERCENT = {"dev": 99.5, "prod": 99.99}


class LatencySloConfig(Section):
    """`slo.latency`: the share of requests (`percentile`) answered within `targetSeconds`, measured at the
    public load balancer (the gateway's response time: the whole answer, or its first chunk when streamed)."""

    target_seconds: float = Field(default=2.0, gt=0, le=600, description="the latency objective, seconds")
    percentile: float = Field(
        default=95.0, ge=50, lt=100, description="the share of requests (percent) within targetSeconds"
    )


class SloConfig(Section):
    """`slo`: what the stack promises, and the window its error budgets are counted over."""

    availability_percent: float = Field(
        default=TIER_AVAILABILITY_PERCENT["dev"],
        ge=90,
        lt=100,
        description="share of requests answered without a server error (default 99.5 dev, 99.99 prod)",
    )
    latency: LatencySloConfig = Field(default_factory=LatencySloConfig)
    time_to_first_token_seconds: float = Field(
        default=1.0,
        gt=0,
        le=600,
        description="per model, at the latency percentile: the engine's first token within this (the agents)",
    )
    window_days: int = Field(
        default=30, ge=7, le=90, description="the SLO window the error budgets and burn rates are counted in"
    )

    @classmethod
    def shape_defaults(cls, shape: StackShape) -> dict[str, Any]:
        tier = shape.tier if shape.tier in TIER_AVAILABILITY_PERCENT else "dev"
        return {"availability_percent": TIER_AVAILABILITY_PERCENT[tier]}

    @property
    def availability_budget(self) -> float:
        return error_budget(self.availability_percent)

    @property
    def latency_budget(self) -> float:
        return error_budget(self.latency.percentile)


class CostBudgetConfig(Section):
    """`costBudget`: the AWS Budgets budget of the stack (alerts at 80 % and 100 % to the alert topic)."""

    monthly_usd: float | None = Field(
        default=None,
        gt=0,
        le=10_000_000,
        description="monthly limit in USD; default: the plan's estimate at full scale (budgets.stackCost)",
    )


@rule(SloConfig)
def _burn_rates_can_fire(slo: SloConfig, view: StackView) -> Iterator[Problem]:
    lowest = lowest_alertable_objective(slo.window_days)
    burn = FAST_BURN.burn_rate(slo.window_days)
    for key, objective in (
        ("availabilityPercent", slo.availability_percent),
        ("latency.percentile", slo.latency.percentile),
    ):
        if objective < lowest:
            yield (
                key,
                f"got {objective}; with windowDays {slo.window_days} the fast burn alarm pages at {burn}x "
                f"the error budget, which below {lowest} needs more than every request to fail: use at "
                f"least {lowest}, or a shorter windowDays",
            )


@rule(SloConfig)
def _latency_within_the_timeout(slo: SloConfig, view: StackView) -> Iterator[Problem]:
    timeout = view.section(GatewayConfig).request_timeout_seconds
    for key, seconds in (
        ("latency.targetSeconds", slo.latency.target_seconds),
        ("timeToFirstTokenSeconds", slo.time_to_first_token_seconds),
    ):
        if seconds >= timeout:
            yield (
                key,
                f"got {seconds}; must be below the gateway's request timeout ({timeout} s, "
                "controlPlane.gateway.requestTimeoutSeconds): a slower request fails instead, so a target at "
                "or above it can never be missed",
            )


class MonitoringConfig(Section):
    """`monitoring`: where teams on Amazon Managed Prometheus send the nodes' metrics (the stack output
    `prometheusScrapeConfig` gains a remote_write to it, signed with SigV4 for an AMP workspace)."""

    remote_write_url: str | None = Field(
        default=None,
        pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?/[A-Za-z0-9._~%/-]*$",
        max_length=2048,
        description=(
            "remote-write endpoint, e.g. https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-.../api/v1/"
            "remote_write"
        ),
    )
