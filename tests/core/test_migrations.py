"""CHANGELOG.md's stack-file migrations hold: a prod stack file as it was at commit 74b6176 (batch jobs),
with today's ESC environments, is refused with exactly the lines the changelog quotes, all in one run, and
the changelog's fixes make it load."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import yaml

from components.core.config import ConfigError
from components.stack import parse_stack_config
from fleet.stackfile import load_stack

PROJECT_DIR = Path(__file__).resolve().parents[2]
OLD_PROD = yaml.safe_load((Path(__file__).parent / "data" / "Pulumi.prod-74b6176.yaml").read_text())
CHANGELOG = (PROJECT_DIR / "CHANGELOG.md").read_text()
NS = "inference-fleet"


def problems(tmp_path: Path, doc: dict[str, Any]) -> list[str]:
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path)
    shutil.copytree(PROJECT_DIR / "esc", tmp_path / "esc", dirs_exist_ok=True)
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    stack = load_stack(tmp_path, "prod")
    try:
        parse_stack_config(stack.config, set(stack.secret_keys), "prod")
    except ConfigError as e:
        return e.problems
    return []


def test_an_old_prod_file_gets_every_line_the_changelog_quotes(tmp_path):
    found = problems(tmp_path, OLD_PROD)
    assert len(found) == 7, found
    for line in found:
        assert line in CHANGELOG, line


def test_the_changelogs_fixes_make_the_old_file_load(tmp_path):
    doc = copy.deepcopy(OLD_PROD)
    config = doc["config"]
    cp = config[f"{NS}:controlPlane"]
    config[f"{NS}:logRetentionDays"] = cp.pop("logRetentionDays")
    model = "meta-llama/Llama-3.1-8B-Instruct"
    config[f"{NS}:modelStore"] = {"models": [{"name": model}]}
    job_model = config[f"{NS}:batchJobs"][0]["model"]
    job_model.pop("uri")
    job_model["source"] = model
    config[f"{NS}:batchJobs"][0]["queue"].pop("maxConcurrentDispatches")
    cp["dns"]["ttlSeconds"] = 10
    cp["failover"].pop("checkerRegions")
    cp["failover"]["rtoSeconds"] = 130
    config[f"{NS}:alerts"] = {"subscriptions": [{"protocol": "email", "endpoint": "oncall@example.com"}]}
    assert problems(tmp_path, doc) == []


def test_the_rto_line_the_changelog_quotes_is_the_one_after_the_checker_fix(tmp_path):
    doc = copy.deepcopy(OLD_PROD)
    doc["config"][f"{NS}:controlPlane"]["failover"].pop("checkerRegions")
    line = next(p for p in problems(tmp_path, doc) if ".rtoSeconds" in p)
    assert line in CHANGELOG


def test_a_retired_batch_alert_key_names_what_replaced_it(tmp_path):
    doc = copy.deepcopy(OLD_PROD)
    doc["config"][f"{NS}:batchJobs"][0]["alerts"]["coldStartsPerHour"] = 10
    line = next(p for p in problems(tmp_path, doc) if "coldStartsPerHour" in p)
    assert "set coldStartP95Seconds" in line
    assert line in CHANGELOG
