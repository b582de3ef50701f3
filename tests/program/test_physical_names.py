"""Every name the program declares, or the engine would generate, is one the cloud's API accepts.

The mocks check each name against its API's rule as the program registers it (fleet/mocks); these tests
show the shipped stacks pass that check as a whole, that auto-names look as the engine makes them, and
that a name over its limit stops the render with exit 2 naming the resource.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.core.catalog.resource_types import (
    IAM_ROLE,
    K8S_SERVICE,
    LOAD_BALANCER,
    S3_BUCKET,
    TARGET_GROUP,
)
from fleet.harness import PhysicalNameError
from fleet.harness import render as harness_render
from fleet.mocks.registry import REGISTRY
from fleet.stackfile import load_stack

FLEET = str(Path(sys.executable).with_name("fleet"))


@pytest.mark.parametrize("stack", ["dev", "prod", "k8s-example"])
def test_no_name_exceeds_its_api_limit(render, stack):
    rendering = render(stack)
    checked = 0
    for resource in rendering.resources:
        spec = REGISTRY.get(resource.type)
        if not resource.custom or resource.type.startswith("pulumi:providers:"):
            continue
        assert spec is not None, f"{resource.type} is not registered with a name rule"
        if resource.physical_name is None or spec.rule is None:
            continue
        assert spec.rule.problem(resource.physical_name) is None, (resource.name, resource.physical_name)
        checked += 1
    assert checked >= 30  # the load balancers, roles, buckets, clusters ... all had a name to check


def test_auto_names_are_the_logical_name_and_seven_hex_digits(render):
    prod = render("prod")
    role = prod.one(IAM_ROLE, "control-plane-us-east-1-gateway-task")
    assert re.fullmatch(r"control-plane-us-east-1-gateway-task-[0-9a-f]{7}", role.physical_name or "")
    bucket = prod.one(S3_BUCKET, "control-plane-us-east-1-bucket")
    assert bucket.outputs["bucket"] == bucket.physical_name == bucket.id


def test_load_balancer_names_are_explicit_short_and_carry_stack_and_region(render):
    prod = render("prod")
    gateway = [r for r in prod.of_type(LOAD_BALANCER) if r.name.startswith("control-plane-")]
    assert sorted(r.physical_name or "" for r in gateway) == [
        "fleet-prod-use1-gateway",
        "fleet-prod-usw2-gateway",
    ]
    groups = [r for r in prod.of_type(TARGET_GROUP) if r.name.startswith("control-plane-")]
    names = [g.physical_name or "" for g in groups]
    assert all(re.fullmatch(r"fleet-prod-(use1|usw2)-(gateway|health)-[0-9a-f]{4}", g) for g in names), names
    assert all(len(g) <= 32 for g in names)
    # The GPU pools' internal load balancers are auto-named from the pool (tests/gpu_pools).


def test_an_over_long_auto_name_is_refused_naming_the_resource(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: demo\nruntime: python\n")
    (tmp_path / "Pulumi.test.yaml").write_text("config: {}\n")
    (tmp_path / "__main__.py").write_text(
        "import pulumi, pulumi_aws as aws\n"
        "p = aws.Provider('aws-eu', region='eu-west-1')\n"
        "aws.lb.TargetGroup('inference-gateway-targets', port=80, protocol='HTTP',\n"
        "                   opts=pulumi.ResourceOptions(provider=p))\n"
    )
    with pytest.raises(PhysicalNameError) as raised:
        harness_render(load_stack(tmp_path, "test"))
    (problem,) = raised.value.problems
    assert str(problem).startswith(
        "inference-gateway-targets (aws:lb/targetGroup:TargetGroup): name 'inference-gateway-targets-"
    )
    assert str(problem).endswith("is 33 characters; elbv2 CreateTargetGroup Name takes 1-32 characters")


def _stack_named(project_dir: Path, tmp_path: Path, stack: str) -> subprocess.CompletedProcess[str]:
    """`fleet plan` of the prod stack file copied under another stack name."""
    for item in ("Pulumi.yaml", "__main__.py", "esc", "components", "functions"):
        source = project_dir / item
        (tmp_path / item).symlink_to(source, target_is_directory=source.is_dir())
    shutil.copy(project_dir / "Pulumi.prod.yaml", tmp_path / f"Pulumi.{stack}.yaml")
    return subprocess.run(
        [FLEET, "plan", "--stack", stack, "-C", str(tmp_path), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_stack_whose_names_overflow_exits_2_naming_the_resource(project_dir, tmp_path):
    """A long stack name makes the explicit function names too long for the API."""
    result = _stack_named(project_dir, tmp_path, "prod-eu-canary-and-a-longer-name")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert (
        "error: promotion-function (aws:lambda/function:Function): name "
        "'inference-fleet-prod-eu-canary-and-a-longer-name-aurora-promotion' is 65 characters; lambda "
        "CreateFunction FunctionName (a bare name) takes 1-64 characters"
    ) in lines
    assert "Traceback" not in result.stderr


def test_load_balancer_names_over_the_limit_carry_the_stacks_digest(project_dir, tmp_path):
    """elbv2's 32 characters: a stack name too long for them is replaced by its digest in those names only
    (dev's and prod's names fit and never change)."""
    result = _stack_named(project_dir, tmp_path, "prod-eu-canary")
    assert result.returncode == 0, result.stderr
    names = {r["name"]: r["physicalName"] for r in json.loads(result.stdout)["resources"]}
    digest = hashlib.sha256(b"prod-eu-canary").hexdigest()[:6]
    assert names["control-plane-us-east-1-alb"] == f"fleet-{digest}-use1-gateway"
    assert re.fullmatch(rf"fleet-{digest}-use1-gateway-[0-9a-f]{{4}}", names["control-plane-us-east-1-tg"])
    # Names that fit keep the stack's own name.
    assert names["alerts-us-east-1"] == "fleet-prod-eu-canary-use1-alerts"


def test_kubernetes_objects_are_named_as_their_kinds_allow(render):
    """Kubernetes names by kind: a Service's is an RFC 1035 label, a namespace's a DNS label, the rest DNS
    subdomains; pulumi-kubernetes auto-names with eight of [a-z0-9]."""
    rendering = render("k8s-example")
    names = {
        r.type.rsplit(":", 1)[1]: r.physical_name
        for r in rendering.resources
        if r.type.startswith("kubernetes:")
    }
    assert names["Service"] == "llama-8b-k8s"
    assert names["Namespace"] == "fleet-k8s-example"
    assert re.fullmatch(r"k8s-gpu-east-llama-8b-k8s-agent-[a-z0-9]{8}", names["ConfigMap"] or "")
    service_rule = REGISTRY[K8S_SERVICE].rule
    assert service_rule is not None and "a letter first" in (service_rule.problem("8b-llama") or "")
