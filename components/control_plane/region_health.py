"""The region-health sidecar (functions/region_health) as the gateway task runs it: its container, and the
model backends it checks, read from the gateway's rendered LiteLLM config.

The sidecar runs from the gateway's own image (LiteLLM's, which has Python) with its package's modules in
the environment, so nothing is built or downloaded for it: the entry point writes them out as the package
and runs it. Its settings reach it through RegionHealthSettings, the dataclass it reads them back with.
Its port is reached by the ALB only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi

from components.core.functions import function_sources
from functions.region_health.settings import (
    REGION_HEALTH_LIVE_PATH,
    REGION_HEALTH_PATH,
    REGION_HEALTH_PORT,
    Backend,
    RegionHealthSettings,
)

__all__ = [
    "CONTAINER_NAME",
    "REGION_HEALTH_LIVE_PATH",
    "REGION_HEALTH_PATH",
    "REGION_HEALTH_PORT",
    "backends",
    "container",
]

CONTAINER_NAME = "region-health"
PACKAGE = "region_health"
CODE_ENV = "FLEET_REGION_HEALTH_CODE"
# The entry point: the package's modules (JSON in CODE_ENV, by file name) written to a fresh directory and
# its main module run, as `python -m region_health.region_health` would.
BOOTSTRAP = f"""import json, os, runpy, sys, tempfile
root = tempfile.mkdtemp()
os.mkdir(os.path.join(root, {PACKAGE!r}))
for name, text in json.loads(os.environ[{CODE_ENV!r}]).items():
    with open(os.path.join(root, {PACKAGE!r}, name), "w", encoding="utf-8") as module:
        module.write(text)
sys.path.insert(0, root)
runpy.run_module("{PACKAGE}.region_health", run_name="__main__", alter_sys=True)
"""

# Where each provider's API lives when a deployment names no api_base, and the environment variables
# LiteLLM reads to override it (litellm/llms/<provider>).
PROVIDER_API_BASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": ("https://api.openai.com/v1", ("OPENAI_BASE_URL", "OPENAI_API_BASE")),
    "anthropic": ("https://api.anthropic.com", ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE")),
    "together_ai": ("https://api.together.xyz/v1", ("TOGETHER_AI_API_BASE",)),
    "fireworks_ai": (
        "https://api.fireworks.ai/inference/v1",
        ("FIREWORKS_API_BASE", "FIREWORKS_AI_API_BASE"),
    ),
    "groq": ("https://api.groq.com/openai/v1", ("GROQ_API_BASE",)),
    "deepinfra": ("https://api.deepinfra.com/v1/openai", ("DEEPINFRA_API_BASE",)),
    "mistral": ("https://api.mistral.ai/v1", ("MISTRAL_API_BASE",)),
    "replicate": ("https://api.replicate.com/v1", ("REPLICATE_API_BASE",)),
    "lambda_ai": ("https://api.lambda.ai/v1", ("LAMBDA_API_BASE",)),
}


def backends(litellm_config: Mapping[str, Any]) -> tuple[Backend, ...]:
    """One per deployment of the rendered config: its name, base URL, and override variables."""
    found: list[Backend] = []
    for deployment in litellm_config.get("model_list", []):
        params = deployment.get("litellm_params", {})
        name = str((deployment.get("model_info") or {}).get("id") or deployment.get("model_name"))
        if params.get("api_base"):
            found.append(Backend(name, str(params["api_base"])))
            continue
        provider = str(params.get("model", "")).split("/", 1)[0]
        if provider in PROVIDER_API_BASES:
            url, env = PROVIDER_API_BASES[provider]
            found.append(Backend(name, url, env))
    return tuple(found)


def container(
    image: pulumi.Input[str],
    litellm_config: Mapping[str, Any],
    gateway_liveness_url: str,
    log_options: Mapping[str, str],
) -> dict[str, Any]:
    """The sidecar's container definition (essential: a task whose health cannot be told is replaced)."""
    settings = RegionHealthSettings(
        gateway_liveness_url=gateway_liveness_url, backends=backends(litellm_config)
    )
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        "entryPoint": ["python3", "-c", BOOTSTRAP],
        "portMappings": [{"containerPort": settings.port, "protocol": "tcp", "name": "region-health"}],
        "environment": [
            {"name": CODE_ENV, "value": json.dumps(function_sources(PACKAGE), sort_keys=True)},
            *({"name": name, "value": value} for name, value in settings.to_env().items()),
        ],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {**log_options, "awslogs-stream-prefix": CONTAINER_NAME},
        },
        "stopTimeout": 5,
    }
