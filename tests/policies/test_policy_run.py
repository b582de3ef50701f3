"""The offline runner behaves as the engine: config reconciled the same way, unknowns raising as in a
preview, parents linked for stack rules; and the pack itself boots the way `pulumi preview` starts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pulumi
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel, StackValidationPolicy

from components.core.catalog.resource_types import (
    AWS_PROVIDER,
    ECS_TASK_DEFINITION,
    ROUTE53_RECORD,
    STACK,
    VPC,
)
from fleet.harness import RecordedResource, Rendering
from fleet.policy_run import PolicyConfigError, RuleConfig, evaluate, load_config_file, reconcile
from policies.pack import POLICIES

PROJECT_DIR = Path(__file__).resolve().parents[2]
URN = "urn:pulumi:prod::inference-fleet::"
PROVIDER = RecordedResource(
    urn=f"{URN}pulumi:providers:aws::aws-us-east-1",
    id="aws-us-east-1-0",
    type=AWS_PROVIDER,
    name="aws-us-east-1",
    parent=None,
    provider=None,
    custom=True,
    inputs={"region": "us-east-1", "defaultTags": json.dumps({"tags": {"owner": "o", "cost-center": "c"}})},
    outputs={},
)


def recorded(type_: str, name: str, inputs: dict) -> Rendering:
    resource = RecordedResource(
        urn=f"{URN}{type_}::{name}",
        id=f"{name}-0",
        type=type_,
        name=name,
        parent=None,
        provider=PROVIDER.urn,
        custom=True,
        inputs=inputs,
        outputs=dict(inputs),
    )
    return Rendering("inference-fleet", "prod", [PROVIDER, resource], {})


# --- unknowns and presence, as in a preview -------------------------------------------------------------


def test_a_value_known_only_after_up_makes_the_rule_wait_not_pass_or_fail() -> None:
    rendering = recorded(
        ECS_TASK_DEFINITION, "gateway", {"family": "gateway", "containerDefinitions": pulumi.output.Unknown()}
    )
    found = [v for v in evaluate(rendering).violations if v.policy == "image-pinned-by-digest"]
    assert [v.enforcement for v in found] == ["advisory"]
    assert "can't run policy 'image-pinned-by-digest' during preview" in found[0].message
    assert ".containerDefinitions can't be known during preview" in found[0].message


def test_a_health_check_id_known_only_after_up_still_counts_as_attached() -> None:
    rendering = recorded(
        ROUTE53_RECORD,
        "api-primary",
        {
            "name": "api.fleet.example.com",
            "type": "CNAME",
            "failoverRoutingPolicies": [{"type": "PRIMARY"}],
            "healthCheckId": pulumi.output.Unknown(),
        },
    )
    assert [v for v in evaluate(rendering).violations if v.policy == "failover-record-health-check"] == []


# --- config, reconciled as the CLI does ---------------------------------------------------------------------


def test_defaults_come_from_each_rules_schema_and_level() -> None:
    config = reconcile(POLICIES)
    assert config["internet-ingress-lb-ports-only"] == RuleConfig(
        EnforcementLevel.MANDATORY, {"allowedPorts": [80, 443]}
    )
    assert config["required-tags"].enforcement == EnforcementLevel.ADVISORY
    assert config["gpu-count-cap"].properties["maxGpus"]["prod"] == 64


def test_all_sets_every_level_then_a_rule_overrides_it(tmp_path: Path) -> None:
    path = tmp_path / "policy-config.json"
    path.write_text(
        json.dumps({"all": "advisory", "image-pinned-by-digest": {"enforcementLevel": "mandatory"}})
    )
    config = reconcile(POLICIES, load_config_file(path))
    assert config["image-pinned-by-digest"].enforcement == EnforcementLevel.MANDATORY
    assert {c.enforcement for name, c in config.items() if name != "image-pinned-by-digest"} == {
        EnforcementLevel.ADVISORY
    }


def test_a_property_override_keeps_the_rules_other_defaults() -> None:
    config = reconcile(POLICIES, {"allowed-regions": RuleConfig(None, {"allowedAwsRegions": ["eu-west-1"]})})
    assert config["allowed-regions"].properties["allowedAwsRegions"] == ["eu-west-1"]
    assert "us-central1" in config["allowed-regions"].properties["allowedGcpRegions"]
    assert config["allowed-regions"].enforcement == EnforcementLevel.MANDATORY


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"internet-ingress-lb-ports-only": {"allowedPorts": "443"}},
            'allowedPorts: expected array, got "443"',
        ),
        (
            {"internet-ingress-lb-ports-only": {"allowedPorts": [70000]}},
            "allowedPorts[0]: 70000 is above the maximum",
        ),
        ({"gpu-count-cap": {"maxGpus": {"prod": -1}}}, "maxGpus.prod: -1 is below the minimum 0"),
        ({"image-pined-by-digest": "advisory"}, "image-pined-by-digest: no such rule in the pack"),
        ({"image-pinned-by-digest": "sometimes"}, "'sometimes' is not an enforcement level"),
        # A misspelt setting would be ignored and the rule would keep its default: refused by name.
        (
            {"gpu-count-cap": {"maxGpu": {"prod": 128}}},
            "gpu-count-cap: maxGpu: no such setting; did you mean 'maxGpus'? settings: maxGpus",
        ),
        (
            {"s3-bucket-encrypted": {"enforcementLevel": "advisory", "allowed": True}},
            "s3-bucket-encrypted: allowed: no such setting; the rule has no settings",
        ),
    ],
)
def test_bad_policy_config_is_one_line_naming_rule_and_key(tmp_path: Path, given: dict, message: str) -> None:
    path = tmp_path / "policy-config.json"
    path.write_text(json.dumps(given))
    with pytest.raises(PolicyConfigError) as raised:
        reconcile(POLICIES, load_config_file(path))
    assert any(message in problem for problem in raised.value.problems), raised.value.problems


def test_a_disabled_rule_is_not_evaluated(render) -> None:
    result = evaluate(render("dev"), {"required-tags": EnforcementLevel.DISABLED})
    assert result.evaluated == len(POLICIES) - 1


# --- stack rules see the stack as the engine shows it ----------------------------------------------------------


def test_stack_rules_get_every_resource_with_its_parent_object_and_provider(render) -> None:
    rendering = render("prod")
    seen: list = []
    capture = StackValidationPolicy(
        name="capture", description="captures", validate=lambda args, report: seen.extend(args.resources)
    )
    evaluate(rendering, policies=[capture])
    by_urn = {r.urn: r for r in seen}
    assert seen[0].resource_type == STACK
    for resource in rendering.resources:
        policy_resource = by_urn[resource.urn]
        assert policy_resource.parent is by_urn[resource.parent]
        if resource.provider:
            assert policy_resource.provider.urn == resource.provider
    vpc = next(r for r in seen if r.resource_type == VPC)
    assert vpc.props["id"] == rendering.get(vpc.urn).id  # outputs carry the id, as the engine's state does
    assert vpc.parent.resource_type == "inference-fleet:network:RegionalNetwork"


# --- the pack boots as the engine starts it, and answers as the offline run does --------------------------------


def test_the_pack_starts_as_pulumi_preview_starts_it_and_agrees_with_the_offline_run() -> None:
    # What the engine runs for a Python pack (pulumi-analyzer-policy-python): the project's interpreter,
    # `-m pulumi.policy <engine> .`, in the pack's directory.
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=PROJECT_DIR / "policies",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            analyzer = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == "inference-fleet"
            assert sorted(p.name for p in info.policies) == sorted(p.name for p in POLICIES)

            task = {
                "family": "gateway",
                "containerDefinitions": json.dumps(
                    [{"name": "gateway", "image": "ghcr.io/berriai/litellm:latest"}]
                ),
            }
            properties, provider_properties = struct_pb2.Struct(), struct_pb2.Struct()
            json_format.ParseDict(task, properties)
            json_format.ParseDict(PROVIDER.inputs, provider_properties)
            provider = analyzer_pb2.AnalyzerProviderResource(
                type=PROVIDER.type, name=PROVIDER.name, urn=PROVIDER.urn, properties=provider_properties
            )
            answer = analyzer.Analyze(
                analyzer_pb2.AnalyzeRequest(
                    type=ECS_TASK_DEFINITION,
                    urn=f"{URN}{ECS_TASK_DEFINITION}::gateway",
                    name="gateway",
                    properties=properties,
                    provider=provider,
                ),
                timeout=30,
            )
    finally:
        process.kill()
        process.wait()
    engine = sorted((d.policyName, d.message) for d in answer.diagnostics)
    offline = sorted(
        (v.policy, v.message) for v in evaluate(recorded(ECS_TASK_DEFINITION, "gateway", task)).violations
    )
    assert engine == offline
    assert [name for name, _ in engine] == ["image-pinned-by-digest"]


def test_the_readme_lists_every_rule_of_the_pack_by_theme_and_level() -> None:
    from policies.pack import THEMES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {
        cells[0]: (cells[1], cells[2])
        for line in readme.splitlines()
        if line.startswith("| ")
        and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 4
        and cells[1] in THEMES
    }
    pack = {
        p.name: (theme, "mandatory" if p.enforcement_level == EnforcementLevel.MANDATORY else "advisory")
        for theme, policies in THEMES.items()
        for p in policies
    }
    assert rows == pack
    assert f"exits 1 on a mandatory violation. {len(POLICIES)} rules:" in readme
