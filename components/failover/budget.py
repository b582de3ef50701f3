"""What failover costs in time and data, computed from what the stack declares.

Pure arithmetic, shared by the config rules (a stack that cannot meet its targets is refused) and by the
components (which report the figures for the values they actually declare), so the two cannot drift. Every
budget is a sum of named terms, each with a best, a typical and a worst case and where its figure comes
from: a value the stack declares, AWS's documentation (components/core/catalog/aws.py cites each), or a
figure we measured. The worst case is the budget; the best case is only labelled as one.

Gateway-level failure (the primary region cannot serve; its load balancer still answers), until every
client that still sends requests reaches the standby:

    firstProbeOffset     Route53's checkers are not synchronized: the endpoint fails once more than 82%
                         of them have failed it (it stays healthy while over 18% say so). With their first
                         probes spread over an interval: best 0, typical 0.82 of one, worst one interval
    probeIntervals       (failureThreshold - 1) more probes, one interval apart, must fail too
    probeTimeout         the last probe fails at once when the sidecar answers 503; a blackholed region
                         only after Route53's 4 s to connect + 2 s to answer
    dnsTtl               resolvers hold the old answer up to the record's TTL (an alias to an ALB: 60 s)
    ttlIgnoringResolver  a resolver that ignores the TTL holds it longer: OpenJDK's 30 s without a
                         security manager (a JVM caching for ever is outside any budget)
    keepAliveHeld        a client's open connection to the failing region's ALB is reused, whatever DNS
                         says, until the ALB closes it: its client keep-alive, which the edge declares

There is no separate "aggregation" term: AWS documents none between the checkers' verdict and its DNS
answers (record edits, unlike health, "propagate within 60 seconds").

Region loss (the primary region gone, the global writer with it) is reported as three budgets:

    inference   the detection terms above, then dnsTtl and ttlIgnoringResolver (a lost region's load
                balancer holds no connection open): clients reach the standby, whose gateways check keys
                against their own region's reader, at its warm size
    capacity    inference, then the standby's gateway grows to the primary's size: its takeover alarm
                (ALB RequestCount, one 60 s period; metrics arrive every 60 s) and a Fargate task's start
                and registration (AWS publishes no start time: measured by others)
    writes      the database writes again: detection, the status record's TTL, the prober's next
                observation (a run every minute that EventBridge starts anywhere within its minute, and
                may start cold), promoteAfterSeconds of agreement, the observation that closes it, the
                re-check before the lossy call, Aurora's promotion, the gateways' reconnect

RPO: at most `rds.global_db_rpo`, which the database parameter groups set; Aurora holds commits on the
writer while no secondary is within it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from components.core.catalog.aws import (
    ALIAS_TO_ALB_TTL_SECONDS,
    AURORA_GLOBAL_FAILOVER_ALLOWANCE_SECONDS,
    AURORA_GLOBAL_FAILOVER_TYPICAL_SECONDS,
    EVENTBRIDGE_SCHEDULE_PRECISION_SECONDS,
    JVM_DNS_CACHE_SECONDS,
    LAMBDA_COLD_START_TYPICAL_SECONDS,
    LAMBDA_INIT_MAX_SECONDS,
    ROUTE53_HEALTHY_CHECKER_SHARE,
    ROUTE53_PROBE_TIMEOUT_SECONDS,
)
from functions.failover_prober.settings import HEARTBEAT_STALE_SECONDS, RUN_SECONDS

# The shortest TTL the API record takes (the dns section's floor): a remedy never suggests less.
MIN_RECORD_TTL_SECONDS = 5
# The status record the prober reads (a TXT failover pair on the primary's check): short, cached briefly.
STATUS_RECORD_TTL_SECONDS = 10
# The prober observes every 10 s; a writer probe gives up after 3 s. Its schedule starts a run every minute.
PROBE_INTERVAL_SECONDS = 10
PROBE_TIMEOUT_SECONDS = 3
PROBER_SCHEDULE_SECONDS = 60
# The least agreement the prober may be configured with: three observations.
MIN_PROMOTE_AFTER_SECONDS = 30
# The planning documents' failover target (docs in shared/seeds): what every RTO is compared with.
PLANNING_FAILOVER_TARGET_SECONDS = 60

ROUTE53_GUIDE = "Route53 Developer Guide"


@dataclass(frozen=True)
class Term:
    """One term of a budget, in seconds: best, typical and worst case, and where the figures come from."""

    best: int
    typical: int
    worst: int
    source: str

    @staticmethod
    def fixed(seconds: int, source: str) -> Term:
        return Term(seconds, seconds, seconds, source)

    def report(self, name: str) -> dict[str, Any]:
        return {
            "term": name,
            "best": self.best,
            "typical": self.typical,
            "worst": self.worst,
            "source": self.source,
        }


@dataclass(frozen=True)
class Budget:
    """A sum of named terms (in the order they happen)."""

    terms: Mapping[str, Term] = field(default_factory=dict)

    @property
    def best_seconds(self) -> int:
        return sum(t.best for t in self.terms.values())

    @property
    def typical_seconds(self) -> int:
        return sum(t.typical for t in self.terms.values())

    @property
    def worst_seconds(self) -> int:
        return sum(t.worst for t in self.terms.values())

    def plus(self, more: Mapping[str, Term]) -> Budget:
        return Budget({**self.terms, **more})

    def only(self, *names: str) -> Budget:
        return Budget({name: term for name, term in self.terms.items() if name in names})

    def worst_terms(self) -> str:
        """`10 s firstProbeOffset + 20 s probeIntervals + ...`: the worst case term by term, for a message."""
        return " + ".join(f"{t.worst} s {name}" for name, t in self.terms.items())

    def report(self, target_seconds: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bestSeconds": self.best_seconds,
            "typicalSeconds": self.typical_seconds,
            "worstSeconds": self.worst_seconds,
        }
        if target_seconds is not None:
            out["targetSeconds"] = target_seconds
        # A list: the terms in the order they happen (maps are sorted by key in the plan).
        out["terms"] = [term.report(name) for name, term in self.terms.items()]
        return out


def dns_ttl(record_type: str, record_ttl_seconds: int) -> int:
    """What resolvers may hold the API record for (cname: its own TTL; alias to an ALB: 60 s)."""
    return ALIAS_TO_ALB_TTL_SECONDS if record_type == "alias" else record_ttl_seconds


def _detection(
    interval_seconds: int, failure_threshold: int, failure: Literal["gateway", "region"]
) -> dict[str, Term]:
    """Route53's checkers failing the region: the first probes spread over an interval, the rest of the
    threshold, the last probe's own time (a 503 at once, or Route53's timeouts for a region that is gone)."""
    share_failed = 1 - ROUTE53_HEALTHY_CHECKER_SHARE
    timeout_typical = ROUTE53_PROBE_TIMEOUT_SECONDS if failure == "region" else 0
    last_probe = (
        "a region that is gone times out" if failure == "region" else "the sidecar answers 503 at once"
    )
    return {
        "firstProbeOffset": Term(
            0,
            math.ceil(share_failed * interval_seconds),
            interval_seconds,
            f"{ROUTE53_GUIDE}: unsynchronized checkers; healthy while over "
            f"{ROUTE53_HEALTHY_CHECKER_SHARE:.0%} report healthy; declared: healthCheckIntervalSeconds "
            f"{interval_seconds}",
        ),
        "probeIntervals": Term.fixed(
            (failure_threshold - 1) * interval_seconds,
            f"declared: failureThreshold {failure_threshold} x healthCheckIntervalSeconds {interval_seconds}",
        ),
        "probeTimeout": Term(
            0,
            timeout_typical,
            ROUTE53_PROBE_TIMEOUT_SECONDS,
            f"{ROUTE53_GUIDE}: connect within 4 s, a status within 2 s; {last_probe}",
        ),
    }


def _resolvers(record_type: str, record_ttl_seconds: int) -> dict[str, Term]:
    ttl = dns_ttl(record_type, record_ttl_seconds)
    source = (
        f"{ROUTE53_GUIDE}: an alias to a load balancer answers with its {ALIAS_TO_ALB_TTL_SECONDS} s TTL"
        if record_type == "alias"
        else f"declared: dns.ttlSeconds {ttl}"
    )
    return {
        "dnsTtl": Term(0, math.ceil(ttl / 2), ttl, source),
        "ttlIgnoringResolver": Term(
            0,
            0,
            max(0, JVM_DNS_CACHE_SECONDS - ttl),
            "AWS SDK for Java guide (jvm-ttl-dns) and OpenJDK: a JVM holds an answer "
            f"{JVM_DNS_CACHE_SECONDS} s whatever its TTL (one that caches for ever never fails over)",
        ),
    }


def gateway_failure_budget(
    interval_seconds: int,
    failure_threshold: int,
    record_type: str,
    record_ttl_seconds: int,
    client_keep_alive_seconds: int,
) -> Budget:
    """DNS failover after a gateway-level failure: the budget held to `rtoSeconds`."""
    return Budget(
        {
            **_detection(interval_seconds, failure_threshold, "gateway"),
            **_resolvers(record_type, record_ttl_seconds),
            "keepAliveHeld": Term(
                0,
                math.ceil(client_keep_alive_seconds / 2),
                client_keep_alive_seconds,
                f"declared: the ALB's client keep-alive ({client_keep_alive_seconds} s; ELBv2 API "
                "client_keep_alive.seconds): a pooled connection is reused until the ALB closes it",
            ),
        }
    )


def region_loss_inference_budget(
    interval_seconds: int, failure_threshold: int, record_type: str, record_ttl_seconds: int
) -> Budget:
    """Inference after a region loss: the standby serves at its warm size once clients reach it."""
    return Budget(
        {
            **_detection(interval_seconds, failure_threshold, "region"),
            **_resolvers(record_type, record_ttl_seconds),
        }
    )


def standby_capacity_budget(
    inference: Budget,
    takeover_alarm_seconds: int,
    task_start: Term,
    registration_seconds: int,
) -> Budget:
    """The standby's gateway at the primary's size: its takeover alarm, then new tasks start and register."""
    return inference.plus(
        {
            "takeoverAlarm": Term(
                takeover_alarm_seconds,
                takeover_alarm_seconds + takeover_alarm_seconds // 2,
                2 * takeover_alarm_seconds,
                f"declared: RequestCount over one {takeover_alarm_seconds} s period; ALB metrics arrive "
                "every 60 s (ELB User Guide, CloudWatch metrics)",
            ),
            "taskStart": task_start,
            "targetRegistration": Term.fixed(
                registration_seconds, "declared: the gateway target group's interval x healthy threshold"
            ),
        }
    )


def _observation(what: str) -> Term:
    """The prober's next observation: every PROBE_INTERVAL within a run; across the gap between runs, which
    EventBridge may widen to almost two minutes (each run starts anywhere within its minute), plus a cold
    start."""
    last_observation = (RUN_SECONDS - 1) // PROBE_INTERVAL_SECONDS * PROBE_INTERVAL_SECONDS
    widest_gap = PROBER_SCHEDULE_SECONDS + EVENTBRIDGE_SCHEDULE_PRECISION_SECONDS - last_observation
    return Term(
        0,
        PROBE_INTERVAL_SECONDS // 2 + LAMBDA_COLD_START_TYPICAL_SECONDS,
        widest_gap + LAMBDA_INIT_MAX_SECONDS,
        f"the prober's {what} observation: every {PROBE_INTERVAL_SECONDS} s for {RUN_SECONDS} s a run, a run "
        f"every {PROBER_SCHEDULE_SECONDS} s that EventBridge starts within its minute (EventBridge User "
        f"Guide), a cold start under {LAMBDA_COLD_START_TYPICAL_SECONDS} s typically, its INIT capped at "
        f"{LAMBDA_INIT_MAX_SECONDS} s (Lambda Developer Guide)",
    )


def region_loss_write_budget(
    interval_seconds: int,
    failure_threshold: int,
    promote_after_seconds: int,
    gateway_recovery: Term,
) -> Budget:
    """Writes after a region loss: the prober promotes the standby's cluster, the gateways reconnect."""
    return Budget(
        {
            **_detection(interval_seconds, failure_threshold, "region"),
            "statusRecordTtl": Term(
                0,
                STATUS_RECORD_TTL_SECONDS // 2,
                STATUS_RECORD_TTL_SECONDS,
                "declared: the status record's TTL, held by the standby VPC's resolver",
            ),
            "firstObservation": _observation("first failing"),
            "agreement": Term.fixed(promote_after_seconds, "declared: promoteAfterSeconds"),
            "closingObservation": _observation("closing"),
            "recheck": Term(
                0,
                0,
                PROBE_TIMEOUT_SECONDS,
                "declared: the writer probe's timeout, re-checked before the call",
            ),
            "auroraFailover": Term(
                AURORA_GLOBAL_FAILOVER_TYPICAL_SECONDS,
                AURORA_GLOBAL_FAILOVER_TYPICAL_SECONDS,
                AURORA_GLOBAL_FAILOVER_ALLOWANCE_SECONDS,
                "AWS DR workshop: a secondary is promoted 'in under a minute'; Aurora User Guide: RTO "
                f"'can be in the order of minutes' (no bound: {AURORA_GLOBAL_FAILOVER_ALLOWANCE_SECONDS} s "
                "is our allowance)",
            ),
            "gatewayReconnect": gateway_recovery,
        }
    )


def witness_spread_seconds(writes: Budget) -> int:
    """The most one region loss's witnesses can be apart, worst case: the writer's last sign (its probe or
    its heartbeat) comes at the loss; Route53's verdict after its detection and the status record's TTL,
    the heartbeat's after its staleness, whichever is later; the prober reads each once a probe interval."""
    route53 = writes.only("firstProbeOffset", "probeIntervals", "probeTimeout", "statusRecordTtl")
    return max(route53.worst_seconds, HEARTBEAT_STALE_SECONDS) + PROBE_INTERVAL_SECONDS
