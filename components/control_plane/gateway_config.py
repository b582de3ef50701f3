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
# LiteLLM (1.104) sends every read, key lookups included, to this URL when it is set (proxy/utils.py:
# PrismaClient builds a RoutingPrismaWrapper over the writer and this reader); writes stay on DATABASE_URL.
READ_REPLICA_URL_ENV = "DATABASE_URL_READ_REPLICA"
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
# How LiteLLM (1.104) cools a deployment down, read in its source (router_utils/cooldown_handlers.py):
# - the router's `allowed_fails` is honoured only when it differs from LiteLLM's own default (3): at 3
#   the router runs its "v2" rule instead (`_is_allowed_fails_set_on_router`): cooled when more than
#   half of this minute's requests failed, at least 5 of them, counted in each process on its own;
# - a deployment's `model_info.allowed_fails_policy` always applies (`_get_deployment_cooldown_policy`),
#   counted per exception type in the router's cache, Redis here, so every task of the region shares the
#   count; the pool cools once a type's count within `cooldown_time` exceeds its entry;
# - its `model_info.cooldown_time` wins over a response's Retry-After, so one draining node's answer
#   never sets how long its whole pool is left out.
# A pool's deployment is its load balancer, not a node. What says the pool as a whole cannot serve now
# counts to `allowedFails`: no node behind the load balancer (503), the load balancer unreachable (500
# "Connection error"), its nodes' queues full (429: the overflow goes to the endpoint). What one node's
# failure looks like never cools the whole pool (NODE_FAILURES_ALLOWED): a 502 (the load balancer
# reached a node that is gone) or a timeout (a hung node) is retried on another node (round robin), and
# the load balancer drops that node within 10 s (gpu_pools timings); cooling the pool for it would send
# its traffic to the paid endpoint while its other nodes are ready.
POOL_FAILURES = (
    "ServiceUnavailableErrorAllowedFails",
    "InternalServerErrorAllowedFails",
    "RateLimitErrorAllowedFails",
)
NODE_FAILURES = ("BadGatewayErrorAllowedFails", "TimeoutErrorAllowedFails")
NODE_FAILURES_ALLOWED = 1000


def pool_cooldown_policy(allowed_fails: int) -> dict[str, int]:
    """A pool deployment's `model_info.allowed_fails_policy`."""
    policy: dict[str, int] = dict.fromkeys(POOL_FAILURES, allowed_fails)
    return policy | dict.fromkeys(NODE_FAILURES, NODE_FAILURES_ALLOWED)


# Retries (router `retry_policy`, router_utils/get_retry_from_policy.py): none for what a retry cannot
# change (a bad request, a wrong key, an unknown model) and none after a timeout (an attempt that timed
# out cost the whole request timeout; the next deployment in order serves instead). Every other class
# gets `numRetries` (no DefaultRetries entry: LiteLLM's own retry rules then apply).
NO_RETRY = (
    "TimeoutErrorRetries",
    "BadRequestErrorRetries",
    "AuthenticationErrorRetries",
    "ContentPolicyViolationErrorRetries",
    "NotFoundErrorRetries",
)


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
            "model_info": {
                "id": f"{route_model}/pool/{name}",
                "allowed_fails_policy": pool_cooldown_policy(gateway.allowed_fails),
                "cooldown_time": gateway.cooldown_seconds,
            },
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
        "retry_policy": dict.fromkeys(NO_RETRY, 0),
        "timeout": timeout,
        # No router-wide `allowed_fails`: the pools carry their own policy; serverless deployments keep
        # LiteLLM's failure-rate rule (a provider's 429 cools it at once).
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
            # Whether a key that cannot be looked up is served (see control_plane/gateway_database.py).
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
