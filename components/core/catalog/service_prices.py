"""What the stack's non-GPU parts cost, per region, for the stack's cost estimate (`budgets.stackCost`).

A dated snapshot kept as data, like aws_prices.py. AWS's pricing pages render their figures with
JavaScript, so none could be read from AWS itself here: every figure below carries where it comes from
and whether it is confirmed. UNCONFIRMED figures are planning estimates; check them against the service's
pricing page (or `aws pricing get-products`) before relying on one:

    aws pricing get-products --region us-east-1 --service-code AmazonEC2 \\
        --filters Type=TERM_MATCH,Field=productFamily,Value="NAT Gateway" \\
                  Type=TERM_MATCH,Field=regionCode,Value=eu-west-1

Regions: us-east-1 figures are the base. US East (Ohio) and US West (Oregon) list the same prices for
these services as N. Virginia (as for the GPU types in aws_prices.py). EU regions are priced as the base
times the region's uplift (REGION_UPLIFT, UNCONFIRMED estimates), except where a third-party figure for
the region itself was found (NAT gateway and ALB in eu-west-1). Regions outside both lists are not priced:
the estimate names them instead of guessing.

Usage-priced terms are not in the estimate and are named by it (`notPriced`): data processed by NAT
gateways and load balancers (per GB, per LCU), Aurora storage and I/O, S3 storage and requests, CloudWatch
metrics, logs and alarms, Route53 queries and health checks, data transfer between regions and to the
internet, KMS requests, Secrets Manager secrets, Cloud Tasks and Firestore.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVICE_PRICES_CHECKED = "2026-12"
HOURS_PER_MONTH = 730  # AWS's own convention on its pricing pages (8760 h / 12)

BASE_REGIONS: frozenset[str] = frozenset({"us-east-1", "us-east-2", "us-west-2"})
# UNCONFIRMED: EU list prices as a multiple of us-east-1's, typical of EC2-priced services in those regions
# (e.g. g5.xlarge, ALB); an estimate until each price is checked.
REGION_UPLIFT: dict[str, float] = {
    "eu-west-1": 1.12,
    "eu-west-2": 1.17,
    "eu-central-1": 1.20,
    "eu-north-1": 1.06,
}
PRICED_REGIONS: frozenset[str] = BASE_REGIONS | frozenset(REGION_UPLIFT)


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str
    confirmed: bool = False


# --- us-east-1 (the base) ----------------------------------------------------------------------------------
# Third-party copies of AWS's rate cards (facts-aws.md section 8); UNCONFIRMED against AWS itself.
NAT_GATEWAY_HOUR = Price(0.045, "per NAT gateway-hour", "3P: basavytix.com, cloudburn.io, egresscost.com")
ALB_HOUR = Price(0.0225, "per ALB-hour", "3P: cloud-horizons.com")
# The program declares application load balancers only (the public one per region and one internal one
# per GPU pool); the Kubernetes path's NLBs are the cluster's load balancer controller's.
NLB_HOUR = Price(0.0225, "per NLB-hour", "UNCONFIRMED: same hourly rate as the ALB on AWS's ELB page")
FARGATE_VCPU_HOUR = Price(0.04048, "per vCPU-hour, Linux/x86", "3P: vantage.sh, wring.co")
FARGATE_GB_HOUR = Price(0.004445, "per GB-hour, Linux/x86", "3P: vantage.sh, wring.co")
LAMBDA_GB_SECOND = Price(0.0000166667, "per GB-second, x86", "3P: several copies of the Lambda rate card")
LAMBDA_REQUEST = Price(0.20 / 1_000_000, "per request", "3P: several copies of the Lambda rate card")

# Aurora PostgreSQL-Compatible, Aurora Standard, on-demand instance-hours. UNCONFIRMED: no AWS or reliable
# third-party figure was readable here (facts-aws.md: "db.r6g.large UNCONFIRMED"); these are the rate card
# as remembered, to be checked.
AURORA_INSTANCE_HOUR: dict[str, float] = {
    "db.t4g.medium": 0.073, "db.t4g.large": 0.146,
    "db.r6g.large": 0.26, "db.r6g.xlarge": 0.519, "db.r6g.2xlarge": 1.038, "db.r6g.4xlarge": 2.076,
    "db.r7g.large": 0.276, "db.r7g.xlarge": 0.552, "db.r7g.2xlarge": 1.104, "db.r7g.4xlarge": 2.208,
    "db.r8g.large": 0.276, "db.r8g.xlarge": 0.552, "db.r8g.2xlarge": 1.104, "db.r8g.4xlarge": 2.208,
}  # fmt: skip
AURORA_SOURCE = "UNCONFIRMED: Aurora PostgreSQL on-demand rate card, not readable here"

# ElastiCache (Redis OSS) on-demand node-hours. UNCONFIRMED (facts-aws.md: "not found").
ELASTICACHE_NODE_HOUR: dict[str, float] = {
    "cache.t4g.micro": 0.016, "cache.t4g.small": 0.032, "cache.t4g.medium": 0.065,
    "cache.m7g.large": 0.158, "cache.m7g.xlarge": 0.315, "cache.m7g.2xlarge": 0.630,
    "cache.r7g.large": 0.219, "cache.r7g.xlarge": 0.437, "cache.r7g.2xlarge": 0.873,
}  # fmt: skip
ELASTICACHE_SOURCE = "UNCONFIRMED: ElastiCache on-demand rate card, not readable here"

# Third-party figures for a region itself replace the uplift estimate.
_REGIONAL: dict[tuple[str, str], Price] = {
    ("nat", "eu-west-1"): Price(0.048, "per NAT gateway-hour", "3P: cloudpipelines.pages.dev (0.048-0.052)"),
    ("alb", "eu-west-1"): Price(0.0252, "per ALB-hour", "3P: cal53.calculator.city (low trust)"),
}

# --- GCP: Cloud Run jobs (instance-based billing), us-central1 (tier 1) ------------------------------------
# UNCONFIRMED: Cloud Run's pricing page as remembered; GPU without zonal redundancy, as batch jobs run.
CLOUD_RUN_PRICED_REGIONS: frozenset[str] = frozenset({"us-central1", "us-east4", "europe-west4"})
CLOUD_RUN_VCPU_SECOND = Price(0.000018, "per vCPU-second", "UNCONFIRMED: Cloud Run pricing, tier 1")
CLOUD_RUN_GIB_SECOND = Price(0.000002, "per GiB-second", "UNCONFIRMED: Cloud Run pricing, tier 1")
CLOUD_RUN_GPU_SECOND: dict[str, Price] = {
    "nvidia-l4": Price(0.0001867, "per L4-second", "UNCONFIRMED: Cloud Run GPU pricing, no zonal redundancy"),
}


def uplift(region: str) -> float | None:
    """How much more than us-east-1 a region charges (1.0 for the base regions); None: not priced."""
    if region in BASE_REGIONS:
        return 1.0
    return REGION_UPLIFT.get(region)


def regional(kind: str, base: Price, region: str) -> Price | None:
    """`base` (a us-east-1 price) as charged in `region`, or None where the region is not priced."""
    found = _REGIONAL.get((kind, region))
    if found is not None:
        return found
    factor = uplift(region)
    if factor is None:
        return None
    if factor == 1.0:
        return base
    return Price(round(base.usd * factor, 10), base.unit, f"estimate: us-east-1 x {factor} (UNCONFIRMED)")


def hourly(table: dict[str, float], key: str, region: str) -> float | None:
    """An instance-hour price from `table` in `region`, or None where either is not priced."""
    base = table.get(key)
    factor = uplift(region)
    return None if base is None or factor is None else round(base * factor, 6)
