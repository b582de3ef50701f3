"""`inference-fleet:gpuPools` and `nodeImage`: the shipped pools validate, and each cloud or tier rule a pool
can break is refused in one line naming the key (one change at a time to a shipped pool)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.core.catalog.aws import TIER_MAX_GPUS
from components.gpu_pools.config import DEFAULT_PARENT_IMAGE, GpuPoolConfig


def pools(stack_input, stack: str = "prod", index: int = 0, **changes: Any) -> list[dict[str, Any]]:
    """The stack's gpuPools with keys of one pool changed (None removes a key)."""
    found = json.loads(stack_input(stack).config["inference-fleet:gpuPools"])
    pool = {**found[index], **changes}
    found[index] = {k: v for k, v in pool.items() if v is not None}
    return found


def test_the_shipped_pools_validate(stack_input, config_problems) -> None:
    prod = json.loads(stack_input("prod").config["inference-fleet:gpuPools"])
    assert [(p["name"], p["region"], p["engine"]) for p in prod] == [
        ("llama-8b", "us-east-1", "vllm"),
        ("qwen-14b", "us-east-1", "ollama"),
        ("llama-8b-west", "us-west-2", "vllm"),
    ]
    dev = [
        GpuPoolConfig.model_validate(p)
        for p in json.loads(stack_input("dev").config["inference-fleet:gpuPools"])
    ]
    assert [(p.name, p.on_demand_base, p.spot_percentage) for p in dev] == [("llama-8b", 0, 100)]


CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "unknown GPU instance type",
        "prod",
        {"instanceTypes": ["g9.xlarge"]},
        "inference-fleet:gpuPools[0].instanceTypes[0]: got 'g9.xlarge'; allowed: g5.xlarge, g5.2xlarge, ...",
    ),
    (
        "pool outside the control-plane regions",
        "prod",
        {"region": "eu-west-1", "instanceTypes": ["g5.2xlarge"]},
        "inference-fleet:gpuPools[0].region: got 'eu-west-1'; pools run in control-plane regions: us-east-1, us-west-2",
    ),
    (
        "minimum above maximum",
        "prod",
        {"minSize": 9},
        "inference-fleet:gpuPools[0].minSize: got 9; at most maxSize (8)",
    ),
    (
        "on-demand base above maximum",
        "prod",
        {"onDemandBase": 9},
        "inference-fleet:gpuPools[0].onDemandBase: got 9; at most maxSize (8)",
    ),
    (
        "prod pool on spot without an on-demand floor",
        "prod",
        {"onDemandBase": 0},
        "inference-fleet:gpuPools[0].onDemandBase: got 0; a prod pool on spot keeps at least 1 on-demand node, "
        "so a spot reclaim of every node cannot take its model offline",
    ),
    (
        "prod spot share over the tier's cap",
        "prod",
        {"maxSize": 20, "onDemandBase": 1},
        "inference-fleet:gpuPools[0].spotPercentage: got 100, 95% of the nodes on spot at maxSize; a prod pool "
        "runs at most 90% (raise onDemandBase or lower spotPercentage)",
    ),
    (
        "more nodes than the tier allows a pool",
        "dev",
        {"maxSize": 5},
        "inference-fleet:gpuPools[0].maxSize: got 5; a dev pool runs at most 4 nodes",
    ),
    (
        "llama.cpp, which has no Linux CUDA build",
        "prod",
        {"engine": "llamacpp"},
        "inference-fleet:gpuPools[0].engine: got 'llamacpp'; llama.cpp publishes no Linux CUDA build ...",
    ),
    (
        "types with different GPU counts",
        "prod",
        {"instanceTypes": ["g6e.xlarge", "g6e.12xlarge"], "maxSize": 4},
        "inference-fleet:gpuPools[0].instanceTypes: mixes GPU counts (g6e.xlarge: 1, g6e.12xlarge: 4); ...",
    ),
    (
        "a warm pool with spot",
        "prod",
        {"warmPool": {"minSize": 1}},
        "inference-fleet:gpuPools[0].warmPool: set on a pool with spot or several instance types; ...",
    ),
    (
        "an engine flag the agent sets",
        "prod",
        {"engineArgs": ["--port", "9000"]},
        "inference-fleet:gpuPools[0].engineArgs[0]: got '--port'; the node's agent sets --host, --port, ...",
    ),
    (
        "engine arguments for Ollama",
        "prod",
        {"index": 1, "engineArgs": ["--verbose"]},
        "inference-fleet:gpuPools[1].engineArgs: set for ollama; only vllm takes engine arguments ...",
    ),
]


