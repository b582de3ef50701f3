"""`fleet plan` as a user runs it: a fresh process, exit codes, the JSON contract, one line per bad value."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core.catalog.resource_types import VPC
from fleet.esc import STANDIN_PREFIX

FLEET = str(Path(sys.executable).with_name("fleet"))


def fleet_plan(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLEET, "plan", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def prod_plan(project_dir) -> tuple[dict[str, Any], str]:
    result = fleet_plan("--stack", "prod", "--format", "json", cwd=project_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stdout


def test_prod_plan_follows_the_json_contract(prod_plan):
    plan, _ = prod_plan
    assert set(plan) == {"stack", "project", "resources", "outputs", "policy", "budgets"}
    assert (plan["stack"], plan["project"]) == ("prod", "inference-fleet")
    assert set(plan["policy"]) == {"evaluated", "violations"}
    for resource in plan["resources"]:
        assert set(resource) == {
            "urn", "type", "name", "physicalName", "parent", "provider", "options", "inputs"
        }  # fmt: skip


def test_prod_plan_lists_both_networks_under_distinct_providers(prod_plan):
    plan, _ = prod_plan
    vpcs = [r for r in plan["resources"] if r["type"] == VPC]
    assert sorted(v["name"] for v in vpcs) == ["network-us-east-1-vpc", "network-us-west-2-vpc"]
    providers = {v["provider"] for v in vpcs}
    assert len(providers) == 2
    assert {p.rsplit("::", 1)[-1] for p in providers} == {"aws-us-east-1", "aws-us-west-2"}


def test_prod_plan_shows_secrets_only_as_redacted(prod_plan):
    _, text = prod_plan
    assert STANDIN_PREFIX not in text
    assert "placeholder-set-with-esc-env-set" not in text


def test_dev_plan_renders_one_region_as_a_table(project_dir):
    result = fleet_plan("--stack", "dev", cwd=project_dir)
    assert result.returncode == 0, result.stderr
    assert "network-us-east-1 (RegionalNetwork)" in result.stdout
    assert "us-west-2" not in result.stdout
    assert result.stdout.startswith("inference-fleet/dev: ")


def test_out_writes_the_plan_to_a_file(project_dir, tmp_path):
    out = tmp_path / "plan.json"
    result = fleet_plan("--stack", "dev", "--format", "json", "--out", str(out), cwd=project_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert json.loads(out.read_text())["stack"] == "dev"


@pytest.fixture
def project_copy(project_dir, tmp_path) -> Path:
    """The project without its stacks, to add a bad one to."""
    shutil.copy(project_dir / "Pulumi.yaml", tmp_path)
    shutil.copy(project_dir / "__main__.py", tmp_path)
    shutil.copytree(project_dir / "esc", tmp_path / "esc")
    return tmp_path


def write_stack(directory: Path, project_dir: Path, changes: dict[str, Any]) -> None:
    stack = yaml.safe_load((project_dir / "Pulumi.prod.yaml").read_text())
    stack["config"].update(changes)
    (directory / "Pulumi.bad.yaml").write_text(yaml.safe_dump(stack))


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        (
            {
                "inference-fleet:network": {
                    "cidrs": {"us-east-1": "10.10.0.0/16", "us-west-2": "10.20.0.0/16"},
                    "availabilityZones": "three",
                }
            },
            "error: inference-fleet:network.availabilityZones: got 'three'; expected an integer",
        ),
        (
            {"inference-fleet:standbyRegion": "mars-north-1"},
            "error: inference-fleet:standbyRegion: got 'mars-north-1'; allowed: ap-northeast-1, ",
        ),
        (
            {"inference-fleet:standbyRegion": "us-east-1"},
            "error: inference-fleet:standbyRegion: got 'us-east-1', the same as primaryRegion; "
            "the standby must be another region",
        ),
        ({"inference-fleet:bogusKey": "x"}, "error: inference-fleet:bogusKey: unknown key; allowed: tier, "),
    ],
    ids=["wrong type", "unknown region", "same primary and standby", "unknown key"],
)
def test_bad_stack_file_exits_2_with_one_line_naming_the_key(project_dir, project_copy, changes, line):
    write_stack(project_copy, project_dir, changes)
    result = fleet_plan("--stack", "bad", cwd=project_copy)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(line)


def test_unknown_stack_exits_2(project_dir):
    result = fleet_plan("--stack", "staging", cwd=project_dir)
    assert result.returncode == 2
    assert (
        result.stderr
        == "error: --stack staging: no Pulumi.staging.yaml; stacks here: dev, k8s-example, prod\n"
    )


@pytest.mark.parametrize(
    ("failover", "key"),
    [
        ({"rtoSeconds": 40}, "controlPlane.failover.rtoSeconds"),
        ({"regionLossRtoSeconds": 240}, "controlPlane.failover.regionLossRtoSeconds"),
        ({"rpoSeconds": 25}, "controlPlane.failover.rpoSeconds"),
    ],
    ids=["dns failover target", "region-loss target", "rpo target"],
)
def test_a_stack_that_cannot_meet_its_failover_targets_exits_2_naming_the_key(
    project_dir, project_copy, failover, key
):
    control_plane = yaml.safe_load((project_dir / "Pulumi.prod.yaml").read_text())["config"][
        "inference-fleet:controlPlane"
    ]
    control_plane["failover"].update(failover)
    write_stack(project_copy, project_dir, {"inference-fleet:controlPlane": control_plane})
    result = fleet_plan("--stack", "bad", cwd=project_copy)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: inference-fleet:{key}: got ")
