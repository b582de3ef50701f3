"""Capacity and cost in `budgets`: per pool at min and max, on-demand nodes at on-demand prices and the rest
at spot prices from the dated catalog; stack totals; unknown where the catalog has no price."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import moto
import pytest

from components.core.catalog.aws import GPU_BASELINE_GBPS, GPU_INSTANCE_TYPES
from components.core.catalog.aws_prices import PRICED_REGIONS, PRICES_CHECKED, node_price


def test_prod_budgets_per_pool_and_totals(render) -> None:
    budgets = render("prod").outputs["budgets"]
    pools = budgets["gpuCapacity"]
    llama = pools["llama-8b"]
    # min 2 = the on-demand base: 2 x g6e.xlarge on-demand (the first listed type).
    on_demand = node_price("us-east-1", "g6e.xlarge").on_demand  # type: ignore[union-attr]
    assert llama["usdPerHourAtMin"] == pytest.approx(2 * on_demand, abs=0.01)
    # max 8: the 2 on-demand, 6 spot at the highest spot price of the pool's three types.
    spot = max(node_price("us-east-1", t).spot for t in ("g6e.xlarge", "g5.2xlarge", "g6.2xlarge"))  # type: ignore[union-attr]
    assert llama["usdPerHourAtMax"] == pytest.approx(2 * on_demand + 6 * spot, abs=0.01)
    assert (llama["gpusAtMin"], llama["gpusAtMax"]) == (2, 8)
    assert (llama["onDemandNodesAtMax"], llama["spotNodesAtMax"], llama["spotShareAtMax"]) == (2, 6, 0.75)
    totals = budgets["gpuTotals"]
    assert totals["gpusAtMax"] == sum(p["gpusAtMax"] for p in pools.values()) == 16
    assert totals["gpusAtMin"] == 4
    assert totals["usdPerHourAtMax"] == pytest.approx(
        sum(p["usdPerHourAtMax"] for p in pools.values()), abs=0.02
    )
    assert PRICES_CHECKED in totals["prices"]
    assert {p["region"] for p in pools.values()} <= PRICED_REGIONS


def test_a_type_the_catalog_does_not_price_makes_the_cost_unknown(render, stack_input) -> None:
    raw = json.loads(stack_input("prod").config["inference-fleet:gpuPools"])
    raw[1] |= {"instanceTypes": ["p4d.24xlarge"], "maxSize": 2}  # 8 GPUs a node, not on the default allowlist
    budgets = render("prod", {"gpuPools": raw}).outputs["budgets"]
    qwen = budgets["gpuCapacity"]["qwen-14b"]
    assert qwen["unpricedTypes"] == ["p4d.24xlarge"] and "usdPerHourAtMax" not in qwen
    assert qwen["gpusAtMax"] == 16
    assert budgets["gpuTotals"]["unpricedPools"] == ["qwen-14b"]
    assert "usdPerHourAtMax" not in budgets["gpuTotals"]  # no total that leaves a pool out
    assert budgets["gpuTotals"]["gpusAtMax"] == 8 + 16 + 4


def test_an_all_spot_dev_pool_has_no_on_demand_node(render) -> None:
    (pool,) = render("dev").outputs["budgets"]["gpuCapacity"].values()
    assert (pool["onDemandNodesAtMax"], pool["spotShareAtMax"]) == (0, 1.0)
    spot = max(node_price("us-east-1", t).spot for t in ("g6.2xlarge", "g5.2xlarge"))  # type: ignore[union-attr]
    assert pool["usdPerHourAtMin"] == pytest.approx(spot, abs=0.01)


def test_the_catalogs_baseline_bandwidth_is_the_apis_for_every_gpu_type() -> None:
    """GPU_BASELINE_GBPS (what a node reads its model at) against DescribeInstanceTypes' answer as moto
    ships it: NetworkInfo.NetworkCards[0].BaselineBandwidthInGbps."""
    path = Path(moto.__file__).parent / "ec2" / "resources" / "instance_types.json"
    raw = path.read_bytes() if path.exists() else gzip.decompress(path.with_suffix(".json.gz").read_bytes())
    described = json.loads(raw)
    assert set(GPU_BASELINE_GBPS) == set(GPU_INSTANCE_TYPES)
    for name, gbps in GPU_BASELINE_GBPS.items():
        assert described[name]["NetworkInfo"]["NetworkCards"][0]["BaselineBandwidthInGbps"] == gbps, name
