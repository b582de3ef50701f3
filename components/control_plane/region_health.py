"""The region-health sidecar (functions/region_health) as the gateway task runs it: its container, and the
model backends it checks, read from the gateway's rendered LiteLLM config.

The sidecar runs from the gateway's own image (LiteLLM's, which has Python) with its code in the
environment, so nothing is built or downloaded for it. Its port is reached by the ALB only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pulumi

REGION_HEALTH_PORT = 4001
REGION_HEALTH_PATH = "/fleet/region-health"
REGION_HEALTH_LIVE_PATH = "/fleet/live"
CONTAINER_NAME = "region-health"
REFRESH_SECONDS = 5
CHECK_TIMEOUT_SECONDS = 2
CODE_FILE = Path(__file__).resolve().parents[2] / "functions" / "region_health" / "region_health.py"
CODE_ENV = "FLEET_REGION_HEALTH_CODE"

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


def backends(litellm_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per deployment of the rendered config: its name, base URL, and override variables."""
    found: list[dict[str, Any]] = []
    for deployment in litellm_config.get("model_list", []):
        params = deployment.get("litellm_params", {})
        name = str((deployment.get("model_info") or {}).get("id") or deployment.get("model_name"))
        if params.get("api_base"):
            found.append({"name": name, "url": str(params["api_base"]), "env": []})
            continue
        provider = str(params.get("model", "")).split("/", 1)[0]
        if provider in PROVIDER_API_BASES:
            url, env = PROVIDER_API_BASES[provider]
            found.append({"name": name, "url": url, "env": list(env)})
    return found


def container(
    image: pulumi.Input[str],
    litellm_config: Mapping[str, Any],
    gateway_port: int,
    log_options: Mapping[str, str],
) -> dict[str, Any]:
    """The sidecar's container definition (essential: a task whose health cannot be told is replaced)."""
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        "entryPoint": [
            "python3",
            "-c",
            f"import os; exec(compile(os.environ['{CODE_ENV}'], 'region_health.py', 'exec'))",
        ],
        "portMappings": [{"containerPort": REGION_HEALTH_PORT, "protocol": "tcp", "name": "region-health"}],
        "environment": [
            {"name": CODE_ENV, "value": CODE_FILE.read_text()},
            {"name": "REGION_HEALTH_PORT", "value": str(REGION_HEALTH_PORT)},
            {"name": "GATEWAY_LIVENESS_URL", "value": f"http://127.0.0.1:{gateway_port}/health/liveliness"},
            {"name": "FLEET_BACKENDS", "value": json.dumps(backends(litellm_config), sort_keys=True)},
            {"name": "REFRESH_SECONDS", "value": str(REFRESH_SECONDS)},
            {"name": "CHECK_TIMEOUT_SECONDS", "value": str(CHECK_TIMEOUT_SECONDS)},
        ],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {**log_options, "awslogs-stream-prefix": CONTAINER_NAME},
        },
        "stopTimeout": 5,
    }
