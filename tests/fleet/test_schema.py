"""`fleet schema`: the JSON Schema editors check stack files with, generated from the config models, checked
here with a JSON Schema validator (jsonschema, Draft 2020-12)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from fleet.cli import main
from fleet.schema import SCHEMA_FILE, schema_text, stack_file_schema

ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted(ROOT.glob("Pulumi.*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = stack_file_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.Draft202012Validator, doc: dict[str, Any]) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc))


def test_the_committed_schema_is_the_one_the_models_make(tmp_path, capsys):
    """stack.schema.json changes with the models, on purpose: `uv run fleet schema --out stack.schema.json`."""
    assert (ROOT / SCHEMA_FILE).read_text() == schema_text()
    assert main(["schema", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(schema_text())


@pytest.mark.parametrize("path", STACKS, ids=[p.name for p in STACKS])
def test_every_shipped_stack_file_validates_and_names_the_schema(validator, path):
    text = path.read_text()
    assert text.startswith(f"# yaml-language-server: $schema={SCHEMA_FILE}\n")
    assert errors(validator, yaml.safe_load(text)) == []


PROD = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())


def changed(**config: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PROD)
    doc["config"].update(config)
    return doc


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            changed(
                **{
                    "inference-fleet:gpuPools": [
                        {**PROD["config"]["inference-fleet:gpuPools"][0], "maxSze": 3}
                    ]
                }
            ),
            "config/inference-fleet:gpuPools/0: Additional properties are not allowed ('maxSze' was unexpected)",
        ),
        (
            changed(**{"inference-fleet:primaryRegoin": "us-east-1"}),
            "config: 'inference-fleet:primaryRegoin' does not match any of the regexes",
        ),
        (
            changed(**{"inferense-fleet:tier": "prod"}),
            "config: 'inferense-fleet:tier' does not match any of the regexes",
        ),
        (
            changed(**{"inference-fleet:tier": "staging"}),
            "config/inference-fleet:tier: 'staging' is not one of",
        ),
        (
            changed(**{"inference-fleet:standbyRegion": "mars-1"}),
            "config/inference-fleet:standbyRegion: 'mars-1'",
        ),
        (
            changed(**{"inference-fleet:logRetentionDays": 45}),
            "config/inference-fleet:logRetentionDays: 45 is not",
        ),
        (
            changed(**{"inference-fleet:gatewayMasterKey": "plain"}),
            "config/inference-fleet:gatewayMasterKey: 'plain'",
        ),
    ],
    ids=[
        "misspelt pool key",
        "misspelt root key",
        "misspelt namespace",
        "tier",
        "region",
        "retention",
        "secret",
    ],
)
def test_a_misspelt_key_or_a_value_out_of_its_enum_is_refused(validator, doc, expected):
    found = errors(validator, doc)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_the_schema_carries_descriptions_enums_defaults_and_examples():
    schema = stack_file_schema()
    config = schema["properties"]["config"]["properties"]
    assert config["inference-fleet:tier"]["enum"] == ["dev", "prod"]
    assert config["inference-fleet:domain"]["examples"] == ["fleet.example.com"]
    assert config["inference-fleet:logRetentionDays"]["default"] == 30
    assert "us-west-2" in config["inference-fleet:primaryRegion"]["enum"]
    pools = schema["$defs"]["GpuPoolConfig"]["properties"]
    assert "g6e.xlarge" in pools["instanceTypes"]["items"]["enum"]
    assert pools["onDemandBase"]["description"].endswith("default in prod: 1")
    database = schema["$defs"]["DatabaseConfig"]["properties"]
    assert 'with a standbyRegion: "db.r7g.large"' in database["instanceClass"]["description"]
    checkers = schema["$defs"]["FailoverConfig"]["properties"]["checkerRegions"]
    assert checkers["default"] is None and "neither the primary nor the standby" in checkers["description"]
    gateway = schema["$defs"]["GatewayConfig"]["properties"]
    assert gateway["allowRequestsWithoutDatabase"]["description"].endswith("default in prod: false")


def test_the_readme_shows_the_modeline():
    assert f"# yaml-language-server: $schema={SCHEMA_FILE}" in (ROOT / "README.md").read_text()
