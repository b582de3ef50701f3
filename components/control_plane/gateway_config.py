"""The LiteLLM proxy's config file, rendered from the stack config.

Pure data, no cloud calls: the control plane uploads the YAML and points the gateway at it. Every secret
and every endpoint known only after deployment is an `os.environ/NAME` reference that LiteLLM resolves
at start-up; the values come from Secrets Manager (secrets) or the task definition (plain settings),
so the file itself holds nothing secret and its digest changes only when the routing does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from components.control_plane.config import GATEWAY_PROVIDERS, GatewayConfig, ServerlessEndpointConfig

GATEWAY_PORT = 4000
# LiteLLM's liveness: the process answers (the ALB's target health; never the database's state).
LIVENESS_PATH = "/health/liveliness"

# Environment variables the rendered file reads. Secrets reach the container through the task
# definition's `secrets` (Secrets Manager); the rest are plain settings.
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
DATABASE_URL_ENV = "DATABASE_URL"
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"
REDIS_HOST_ENV = "REDIS_HOST"
REDIS_PORT_ENV = "REDIS_PORT"
SALT_KEY_ENV = "LITELLM_SALT_KEY"
# The key the gateway presents to the fleet's own GPU pools (their agents check it).
POOL_API_KEY_ENV = "FLEET_POOL_API_KEY"
# LiteLLM tries a model group's deployments by `order`, lowest first, and moves to the next order only
# when every deployment of the lower one has failed or cools down (order-based fallback, LiteLLM 1.104).
POOL_ORDER = 1
SERVERLESS_ORDER = 2


@dataclass(frozen=True)
class GatewayBackend:
    """One of the fleet's own backends as the gateway reaches it (a GPU pool, or a model served on a
    Kubernetes cluster): an OpenAI-compatible endpoint (the node agents behind the backend's internal load
    balancer) serving `model` under its engine's name. Routes name it by `name` (in their `pools`)."""

    name: str
    region: str
    model: str
    api_base: str
    # What a token served by this backend costs (USD), for LiteLLM's spend tracking; None: not priced.
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None

    def cost_params(self) -> dict[str, float]:
        if self.input_cost_per_token is None or self.output_cost_per_token is None:
            return {}
        return {
            "input_cost_per_token": self.input_cost_per_token,
            "output_cost_per_token": self.output_cost_per_token,
        }


def provider_key_env(provider: str) -> str:
    """The environment variable carrying one provider's API key, e.g. together_ai -> TOGETHER_AI_API_KEY."""
    return f"{provider.upper()}_API_KEY"


def _deployment(
    model_name: str,
    deployment_id: str,
    endpoint: ServerlessEndpointConfig,
    timeout: int,
    order: int | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": f"{GATEWAY_PROVIDERS[endpoint.provider]}/{endpoint.model}",
        "api_key": f"os.environ/{provider_key_env(endpoint.provider)}",
        # LiteLLM prices per token; the config states prices per million, as providers publish them.
        "input_cost_per_token": endpoint.input_cost_per_million_tokens / 1_000_000,
        "output_cost_per_token": endpoint.output_cost_per_million_tokens / 1_000_000,
        "timeout": timeout,
    }
    if endpoint.api_base is not None:
        params["api_base"] = endpoint.api_base
    if order is not None:
        params["order"] = order
    return {"model_name": model_name, "litellm_params": params, "model_info": {"id": deployment_id}}


def backend_deployments(
    gateway: GatewayConfig, route_model: str, backend_names: Sequence[str], backends: Sequence[GatewayBackend]
) -> list[dict[str, Any]]:
    """The deployments of a route's own backends that this gateway reaches (its own region's), first in
    order."""
    here = {b.name: b for b in backends}
    return [
        {
            "model_name": route_model,
            "litellm_params": {
                # The agents proxy the engine's OpenAI API; the request names the model the engine serves.
                "model": f"openai/{here[name].model}",
                "api_base": here[name].api_base,
                "api_key": f"os.environ/{POOL_API_KEY_ENV}",
                # The fleet's own capacity priced per token (gpu_pools/token_cost.py): spend and budgets
                # per key count it.
                **here[name].cost_params(),
                "timeout": gateway.request_timeout_seconds,
                "order": POOL_ORDER,
            },
            "model_info": {"id": f"{route_model}/pool/{name}"},
        }
        for name in backend_names
        if name in here
    ]


def litellm_config(gateway: GatewayConfig, backends: Sequence[GatewayBackend] = ()) -> dict[str, Any]:
    """The proxy config as a mapping: model routes (the region's own backends first, then serverless
    endpoints), fallbacks, routing, retries, Redis and database. `backends`: the own backends this gateway
    reaches."""
    endpoints = {e.name: e for e in gateway.serverless_endpoints}
    timeout = gateway.request_timeout_seconds
    model_list: list[dict[str, Any]] = []
    for route in gateway.routes:
        own = backend_deployments(gateway, route.model, route.pools, backends)
        model_list += own
        order = SERVERLESS_ORDER if own else None
        for name in route.endpoints:
            model_list.append(
                _deployment(route.model, f"{route.model}/{name}", endpoints[name], timeout, order)
            )
    # A fallback is a model group of its own: LiteLLM falls back from one group name to another.
    fallback_groups = sorted({name for route in gateway.routes for name in route.fallbacks})
    for name in fallback_groups:
        model_list.append(_deployment(name, name, endpoints[name], timeout))

    router_settings: dict[str, Any] = {
        "routing_strategy": gateway.routing_strategy,
        "num_retries": gateway.num_retries,
        "timeout": timeout,
        "allowed_fails": gateway.allowed_fails,
        "cooldown_time": gateway.cooldown_seconds,
        # Shared routing state (cooldowns, usage, latency) across every task of the region.
        "redis_host": f"os.environ/{REDIS_HOST_ENV}",
        "redis_port": f"os.environ/{REDIS_PORT_ENV}",
        "redis_password": f"os.environ/{REDIS_PASSWORD_ENV}",
    }
    fallbacks = [{route.model: list(route.fallbacks)} for route in gateway.routes if route.fallbacks]
    if fallbacks:
        router_settings["fallbacks"] = fallbacks
    return {
        "model_list": model_list,
        "router_settings": router_settings,
        "litellm_settings": {
            "request_timeout": timeout,
            # Providers differ in the OpenAI parameters they accept; drop the unsupported ones, do not fail.
            "drop_params": True,
            # /metrics for the task's metrics sidecar (gateway_metrics.py), which presents the master key.
            "callbacks": ["prometheus"],
            "require_auth_for_metrics_endpoint": True,
        },
        "general_settings": {
            "master_key": f"os.environ/{MASTER_KEY_ENV}",
            "database_url": f"os.environ/{DATABASE_URL_ENV}",
            # Keep serving while the database is unreachable (see control_plane/gateway_database.py).
            "allow_requests_on_db_unavailable": gateway.allow_requests_without_database,
        },
    }


def litellm_config_yaml(gateway: GatewayConfig, backends: Sequence[GatewayBackend] = ()) -> str:
    return yaml.safe_dump(litellm_config(gateway, backends), sort_keys=False, default_flow_style=False)


def uses_backends(gateway: GatewayConfig, backends: Sequence[GatewayBackend]) -> bool:
    """Whether this gateway routes to any of its own backends (and so needs their API key)."""
    names = {name for route in gateway.routes for name in route.pools}
    return any(b.name in names for b in backends)


def config_digest(text: str) -> str:
    """A short content digest: part of the object key, so a routing change rolls the service."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