@pytest.mark.parametrize(("stack", "change", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_pool_the_cloud_or_the_tier_would_refuse_gets_one_line(
    stack_input, config_problems, stack, change, expected
) -> None:
    index = change.pop("index", 0)
    found = config_problems(stack, {"gpuPools": pools(stack_input, stack, index, **change)})
    assert len(found) == 1, found
    if expected.endswith("..."):
        assert found[0].startswith(expected.removesuffix("...")), found[0]
    else:
        assert found[0] == expected


def test_the_tier_gpu_cap_counts_every_pool(stack_input, config_problems) -> None:
    # 3 pools x 4-GPU nodes at their max sizes: 32 + 16 + 16 = 64 fits prod's cap; one node more does not.
    changed = [
        {**p, "instanceTypes": ["g6e.12xlarge"], "maxSize": m, "onDemandBase": max(1, m // 4)}
        for p, m in zip(
            json.loads(stack_input("prod").config["inference-fleet:gpuPools"]), (8, 4, 5), strict=True
        )
    ]
    (line,) = config_problems("prod", {"gpuPools": changed})
    assert line == (
        f"inference-fleet:gpuPools: 68 GPUs at full scale (llama-8b: 32, qwen-14b: 16, llama-8b-west: 20); "
        f"a prod stack runs at most {TIER_MAX_GPUS['prod']}"
    )


def test_a_warm_pool_needs_one_on_demand_type(stack_input, config_problems) -> None:
    warm = pools(
        stack_input,
        instanceTypes=["g6e.xlarge"],
        spotPercentage=0,
        onDemandBase=2,
        warmPool={"minSize": 2, "state": "Stopped"},
    )
    assert config_problems("prod", {"gpuPools": warm, "nodeImage": {"rootVolumeGib": 30}}) == [
        "inference-fleet:nodeImage.rootVolumeGib: got 30; input should be greater than or equal to 60"
    ]  # the warm pool itself is accepted; only the unrelated bad key is reported


def test_a_gpu_type_the_pools_region_does_not_offer_is_named(stack_input, config_problems) -> None:
    """eu-west-1 as the standby: it offers g5, g6 and p4d, not the L40S (g6e) the standby pool asks for."""
    network = json.loads(stack_input("prod").config["inference-fleet:network"])
    network["cidrs"] = {"us-east-1": "10.10.0.0/16", "eu-west-1": "10.20.0.0/16"}
    changed = pools(stack_input, index=2, region="eu-west-1")
    (line,) = config_problems("prod", {"standbyRegion": "eu-west-1", "network": network, "gpuPools": changed})
    assert line.startswith(
        "inference-fleet:gpuPools[2].instanceTypes[0]: g6e.xlarge is not offered in eu-west-1; offered there: "
        "g5.xlarge"
    ), line


def test_a_pool_name_must_leave_room_in_its_load_balancers_name(stack_input, config_problems) -> None:
    long_name = "llama-3-1-8b-instruct"
    control_plane = json.loads(stack_input("prod").config["inference-fleet:controlPlane"])
    control_plane["gateway"]["routes"][0]["pools"] = [long_name, "llama-8b-west"]
    changed = pools(stack_input, name=long_name)
    (line,) = config_problems("prod", {"gpuPools": changed, "controlPlane": control_plane})
    assert line == (
        "inference-fleet:gpuPools[0].name: got 21 characters; at most 16: it names the pool's load balancer and "
        "target group, which elbv2 caps at 32 characters with their suffixes"
    )


def test_routes_name_declared_pools(stack_input, config_problems) -> None:
    control_plane = json.loads(stack_input("prod").config["inference-fleet:controlPlane"])
    control_plane["gateway"]["routes"][0]["pools"] = ["llama-8b", "llama-80b"]
    assert config_problems("prod", {"controlPlane": control_plane}) == [
        "inference-fleet:controlPlane.gateway.routes[0].pools[1]: got 'llama-80b'; declared gpuPools: llama-8b, "
        "qwen-14b, llama-8b-west"
    ]


@pytest.mark.parametrize(
    "parent",
    [
        "ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
        "arn:aws:imagebuilder:us-east-1:aws:image/ubuntu-server-24-lts-x86/x.x.x",
    ],
)
def test_a_moving_parent_image_is_refused(config_problems, parent: str) -> None:
    (line,) = config_problems("prod", {"nodeImage": {"parentImage": parent}})
    assert line.startswith(f"inference-fleet:nodeImage.parentImage: got {parent!r}; expected a pinned Ubuntu")


def test_the_image_is_built_on_a_gpu_the_primary_region_offers(stack_input, config_problems) -> None:
    """ca-central-1 as dev's only region: it offers g5 and g6, not the L40S (g6e) asked to build on."""
    network = json.loads(stack_input("dev").config["inference-fleet:network"])
    network["cidrs"] = {"ca-central-1": "10.110.0.0/16"}
    moved = pools(stack_input, "dev", region="ca-central-1")
    changes = {"primaryRegion": "ca-central-1", "network": network, "gpuPools": moved}
    (line,) = config_problems("dev", {**changes, "nodeImage": {"buildInstanceType": "g6e.xlarge"}})
    assert line.startswith(
        "inference-fleet:nodeImage.buildInstanceType: g6e.xlarge is not offered in ca-central-1, where the image "
        "is built; offered there: g5.xlarge, g5.2xlarge"
    ), line


def test_the_default_parent_is_a_dated_canonical_release(stack_input) -> None:
    assert "/stable/20260714/" in DEFAULT_PARENT_IMAGE


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (
            {"provider": "runpod", "apiBase": None},
            "apiBase: required for provider runpod: the endpoint's OpenAI-compatible URL",
        ),
        (
            {"provider": "together_ai", "apiBase": "https://api.example.com/v1"},
            "apiBase: set for together_ai, which LiteLLM calls at its own endpoint; for another server use "
            "provider runpod, modal, openai_compatible",
        ),
        (
            {"apiBase": "http://api.runpod.ai/v2/x/openai/v1"},
            "apiBase: got 'http://api.runpod.ai/v2/x/openai/v1'; expected the endpoint's OpenAI-compatible base "
            "URL over HTTPS, such as https://api.runpod.ai/v2/<endpoint id>/openai/v1",
        ),
    ],
)
def test_serverless_endpoints_name_their_api_base_where_they_need_one(
    stack_input, config_problems, endpoint: dict[str, Any], expected: str
) -> None:
    control_plane = json.loads(stack_input("prod").config["inference-fleet:controlPlane"])
    endpoints = control_plane["gateway"]["serverlessEndpoints"]
    index = next(i for i, e in enumerate(endpoints) if e["provider"] == "runpod")
    endpoints[index] = {k: v for k, v in {**endpoints[index], **endpoint}.items() if v is not None}
    assert config_problems("prod", {"controlPlane": control_plane}) == [
        f"inference-fleet:controlPlane.gateway.serverlessEndpoints[{index}].{expected}"
    ]
