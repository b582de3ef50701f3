"""The region-health sidecar (functions/region_health) as the gateway task runs it: its container, the
container that registers its gateway key first, the deployments it completes through (read from the
gateway's rendered LiteLLM config), and its key.

Both run from the gateway's own image (LiteLLM's, which has Python and the generated Prisma client) with
the package's modules in the environment, so nothing is built or downloaded for them: the entry point
writes them out as the package and runs one module. Their settings reach them through
RegionHealthSettings, the dataclass they read them back with; the key through the task's secret. The
sidecar's port is reached by the ALB only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import pulumi

from components.control_plane.gateway_config import POOL_ORDER
from components.core.config import PROJECT
from components.core.functions import function_sources
from functions.region_health.settings import (
    REGION_HEALTH_KEY_ENV,
    REGION_HEALTH_LIVE_PATH,
    REGION_HEALTH_PATH,
    REGION_HEALTH_PORT,
    Probe,
    RegionHealthSettings,
)

__all__ = [
    "CONTAINER_NAME",
    "KEY_CONTAINER_NAME",
    "REGION_HEALTH_KEY_ENV",
    "REGION_HEALTH_LIVE_PATH",
    "REGION_HEALTH_PATH",
    "REGION_HEALTH_PORT",
    "containers",
    "probe_key",
    "probes",
]

CONTAINER_NAME = "region-health"
KEY_CONTAINER_NAME = "region-health-key"
PACKAGE = "region_health"
CODE_ENV = "FLEET_REGION_HEALTH_CODE"


def bootstrap(module: str) -> str:
    """The entry point: the package's modules (JSON in CODE_ENV, by file name) written to a fresh directory
    and one of them run, as `python -m region_health.<module>` would."""
    return f"""import json, os, runpy, sys, tempfile
root = tempfile.mkdtemp()
os.mkdir(os.path.join(root, {PACKAGE!r}))
for name, text in json.loads(os.environ[{CODE_ENV!r}]).items():
    with open(os.path.join(root, {PACKAGE!r}, name), "w", encoding="utf-8") as module:
        module.write(text)
sys.path.insert(0, root)
runpy.run_module("{PACKAGE}.{module}", run_name="__main__", alter_sys=True)
"""


def probes(litellm_config: Mapping[str, Any]) -> tuple[Probe, ...]:
    """Every deployment of the rendered config, by id; the region's own backends are those tried first."""
    return tuple(
        Probe(
            deployment=str((d.get("model_info") or {}).get("id") or d["model_name"]),
            own=d.get("litellm_params", {}).get("order") == POOL_ORDER,
        )
        for d in litellm_config.get("model_list", [])
    )


def probe_key(master_key: str, region: str) -> str:
    """The sidecar's gateway key in `region`: derived from the master key (it rotates with it; it reveals
    nothing of it), one per region so that each region's registration keeps its own deployments."""
    digest = hmac.new(master_key.encode(), f"{PROJECT} region-health {region}".encode(), hashlib.sha256)
    return f"sk-fleet-health-{digest.hexdigest()[:40]}"


def containers(
    image: pulumi.Input[str],
    litellm_config: Mapping[str, Any],
    region: str,
    gateway_url: str,
    serverless_only_healthy: bool,
    secret_arn: pulumi.Input[str],
    gateway: Mapping[str, Any],
    log_options: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The key's registration (not essential: with the writer gone the key registered before serves) and
    the sidecar (essential: a task whose health cannot be told is replaced), which starts after it.
    `gateway`: the gateway's container, whose database secret the registration uses."""
    settings = RegionHealthSettings(
        gateway_url=gateway_url,
        probes=probes(litellm_config),
        key_alias=f"{PROJECT}-region-health-{region}",
        serverless_only_healthy=serverless_only_healthy,
    )
    environment = [
        {"name": CODE_ENV, "value": json.dumps(function_sources(PACKAGE), sort_keys=True)},
        *({"name": name, "value": value} for name, value in settings.to_env().items()),
    ]
    key = {
        "name": REGION_HEALTH_KEY_ENV,
        "valueFrom": pulumi.Output.concat(secret_arn, f":{REGION_HEALTH_KEY_ENV}::"),
    }
    database = [s for s in gateway["secrets"] if s["name"] == "DATABASE_URL"]

    def logs(prefix: str) -> dict[str, Any]:
        return {"logDriver": "awslogs", "options": {**log_options, "awslogs-stream-prefix": prefix}}

    register = {
        "name": KEY_CONTAINER_NAME,
        "image": image,
        "essential": False,
        "entryPoint": ["python3", "-c", bootstrap("register_key")],
        "environment": environment,
        "secrets": [key, *database],
        "logConfiguration": logs(KEY_CONTAINER_NAME),
    }
    sidecar = {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        "entryPoint": ["python3", "-c", bootstrap("region_health")],
        "portMappings": [{"containerPort": settings.port, "protocol": "tcp", "name": "region-health"}],
        "environment": environment,
        "secrets": [key],
        "dependsOn": [{"containerName": KEY_CONTAINER_NAME, "condition": "COMPLETE"}],
        "logConfiguration": logs(CONTAINER_NAME),
        "stopTimeout": 5,
    }
    return [register, sidecar]
