"""The README's per-key budget example is a request LiteLLM 1.104 takes: every field is one of its key
request model's, the values pass its validation, and the models it names are routes of the prod stack."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from litellm.proxy._types import GenerateKeyRequest

from components.core.catalog.resource_types import S3_OBJECT

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_key_request() -> dict[str, object]:
    match = re.search(r"/key/generate\" \\\n.*?-d '(\{.*?\})'", README.read_text(), re.S)
    assert match, "the README's /key/generate example"
    return json.loads(match.group(1))


def test_the_readme_key_request_is_one_litellm_takes(render) -> None:
    body = readme_key_request()
    assert set(body) <= set(GenerateKeyRequest.model_fields)
    request = GenerateKeyRequest.model_validate(body)
    assert (request.max_budget, request.budget_duration) == (25, "30d")
    assert (request.rpm_limit, request.tpm_limit, request.max_parallel_requests) == (600, 200000, 8)
    served = {
        deployment["model_name"]
        for config in render("prod").of_type(S3_OBJECT)
        if config.name.endswith("-litellm-config")
        for deployment in yaml.safe_load(config.inputs["content"])["model_list"]
    }
    assert set(request.models or []) <= served
