"""Capacity and cost of the GPU pools, from what the config declares and the dated price catalog.

Per pool, at its min and its max size: nodes, GPUs, on-demand and spot nodes, USD an hour. The on-demand
nodes (the base, then the on-demand share above it) are priced at the first listed type's on-demand
price (Auto Scaling's `prioritized` order); the spot nodes at the highest spot price among the pool's
types, an upper bound. A pool with a type the catalog does not price shows its cost as None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.core.catalog.aws_prices import PRICES_CHECKED, NodePrice, node_price

PRICE_CATALOG = "components/core/catalog/aws_prices.py"
from components.gpu_pools.config import GpuPoolConfig


def _hourly(pool: GpuPoolConfig, nodes: int) -> float | None:
    prices: list[NodePrice | None] = [node_price(pool.region, t) for t in pool.instance_types]
    if any(p is None for p in prices):
        return None
    known = [p for p in prices if p is not None]
    on_demand = pool.on_demand_nodes(nodes)
    cost = on_demand * known[0].on_demand + (nodes - on_demand) * max(p.spot for p in known)
    return round(cost, 2)


def pool_budget(pool: GpuPoolConfig) -> dict[str, Any]:
    at_max_on_demand = pool.on_demand_nodes(pool.max_size)
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
        "usdPerHourAtMin": _hourly(pool, pool.min_size),
        "usdPerHourAtMax": _hourly(pool, pool.max_size),
    }


def stack_budget(pools: Sequence[GpuPoolConfig]) -> dict[str, Any]:
    """The pools' figures and the stack's totals (a total is None when any pool's cost is unknown)."""
    per_pool = {pool.name: pool_budget(pool) for pool in pools}

    def total(key: str) -> float | int | None:
        values = [figures[key] for figures in per_pool.values()]
        if any(v is None for v in values):
            return None
        return round(sum(values), 2) if isinstance(sum(values), float) else sum(values)

    return {
        "gpuCapacity": per_pool,
        "gpuTotals": {
            "gpusAtMin": total("gpusAtMin"),
            "gpusAtMax": total("gpusAtMax"),
            "usdPerHourAtMin": total("usdPerHourAtMin"),
            "usdPerHourAtMax": total("usdPerHourAtMax"),
            "prices": f"catalog {PRICES_CHECKED}: on-demand list prices, spot estimated ({PRICE_CATALOG})",
        },
    }
