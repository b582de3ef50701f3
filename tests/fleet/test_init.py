"""`fleet init NAME`: a stack of one's own from a few flags, written into a copy of the project, checked by
the loader before anything is written, and rendered as `fleet plan` renders it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from components.stack import parse_stack_config
from fleet.cli import main
from fleet.schema import stack_file_schema
from fleet.stackfile import load_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project like ours (program and ESC definitions), with no stack of the new name."""
    for item in ("Pulumi.yaml", "__main__.py", "components", "functions"):
        (tmp_path / item).symlink_to(ROOT / item, target_is_directory=(ROOT / item).is_dir())
    shutil.copytree(ROOT / "esc", tmp_path / "esc")
    return tmp_path


def test_init_two_regions_renders_with_no_policy_violation(project, capsys):
    code = main(
        ["init", "acme", "--primary-region", "us-west-2", "--standby-region", "eu-west-1", "-C", str(project)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "wrote Pulumi.acme.yaml" in out and "wrote esc/acme.yaml" in out
    assert re.search(r"policy: \d+ rules evaluated, 0 violations", out), out
    stack = yaml.safe_load((project / "Pulumi.acme.yaml").read_text())
    config = stack["config"]
    assert stack["environment"] == ["inference-fleet/common", "inference-fleet/acme"]
    assert (config["inference-fleet:tier"], config["inference-fleet:standbyRegion"]) == ("prod", "eu-west-1")
    assert [p["region"] for p in config["inference-fleet:gpuPools"]] == ["us-west-2", "eu-west-1"]
    # eu-west-1 offers no g6e: only types the region offers are written.
    assert all("g6e.xlarge" not in p["instanceTypes"] for p in config["inference-fleet:gpuPools"])
    jsonschema.validate(stack, stack_file_schema())


def test_every_key_and_secret_written_carries_a_comment(project, capsys):
    assert main(["init", "demo", "--no-render", "-C", str(project)]) == 0
    text = (project / "Pulumi.demo.yaml").read_text().splitlines()
    keys = [i for i, line in enumerate(text) if line.startswith("  inference-fleet:")]
    assert keys and all(text[i - 1].lstrip().startswith("#") for i in keys)
    esc = yaml.safe_load((project / "esc" / "demo.yaml").read_text())["values"]
    # A dev stack with one pool: the pool's and the store's secrets, mapped into the stack's config.
    assert set(esc["secrets"]) >= {
        "poolApiKey",
        "nodeRedisPassword",
        "modelStoreAuthToken",
        "gatewayMasterKey",
    }
    assert set(esc["pulumiConfig"]) == {f"inference-fleet:{key}" for key in esc["secrets"]}
    loaded = load_stack(project, "demo")
    config = parse_stack_config(loaded.config, set(loaded.secret_keys), "demo")
    assert (config.tier, config.control_plane_regions, config.gcp_project) == ("dev", ["us-east-1"], "")


def test_a_stack_without_pools_needs_no_pool_secrets(project, capsys):
    assert main(["init", "edge", "--no-pools", "--no-render", "-C", str(project)]) == 0
    secrets = yaml.safe_load((project / "esc" / "edge.yaml").read_text())["values"]["secrets"]
    assert not {"poolApiKey", "nodeRedisPassword", "controllerRedisPassword", "modelStoreAuthToken"} & set(
        secrets
    )
    loaded = load_stack(project, "edge")
    parse_stack_config(loaded.config, set(loaded.secret_keys), "edge")


def test_what_the_loader_refuses_is_said_by_key_and_nothing_is_written(project, capsys):
    code = main(["init", "acme", "--standby-region", "us-east-1", "-C", str(project)])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: inference-fleet:standbyRegion: got 'us-east-1', the same as primaryRegion; the standby must be "
        "another region"
    ]
    assert not (project / "Pulumi.acme.yaml").exists() and not (project / "esc" / "acme.yaml").exists()


def test_a_bad_name_or_an_existing_stack_is_refused(project, capsys):
    assert main(["init", "Acme", "--no-render", "-C", str(project)]) == 2
    assert capsys.readouterr().err.startswith("error: NAME: got 'Acme'; 2-20 lower-case letters")
    assert main(["init", "demo", "--no-render", "-C", str(project)]) == 0
    capsys.readouterr()
    assert main(["init", "demo", "--no-render", "-C", str(project)]) == 2
    assert (
        f"error: {project / 'Pulumi.demo.yaml'}: exists; give --force to overwrite it"
        in capsys.readouterr().err
    )
    assert main(["init", "demo", "--no-render", "--force", "-C", str(project)]) == 0
