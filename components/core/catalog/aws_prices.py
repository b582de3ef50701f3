"""What a GPU node costs an hour, for the capacity and cost budgets `fleet plan` prints.

A dated snapshot, kept as data (the policy pack and the budgets read it without a cloud call):

- On-demand: AWS's public EC2 price list, Linux, shared tenancy, in US East (N. Virginia); US East (Ohio)
  and US West (Oregon) list the same prices for these types. Checked 2026-11 (g5.xlarge $1.006/h and the
  g6 list agree with the copies of AWS's rate card published in 2026).
- Spot: planning estimates, not quotes. Spot prices move every few minutes and differ by zone; these are
  each family's typical price as a fraction of on-demand in those regions (g5 about 40 %, g6 45 %,
  g6e 50 %). Refresh them before relying on a figure:
      aws ec2 describe-spot-price-history --region us-east-1 --product-descriptions Linux/UNIX \\
          --instance-types g6.xlarge --start-time "$(date -u +%FT%TZ)"
- EU regions (eu-west-1, eu-west-2, eu-central-1, eu-north-1): the US price times the region's uplift in
  service_prices.REGION_UPLIFT (UNCONFIRMED estimates: check the region's own list price).
- Families off the default allowlist (p4d, p4de, p5, p5e) are not priced here: a pool using them shows
  its cost as unknown rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.core.catalog.service_prices import REGION_UPLIFT

PRICES_CHECKED = "2026-11"
ON_DEMAND_SOURCE = "AWS EC2 On-Demand price list (Linux, shared tenancy), us-east-1 = us-east-2 = us-west-2"
SPOT_SOURCE = "estimate: on-demand x the family's typical spot fraction (g5 0.40, g6 0.45, g6e 0.50)"
PRICED_REGIONS: frozenset[str] = frozenset({"us-east-1", "us-east-2", "us-west-2"})

# USD per instance-hour, on-demand, in the priced regions.
_ON_DEMAND: dict[str, float] = {
    "g5.xlarge": 1.006, "g5.2xlarge": 1.212, "g5.4xlarge": 1.624, "g5.8xlarge": 2.448,
    "g5.16xlarge": 4.096, "g5.12xlarge": 5.672, "g5.24xlarge": 8.144, "g5.48xlarge": 16.288,
    "g6.xlarge": 0.8048, "g6.2xlarge": 0.9776, "g6.4xlarge": 1.3232, "g6.8xlarge": 2.0144,
    "g6.16xlarge": 3.3968, "g6.12xlarge": 4.6016, "g6.24xlarge": 6.6752, "g6.48xlarge": 13.3504,
    "g6e.xlarge": 1.861, "g6e.2xlarge": 2.24208, "g6e.4xlarge": 3.00424, "g6e.8xlarge": 4.52856,
    "g6e.16xlarge": 7.57719, "g6e.12xlarge": 10.49264, "g6e.24xlarge": 15.06559, "g6e.48xlarge": 30.13118,
}  # fmt: skip
_SPOT_FRACTION: dict[str, float] = {"g5": 0.40, "g6": 0.45, "g6e": 0.50}


@dataclass(frozen=True)
class NodePrice:
    on_demand: float
    spot: float


def node_price(region: str, instance_type: str) -> NodePrice | None:
    """The hourly prices of one node, or None where this catalog has none."""
    on_demand = _ON_DEMAND.get(instance_type)
    factor = 1.0 if region in PRICED_REGIONS else REGION_UPLIFT.get(region)
    if factor is None or on_demand is None:
        return None
    on_demand = round(on_demand * factor, 4)
    fraction = _SPOT_FRACTION[instance_type.split(".", 1)[0]]
    return NodePrice(on_demand=on_demand, spot=round(on_demand * fraction, 4))
