"""Worst-case DNS failover time: how long clients may keep reaching a dead primary.

Pure arithmetic, shared by the config check (reject a stack whose figure exceeds its RTO) and by
FailoverDns (which reports the figure for the values it actually declares), so the two cannot drift.

    detection = health-check interval x failure threshold   (every checker needs that many failed probes)
    worst case = detection + the TTL a resolver may hold the old answer for
"""

from __future__ import annotations

from dataclasses import dataclass

from components.core.catalog.aws import ALIAS_TO_ALB_TTL_SECONDS

# The shortest TTL the API record takes (the dns section's floor): a remedy never suggests less.
MIN_RECORD_TTL_SECONDS = 5


@dataclass(frozen=True)
class FailoverBudget:
    detection_seconds: int
    dns_ttl_seconds: int

    @property
    def worst_case_seconds(self) -> int:
        return self.detection_seconds + self.dns_ttl_seconds


def failover_budget(
    interval_seconds: int, failure_threshold: int, record_type: str, record_ttl_seconds: int
) -> FailoverBudget:
    """The budget for a failover pair of `record_type` (cname: its own TTL; alias: the ALB's 60 s)."""
    ttl = ALIAS_TO_ALB_TTL_SECONDS if record_type == "alias" else record_ttl_seconds
    return FailoverBudget(detection_seconds=interval_seconds * failure_threshold, dns_ttl_seconds=ttl)
