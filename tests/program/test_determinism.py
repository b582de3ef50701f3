"""Two renders of the same commit are byte-identical: a plan diff means the program changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from components.core.catalog.resource_types import ECS_SERVICE, LAMBDA_FUNCTION, RDS_CLUSTER

FLEET = str(Path(sys.executable).with_name("fleet"))


def plan_text(project_dir: Path, stack: str) -> str:
    result = subprocess.run(
        [FLEET, "plan", "--stack", stack, "--format", "json"],
        cwd=project_dir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_two_renders_of_prod_are_byte_identical(project_dir):
    first, second = plan_text(project_dir, "prod"), plan_text(project_dir, "prod")
    assert first == second


def test_assets_appear_as_path_and_content_digest(project_dir):
    plan = json.loads(plan_text(project_dir, "prod"))
    function = next(
        r for r in plan["resources"] if (r["type"], r["name"]) == (LAMBDA_FUNCTION, "promotion-function")
    )
    handler = function["inputs"]["code"]["archive"]["failover_prober/handler.py"]["asset"]
    assert handler["path"] == "functions/failover_prober/handler.py"
    assert len(handler["sha256"]) == 64
    assert "object at 0x" not in json.dumps(plan)


def test_resource_options_reach_the_plan(project_dir):
    plan = json.loads(plan_text(project_dir, "prod"))
    by_name = {(r["type"], r["name"]): r for r in plan["resources"]}
    service = by_name[(ECS_SERVICE, "control-plane-us-east-1-gateway")]
    assert service["options"]["ignoreChanges"] == ["desiredCount"]
    assert service["options"]["dependsOn"] == [
        "urn:pulumi:prod::inference-fleet::inference-fleet:control_plane:RegionalControlPlane$"
        "aws:lb/listener:Listener::control-plane-us-east-1-https",
        "urn:pulumi:prod::inference-fleet::inference-fleet:control_plane:RegionalControlPlane$"
        "aws:secretsmanager/secretVersion:SecretVersion::control-plane-us-east-1-gateway-secret",
    ]
    secondary = by_name[(RDS_CLUSTER, "data-us-west-2")]
    assert secondary["options"]["ignoreChanges"] == ["replicationSourceIdentifier", "engineVersion"]
    assert secondary["options"]["protect"] is True
    assert secondary["physicalName"].startswith("data-us-west-2-")
