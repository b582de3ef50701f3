"""Who may do what from CI: a pull request's preview never holds the deploy role's credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def steps(workflow: str, job: str) -> list[dict[str, Any]]:
    return yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text())["jobs"][job]["steps"]


def esc_environment(job_steps: list[dict[str, Any]]) -> str:
    (step,) = [s for s in job_steps if str(s.get("uses", "")).startswith("pulumi/esc-action")]
    return step["with"]["environment"]


def role_of(environment: str) -> str:
    values = yaml.safe_load((ROOT / "esc" / f"{environment}.yaml").read_text())["values"]
    return values["aws"]["login"]["fn::open::aws-login"]["oidc"]["roleArn"]


def test_the_pull_request_preview_runs_with_the_read_only_role_and_the_deploy_with_the_deploy_role():
    preview, deploy = steps("preview.yml", "preview"), steps("deploy.yml", "deploy")
    assert esc_environment(preview).endswith("/inference-fleet/${{ matrix.stack }}-preview")
    assert esc_environment(deploy).endswith("/inference-fleet/${{ matrix.stack }}-deploy")
    for stack in ("dev", "prod"):
        assert role_of(f"{stack}-preview").endswith(f":role/inference-fleet-{stack}-previewer")
        assert role_of(f"{stack}-deploy").endswith(f":role/inference-fleet-{stack}-deployer")
    # The preview asks Pulumi Cloud for its own team's token, not one that could open the deploy role.
    (login,) = [s for s in preview if str(s.get("uses", "")).startswith("pulumi/auth-actions")]
    assert login["with"]["scope"] == "team:${{ vars.PULUMI_PREVIEW_TEAM }}"


def test_the_stacks_own_environments_hold_no_cloud_login():
    for stack in ("dev", "prod"):
        imported = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["environment"]
        for environment in imported:
            text = (ROOT / "esc" / f"{environment.split('/', 1)[1]}.yaml").read_text()
            assert "fn::open::aws-login" not in text and "fn::open::gcp-login" not in text, environment


def test_the_pull_request_gets_the_fleet_diff_against_its_base_beside_the_preview():
    offline, preview = steps("preview.yml", "offline"), steps("preview.yml", "preview")
    assert offline[0]["with"]["fetch-depth"] == 0  # the base branch is there to render
    (diff,) = [s for s in offline if "fleet diff" in str(s.get("run", ""))]
    assert '"origin/$BASE_REF:$stack" "$stack" --format markdown' in diff["run"]
    uploaded = [s for s in offline if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert "diff-*.md" in uploaded[0]["with"]["path"]
    names = [str(s.get("uses", "")) for s in preview]
    post = next(i for i, name in enumerate(names) if name.startswith("actions/github-script"))
    run_preview = next(i for i, name in enumerate(names) if name.startswith("pulumi/actions"))
    assert post < run_preview  # posted even when the preview fails
    assert "diff-${process.env.STACK}.md" in preview[post]["with"]["script"]
