"""The shipped stacks against the pack: clean as shipped, and a moving image tag in the prod stack file
stops `fleet plan` (exit 1) naming the rule and the ECS task definition."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.core.catalog.resource_types import ECS_TASK_DEFINITION
from fleet.policy_run import evaluate
from policies.pack import POLICIES

FLEET = str(Path(sys.executable).with_name("fleet"))


def fleet_plan(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLEET, "plan", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("stack", ["dev", "prod", "k8s-example"])
def test_shipped_stacks_render_without_a_mandatory_violation(render, stack: str) -> None:
    result = evaluate(render(stack))
    assert result.evaluated == len(POLICIES)
    assert [(v.policy, v.urn) for v in result.mandatory] == []


def test_prod_plan_reports_every_rule_evaluated_and_no_mandatory_violation(project_dir: Path) -> None:
    result = fleet_plan("--stack", "prod", "--format", "json", cwd=project_dir)
    assert result.returncode == 0, result.stderr
    policy = json.loads(result.stdout)["policy"]
    assert policy["evaluated"] >= 18
    assert [v for v in policy["violations"] if v["enforcement"] == "mandatory"] == []


def test_prod_stack_file_names_the_gateway_image_by_digest(project_dir: Path) -> None:
    stack = yaml.safe_load((project_dir / "Pulumi.prod.yaml").read_text())
    image = stack["config"]["inference-fleet:controlPlane"]["gateway"]["image"]
    assert "@sha256:" in image and len(image.rsplit("@sha256:", 1)[1]) == 64


def test_a_moving_tag_through_the_stack_config_names_the_rule_and_each_task_definition(
    render, stack_input
) -> None:
    prod = stack_input("prod")
    control_plane = json.loads(prod.config["inference-fleet:controlPlane"])
    control_plane["gateway"]["image"] = control_plane["gateway"]["image"].split("@")[0] + ":latest"
    rendering = render(prod, {"controlPlane": control_plane})
    found = [v for v in evaluate(rendering).mandatory if v.policy == "image-pinned-by-digest"]
    assert sorted({v.urn for v in found}) == sorted(r.urn for r in rendering.of_type(ECS_TASK_DEFINITION))
    assert all(":latest" in v.message for v in found)
    # Every container of the task runs the image: the gateway, its migrations, its region-health sidecar.
    named = {
        (v.urn, c)
        for v in found
        for c in ("gateway", "migrate", "region-health")
        if f"container {c!r}" in v.message
    }
    assert len(named) == 3 * len(rendering.of_type(ECS_TASK_DEFINITION))


def test_the_prod_stack_file_with_latest_makes_fleet_plan_exit_1_naming_rule_and_resource(
    project_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "project"
    shutil.copytree(
        project_dir,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "node_image", "tests", "bench", "*cache*", "__pycache__"
        ),
    )
    stack_file = copy / "Pulumi.prod.yaml"
    text = stack_file.read_text()
    image = yaml.safe_load(text)["config"]["inference-fleet:controlPlane"]["gateway"]["image"]
    stack_file.write_text(text.replace(image, image.split("@")[0] + ":latest"))

    result = fleet_plan("--stack", "prod", cwd=copy)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    named = [line for line in lines if "[mandatory] image-pinned-by-digest" in line]
    assert named and all(line.rstrip().endswith("-gateway") for line in named), named
    assert any(":latest" in line for line in lines)
