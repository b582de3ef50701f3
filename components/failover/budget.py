"""What failover costs in time and data, computed from what the stack declares.

Pure arithmetic, shared by the config rules (a stack that cannot meet its targets is refused) and by the
components (which report the figures for the values they actually declare), so the two cannot drift.

DNS failover after a gateway-level failure (the primary region's "can serve" check fails):

    firstProbeOffset   a checker's first probe after the failure comes up to one interval later
                       (Route53's checkers are not synchronized)
    probeIntervals     (failureThreshold - 1) more probes, one interval apart, must fail too
    probeTimeout       the last probe fails only when it times out: 4 s to connect + 2 s to answer
    aggregation        Route53 combines its checkers' reports (healthy while more than 18% say so) and
                       hands the status to its DNS servers; AWS publishes no figure: one interval here
    dnsTtl             resolvers may hold the old answer this long (an alias to an ALB: the ALB's 60 s)

Region loss (primary region gone, writer included), decided by the standby's prober:

    detection          the DNS failover's detection terms above, then the prober sees it: the status
                       record's TTL (its resolver may cache the old answer) and one probe interval
    agreement          promoteAfterSeconds: both signals must agree this long without a break
    recheck            the re-check right before the lossy call (a writer probe's timeout)
    auroraFailover     promoting the secondary cluster (AWS: "in the order of minutes"; 120 s here)
    standbyRecovery    the standby's gateways find the new writer (LiteLLM's database watchdog:
                       interval + probe timeout + reconnect timeout, as the task definition sets them)
    dnsTtl             as above

RPO: at most `rds.global_db_rpo`, which the database parameter groups set; Aurora holds commits on the
writer while no secondary is within it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from components.core.catalog.aws import (
    ALIAS_TO_ALB_TTL_SECONDS,
    AURORA_GLOBAL_FAILOVER_SECONDS,
    ROUTE53_PROBE_TIMEOUT_SECONDS,
)

# The shortest TTL the API record takes (the dns section's floor): a remedy never suggests less.
MIN_RECORD_TTL_SECONDS = 5
# The status record the prober reads (a TXT failover pair on the primary's check): short, cached briefly.
STATUS_RECORD_TTL_SECONDS = 10
# The prober observes every 10 s; a writer probe gives up after 3 s.
PROBE_INTERVAL_SECONDS = 10
PROBE_TIMEOUT_SECONDS = 3
# The least agreement the prober may be configured with: three observations.
MIN_PROMOTE_AFTER_SECONDS = 30


@dataclass(frozen=True)
class DnsFailoverBudget:
    first_probe_offset_seconds: int
    probe_intervals_seconds: int
    probe_timeout_seconds: int
    aggregation_seconds: int
    dns_ttl_seconds: int

    @property
    def detection_seconds(self) -> int:
        return (
            self.first_probe_offset_seconds
            + self.probe_intervals_seconds
            + self.probe_timeout_seconds
            + self.aggregation_seconds
        )

    @property
    def worst_case_seconds(self) -> int:
        return self.detection_seconds + self.dns_ttl_seconds

    def terms(self) -> dict[str, int]:
        return _camel(asdict(self))


@dataclass(frozen=True)
class RegionLossBudget:
    detection_seconds: int
    agreement_seconds: int
    recheck_seconds: int
    aurora_failover_seconds: int
    standby_recovery_seconds: int
    dns_ttl_seconds: int

    @property
    def rto_seconds(self) -> int:
        return sum(asdict(self).values())

    def terms(self) -> dict[str, int]:
        return _camel(asdict(self))


def dns_ttl(record_type: str, record_ttl_seconds: int) -> int:
    """What resolvers may hold the API record for (cname: its own TTL; alias to an ALB: 60 s)."""
    return ALIAS_TO_ALB_TTL_SECONDS if record_type == "alias" else record_ttl_seconds


def dns_failover_budget(
    interval_seconds: int, failure_threshold: int, record_type: str, record_ttl_seconds: int
) -> DnsFailoverBudget:
    return DnsFailoverBudget(
        first_probe_offset_seconds=interval_seconds,
        probe_intervals_seconds=(failure_threshold - 1) * interval_seconds,
        probe_timeout_seconds=ROUTE53_PROBE_TIMEOUT_SECONDS,
        aggregation_seconds=interval_seconds,
        dns_ttl_seconds=dns_ttl(record_type, record_ttl_seconds),
    )


def region_loss_budget(
    dns: DnsFailoverBudget, promote_after_seconds: int, standby_recovery_seconds: int
) -> RegionLossBudget:
    return RegionLossBudget(
        detection_seconds=dns.detection_seconds + STATUS_RECORD_TTL_SECONDS + PROBE_INTERVAL_SECONDS,
        agreement_seconds=promote_after_seconds,
        recheck_seconds=PROBE_TIMEOUT_SECONDS,
        aurora_failover_seconds=AURORA_GLOBAL_FAILOVER_SECONDS,
        standby_recovery_seconds=standby_recovery_seconds,
        dns_ttl_seconds=dns.dns_ttl_seconds,
    )


def _camel(terms: dict[str, int]) -> dict[str, int]:
    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(word.title() for word in rest)

    return {camel(name): value for name, value in terms.items()}
