"""The plan's cost (`budgets.stackCost`): every region's NAT gateways, load balancers, gateway tasks,
Aurora, ElastiCache and functions, the GPU pools and the Cloud Run jobs, EU regions priced, what is not
priced named; the pools' cost per token on the gateway's entries; the AWS Budgets budget from the estimate,
alerting at 80 % and 100 % through a topic AWS Budgets may publish to."""

from __future__ import annotations

import json

import pytest
import yaml

from components.core.catalog import service_prices as prices
from components.core.catalog.aws_prices import node_price
from components.core.catalog.resource_types import BUDGET, S3_OBJECT, SNS_TOPIC, SNS_TOPIC_POLICY
from components.core.catalog.service_prices import HOURS_PER_MONTH
from components.observability.cost import monthly_limit

BUDGET = BUDGET


def test_every_part_of_every_region_is_priced_or_named(render) -> None:
    cost = render("prod").outputs["budgets"]["stackCost"]
    expected = {
        "natGateways",
        "loadBalancers",
        "gatewayTasks",
        "aurora",
        "gatewayRedis",
        "modelStoreRedis",
        "functions",
    }
    assert expected | {"gpuPool:llama-8b", "gpuPool:qwen-14b"} == set(cost["regions"]["us-east-1"])
    assert expected | {"gpuPool:llama-8b-west"} == set(cost["regions"]["us-west-2"])
    east = cost["regions"]["us-east-1"]
    # prod: a NAT gateway per zone (3); the public ALB and one per pool; 3-12 gateway tasks.
    assert (east["natGateways"]["countAtMax"], east["loadBalancers"]["countAtMax"]) == (3, 3)
    assert (east["gatewayTasks"]["countAtMin"], east["gatewayTasks"]["countAtMax"]) == (3, 12)
    assert east["natGateways"]["usdPerMonthAtMax"] == pytest.approx(3 * 0.045 * HOURS_PER_MONTH, abs=0.01)
    # The standby runs the prober besides its controller.
    assert cost["regions"]["us-west-2"]["functions"]["countAtMax"] == 2
    assert "cloudRunJob:llm-batch" in cost["gcp"]
    lines = [x for parts in cost["regions"].values() for x in parts.values()] + list(cost["gcp"].values())
    assert cost["usdPerMonthAtMax"] == pytest.approx(sum(x["usdPerMonthAtMax"] for x in lines), abs=0.05)
    assert any("Aurora storage" in term for term in cost["notPriced"])


def test_eu_regions_are_priced_and_unpriced_regions_named(render, stack_input) -> None:
    raw = stack_input("dev").config
    network = json.loads(raw["inference-fleet:network"])
    network["cidrs"] = {"eu-central-1": network["cidrs"]["us-east-1"]}
    pools = json.loads(raw["inference-fleet:gpuPools"])
    pools[0]["region"] = "eu-central-1"
    cost = render("dev", {"primaryRegion": "eu-central-1", "network": network, "gpuPools": pools}).outputs[
        "budgets"
    ]["stackCost"]
    eu = cost["regions"]["eu-central-1"]
    assert eu["natGateways"]["usdPerMonthAtMax"] == pytest.approx(
        0.045 * prices.REGION_UPLIFT["eu-central-1"] * HOURS_PER_MONTH, abs=0.01
    )
    assert "gpuPool:llama-8b" in eu and not any("GPU pool" in term for term in cost["notPriced"])
    price = node_price("eu-central-1", "g6.2xlarge")
    assert price is not None and price.on_demand > node_price("us-east-1", "g6.2xlarge").on_demand  # type: ignore[union-attr]
    # A region the catalogs do not price is named, not counted as free.
    assert prices.regional("nat", prices.NAT_GATEWAY_HOUR, "ap-south-1") is None


