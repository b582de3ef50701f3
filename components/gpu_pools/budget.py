"""Capacity and cost of the GPU pools, from what the config declares and the dated price catalog.

Per pool, at its min and its max size: nodes, GPUs, on-demand and spot nodes, USD an hour. The on-demand
nodes (the base, then the on-demand share above it) are priced at the first listed type's on-demand
price (Auto Scaling's `prioritized` order); the spot nodes at the highest spot price among the pool's
types, an upper bound. A pool with a type the catalog does not price names those types instead of a
cost, and the stack's total cost is then left out rather than understated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.core.catalog.aws_prices import PRICES_CHECKED, node_price
from components.gpu_pools.config import GpuPoolConfig

PRICE_CATALOG = "components/core/catalog/aws_prices.py"


def _hourly(pool: GpuPoolConfig, nodes: int) -> float:
    known = [p for p in (node_price(pool.region, t) for t in pool.instance_types) if p is not None]
    on_demand = pool.on_demand_nodes(nodes)
    cost = on_demand * known[0].on_demand + (nodes - on_demand) * max(p.spot for p in known)
    return round(cost, 2)


def node_hourly_at_max(pool: GpuPoolConfig) -> float | None:
    """USD an hour per node of the pool at its max size (None where a type or the region is unpriced)."""
    if any(node_price(pool.region, t) is None for t in pool.instance_types):
        return None
    return _hourly(pool, pool.max_size) / pool.max_size


def pool_budget(pool: GpuPoolConfig) -> dict[str, Any]:
    at_max_on_demand = pool.on_demand_nodes(pool.max_size)
    unpriced = [t for t in pool.instance_types if node_price(pool.region, t) is None]
    cost: dict[str, Any] = (
        {"unpricedTypes": unpriced}
        if unpriced
        else {
            "usdPerHourAtMin": _hourly(pool, pool.min_size),
            "usdPerHourAtMax": _hourly(pool, pool.max_size),
        }
    )
    return {
        "region": pool.region,
        "engine": pool.engine,
        "model": pool.model,
        "nodesAtMin": pool.min_size,
        "nodesAtMax": pool.max_size,
        "gpusAtMin": pool.min_size * pool.gpus_per_node,
        "gpusAtMax": pool.gpus_at_max,
        "onDemandNodesAtMax": at_max_on_demand,
        "spotNodesAtMax": pool.max_size - at_max_on_demand,
        "spotShareAtMax": round(pool.spot_share_at_max(), 3),
        **cost,
    }


def stack_budget(pools: Sequence[GpuPoolConfig]) -> dict[str, Any]:
    """The pools' figures and the stack's totals."""
    per_pool = {pool.name: pool_budget(pool) for pool in pools}
    totals: dict[str, Any] = {
        "gpusAtMin": sum(p["gpusAtMin"] for p in per_pool.values()),
        "gpusAtMax": sum(p["gpusAtMax"] for p in per_pool.values()),
    }
    unpriced = [name for name, figures in per_pool.items() if "unpricedTypes" in figures]
    if unpriced:
        totals["unpricedPools"] = unpriced
    else:
        for key in ("usdPerHourAtMin", "usdPerHourAtMax"):
            totals[key] = round(sum(p[key] for p in per_pool.values()), 2)
    totals["prices"] = (
        f"catalog {PRICES_CHECKED}: on-demand list prices (EU regions estimated), spot estimated "
        f"({PRICE_CATALOG})"
    )
    return {"gpuCapacity": per_pool, "gpuTotals": totals}
