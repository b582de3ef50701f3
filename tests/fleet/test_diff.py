"""`fleet diff`: two renders compared as `pulumi preview` would sort them: added, removed, updated in place,
replaced (a property the provider cannot update), with protected resources that would be deleted called
out."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.core.catalog.resource_types import (
    KMS_KEY,
    RDS_CLUSTER,
    S3_BUCKET,
    SNS_TOPIC,
    SSM_DOCUMENT,
    SUBNET,
    VPC,
)
from fleet.cli import main
from fleet.diff import Side, compare, diff_markdown, diff_text

ROOT = Path(__file__).resolve().parents[2]
# What a render of a commit needs: the program, its tools and policy pack, the agent, the stacks and ESC.
TREE = ("Pulumi.yaml", "Pulumi.dev.yaml", "__main__.py", "components", "functions", "fleet", "policies",
        "node_image", "esc")  # fmt: skip
STACK = "urn:pulumi:prod::inference-fleet::"


def resource(type_: str, name: str, inputs: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {
        "urn": f"{STACK}{type_}::{name}",
        "type": type_,
        "name": name,
        "parent": None,
        "provider": f"{STACK}pulumi:providers:aws::aws-us-east-1",
        "options": options,
        "inputs": inputs,
    }


def plan(*resources: dict[str, Any]) -> Side:
    return Side("plan", {"resources": list(resources)})


CLUSTER = RDS_CLUSTER


def test_a_change_the_provider_cannot_make_in_place_replaces_and_a_protected_one_is_called_out():
    old = plan(
        resource(
            CLUSTER, "data-us-east-1", {"storageEncrypted": True, "backupRetentionPeriod": 7}, protect=True
        ),
        resource(SNS_TOPIC, "alerts", {"name": "fleet-alerts", "tags": {"a": "1"}}),
        resource(KMS_KEY, "data-key", {"description": "k"}, protect=True),
        resource(S3_BUCKET, "old-name", {"bucket": "b"}),
    )
    new = plan(
        resource(
            CLUSTER, "data-us-east-1", {"storageEncrypted": False, "backupRetentionPeriod": 14}, protect=True
        ),
        resource(SNS_TOPIC, "alerts", {"name": "fleet-alerts", "tags": {"a": "2"}}),
        resource(VPC, "vpc", {"cidrBlock": "10.0.0.0/16"}),
        # Renamed, with an alias to its old name: the same bucket, not a new one.
        resource(S3_BUCKET, "new-name", {"bucket": "b"}, aliases=[{"spec": {"name": "old-name"}}]),
    )
    diff = compare(old, new)
    (replaced,) = diff.of("replaced")
    assert (replaced.type, replaced.forcing, replaced.protected) == (CLUSTER, ["storageEncrypted"], True)
    assert set(replaced.paths) == {"storageEncrypted", "backupRetentionPeriod"}
    (updated,) = diff.of("updated")
    assert (updated.name, list(updated.paths)) == ("alerts", ["tags.a"])
    assert [c.name for c in diff.of("added")] == ["vpc"]
    assert [(c.name, c.protected) for c in diff.of("removed")] == [("data-key", True)]
    assert [c.name for c in diff.protected_at_risk] == ["data-us-east-1", "data-key"]
    text = diff_text(diff)
    assert "storageEncrypted: true -> false  forces replacement" in text
    assert "backupRetentionPeriod: 7 -> 14\n" in text
    assert "[PROTECTED: pulumi up refuses to delete it" in text
    assert "> [!WARNING]" in diff_markdown(diff)


def test_a_type_whose_replacement_rules_are_not_known_says_so():
    old = plan(resource(SSM_DOCUMENT, "doc", {"content": "a"}))
    new = plan(resource(SSM_DOCUMENT, "doc", {"content": "b"}))
    (change,) = compare(old, new).changes
    assert (change.kind, change.unsure) == ("updated", True)


def test_a_new_provider_replaces_the_resource():
    old = plan(resource(SNS_TOPIC, "alerts", {"name": "t"}))
    moved = resource(SNS_TOPIC, "alerts", {"name": "t"})
    moved["provider"] = f"{STACK}pulumi:providers:aws::aws-us-west-2"
    (change,) = compare(old, plan(moved)).changes
    assert (change.kind, change.forcing) == ("replaced", ["provider aws-us-east-1 -> aws-us-west-2"])


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """This project's program committed in a git repository of its own (a commit to diff against)."""
    for item in TREE:
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        else:
            shutil.copy(source, tmp_path / item)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return tmp_path


def test_the_working_stack_against_a_commit_shows_a_replaced_vpc(repo, capsys):
    """A new VPC range: the VPC and its subnets are replaced (a VPC's CIDR is fixed at creation)."""
    stack = repo / "Pulumi.dev.yaml"
    stack.write_text(stack.read_text().replace("us-east-1: 10.110.0.0/16", "us-east-1: 10.111.0.0/16"))
    out = repo / "diff.json"
    assert main(["diff", "HEAD:dev", "dev", "--format", "json", "--out", str(out), "-C", str(repo)]) == 0
    diff = json.loads(out.read_text())
    vpcs = [c for c in diff["replaced"] if c["type"] == VPC]
    assert vpcs == [
        {
            "type": VPC,
            "name": "network-us-east-1-vpc",
            "changes": {"cidrBlock": {"old": "10.110.0.0/16", "new": "10.111.0.0/16"}},
            "replacedBecause": ["cidrBlock"],
        }
    ]
    assert {c["type"] for c in diff["replaced"]} >= {SUBNET}
    assert diff["added"] == [] and diff["removed"] == [] and diff["protectedAtRisk"] == []


def test_a_commit_that_does_not_exist_is_one_line(repo, capsys):
    assert main(["diff", "no-such-ref:dev", "dev", "-C", str(repo)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no-such-ref:dev: no commit 'no-such-ref' here (")