def test_pool_entries_carry_their_cost_per_token(render) -> None:
    rendering = render("prod")
    figures = rendering.outputs["budgets"]["tokenCost"]
    objects = [o for o in rendering.of_type(S3_OBJECT) if o.name.endswith("-litellm-config")]
    pool_entries = [
        d["litellm_params"]
        for o in objects
        for d in yaml.safe_load(o.inputs["content"])["model_list"]
        if "/pool/" in d["model_info"]["id"]
    ]
    assert len(pool_entries) == 3  # llama-8b and qwen-14b in the primary, llama-8b-west in the standby
    assert all(e["input_cost_per_token"] > 0 and e["output_cost_per_token"] > 0 for e in pool_entries)
    # The price: the node's hourly cost at max size over its throughput (vLLM default: 1500 tokens/s a GPU).
    llama = figures["llama-8b"]
    hourly = rendering.outputs["budgets"]["gpuCapacity"]["llama-8b"]["usdPerHourAtMax"] / 8
    assert llama["outputUsdPerMillionTokens"] == pytest.approx(hourly / 3600 / 1500 * 1e6, rel=1e-3)
    assert llama["throughput"].startswith("planning default")


def test_configured_throughput_sets_the_price(render, stack_input) -> None:
    pools = json.loads(stack_input("dev").config["inference-fleet:gpuPools"])
    pools[0]["throughput"] = {"inputTokensPerSecond": 20000, "outputTokensPerSecond": 3000}
    budgets = render("dev", {"gpuPools": pools}).outputs["budgets"]
    default = render("dev").outputs["budgets"]["tokenCost"]["llama-8b"]
    measured = budgets["tokenCost"]["llama-8b"]
    assert measured["throughput"] == "configured"
    assert measured["outputUsdPerMillionTokens"] == pytest.approx(
        default["outputUsdPerMillionTokens"] / 2, rel=1e-3
    )


def test_the_budget_follows_the_estimate_and_alerts_the_primary_topic(render) -> None:
    rendering = render("prod")
    budgets = rendering.outputs["budgets"]
    budget = rendering.one(BUDGET)
    limit = budgets["costBudgetUsdPerMonth"]
    aws_max = budgets["stackCost"]["awsUsdPerMonthAtMax"]
    assert aws_max <= limit < aws_max + 10  # the AWS part at full scale, rounded up: Budgets sees AWS only
    assert (budget.inputs["limitAmount"], budget.inputs["limitUnit"]) == (f"{limit:.2f}", "USD")
    assert budget.inputs["costFilters"] == [{"name": "TagKeyValue", "values": ["user:stack$prod"]}]
    (topic,) = [t for t in rendering.of_type(SNS_TOPIC) if t.name == "alerts-us-east-1"]
    assert [
        (n["threshold"], n["notificationType"], n["subscriberSnsTopicArns"])
        for n in budget.inputs["notifications"]
    ] == [
        (80.0, "ACTUAL", [topic.outputs["arn"]]),
        (100.0, "ACTUAL", [topic.outputs["arn"]]),
    ]
    (policy,) = [p for p in rendering.of_type(SNS_TOPIC_POLICY) if p.inputs["arn"] == topic.outputs["arn"]]
    statements = json.loads(policy.inputs["policy"])["Statement"]
    (budgets_may,) = [s for s in statements if s["Principal"] == {"Service": "budgets.amazonaws.com"}]
    assert (budgets_may["Action"], budgets_may["Resource"]) == ("SNS:Publish", topic.outputs["arn"])
    # The default owner statement stays: CloudWatch alarms publish for the account through it.
    assert any(s["Principal"] == {"AWS": "*"} and "SNS:Publish" in s["Action"] for s in statements)


def test_a_configured_budget_replaces_the_estimate(render) -> None:
    rendering = render("dev", {"costBudget": {"monthlyUsd": 1234.5}})
    assert rendering.one(BUDGET).inputs["limitAmount"] == "1234.50"


def test_the_default_limit_rounds_the_aws_estimate_up() -> None:
    from components.observability.cost import Line, StackCost

    cost = StackCost(
        regions={"us-east-1": {"x": Line(1, 1, 1.0, 101.0, "u")}}, gcp={"j": Line(0, 1, 0, 5000.0, "u")}
    )
    assert monthly_limit(cost) == 110
