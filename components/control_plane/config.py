"""The `controlPlane.gateway` and `controlPlane.redis` sections, and the gateway's secrets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic.alias_generators import to_camel

from components.core.catalog.aws import (
    FARGATE_CPU_MEMORY,
    MAX_CERTIFICATE_COMMON_NAME_LENGTH,
)
from components.core.config import (
    Problem,
    SecretSpec,
    Section,
    StackShape,
    StackView,
    TopKey,
    one_of,
    rule,
    stack_rule,
)
from components.core.fields import (
    ElastiCacheNodeType,
    ImageRef,
    ModelName,
    Slug,
    elasticache_password,
    in_,
    listed,
)

# The LiteLLM proxy image with Prisma (Postgres), pinned by digest: v1.104.0 as public build files pin it.
# Check or move it with: crane digest ghcr.io/berriai/litellm-database:<release tag>
DEFAULT_GATEWAY_IMAGE = (
    "ghcr.io/berriai/litellm-database@sha256:5a9ff0fd7177372f2ccd8949cb121f67e281f4d13d026af51f9c096c0626f50a"
)
# LiteLLM's routing strategies (router_settings.routing_strategy).
GATEWAY_ROUTING_STRATEGIES: tuple[str, ...] = (
    "simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing-v2", "cost-based-routing",
)  # fmt: skip
# Serverless providers the gateway may fall back to, and the LiteLLM provider each is called through.
# Their API keys come from the providerApiKeys secret object, one entry per provider name. LiteLLM
# (1.104) calls replicate and lambda_ai (Lambda's inference API) natively; RunPod and Modal serverless
# endpoints, and any other OpenAI-compatible server (a vLLM endpoint), are reached through LiteLLM's
# OpenAI client at the endpoint's apiBase.
GATEWAY_PROVIDERS: dict[str, str] = {
    "openai": "openai", "anthropic": "anthropic", "together_ai": "together_ai",
    "fireworks_ai": "fireworks_ai", "groq": "groq", "deepinfra": "deepinfra", "mistral": "mistral",
    "replicate": "replicate", "lambda_ai": "lambda_ai",
    "runpod": "openai", "modal": "openai", "openai_compatible": "openai",
}  # fmt: skip
# Providers whose endpoints are the user's own: each needs its apiBase.
API_BASE_PROVIDERS: tuple[str, ...] = ("runpod", "modal", "openai_compatible")
_PROVIDER_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")


def _provider_model(value: str) -> str:
    if not _PROVIDER_MODEL_RE.match(value):
        raise ValueError(f"got {value!r}; expected the provider's model id, such as meta-llama/Llama-3.3-70B")
    return value


def _api_base(value: str) -> str:
    if not re.match(r"^https://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~%/-]*)?$", value):
        raise ValueError(
            f"got {value!r}; expected the endpoint's OpenAI-compatible base URL over HTTPS, such as "
            "https://api.runpod.ai/v2/<endpoint id>/openai/v1"
        )
    return value.rstrip("/")


ProviderModelId = Annotated[str, AfterValidator(_provider_model)]
GatewayProvider = Annotated[str, AfterValidator(in_(tuple(GATEWAY_PROVIDERS))), listed(GATEWAY_PROVIDERS)]
ApiBase = Annotated[str, AfterValidator(_api_base)]
RoutingStrategy = Annotated[
    str, AfterValidator(in_(GATEWAY_ROUTING_STRATEGIES)), listed(GATEWAY_ROUTING_STRATEGIES)
]


class ServerlessEndpointConfig(Section):
    """A provider-hosted model the gateway can send requests to, and what it costs."""

    list_key = "name"

    name: ModelName
    provider: GatewayProvider
    model: ProviderModelId
    # runpod, modal, openai_compatible: where the endpoint serves the OpenAI API.
    api_base: ApiBase | None = None
    input_cost_per_million_tokens: float = Field(ge=0, le=1000)
    output_cost_per_million_tokens: float = Field(ge=0, le=1000)


class GatewayRouteConfig(Section):
    """A model name clients ask for: the fleet's own GPU pools that serve it (tried first, those in the
    gateway's own region), the serverless endpoints that serve it, then the fallbacks tried in order."""

    list_key = "model"

    model: ModelName
    pools: list[Slug] = Field(default_factory=list, max_length=20)
    endpoints: list[ModelName] = Field(default_factory=list, max_length=20)
    fallbacks: list[ModelName] = Field(default_factory=list, max_length=10)


class GatewayConfig(Section):
    """The LiteLLM gateway: its image, task size and counts, and the routing it is rendered with."""

    image: ImageRef = DEFAULT_GATEWAY_IMAGE
    cpu: int = Field(default=512, description="Fargate CPU units: 256, 512, 1024, 2048, 4096, 8192, 16384")
    memory_mib: int = Field(default=1024, description="Fargate memory, paired with cpu")
    min_tasks: int = Field(default=1, ge=1, le=200)
    max_tasks: int = Field(default=2, ge=1, le=200)
    standby_min_tasks: int = Field(default=1, ge=1, le=200)
    standby_max_tasks: int = Field(default=2, ge=1, le=200)
    target_requests_per_task: int = Field(
        default=600, ge=10, le=100_000, description="ALB requests per task per minute autoscaling holds"
    )
    routing_strategy: RoutingStrategy = "simple-shuffle"
    num_retries: int = Field(default=2, ge=0, le=10)
    request_timeout_seconds: int = Field(default=600, ge=10, le=3600)
    allowed_fails: int = Field(
        default=3,
        ge=1,
        le=100,
        description="requests a GPU pool may fail as a whole (503: no node; 429: full; unreachable) within "
        "cooldownSeconds before the gateway leaves it out for cooldownSeconds (one node's failures never do)",
    )
    cooldown_seconds: int = Field(
        default=30, ge=1, le=3600, description="how long a failing pool (or endpoint) is left out"
    )
    routes: list[GatewayRouteConfig] = Field(default_factory=list)
    serverless_endpoints: list[ServerlessEndpointConfig] = Field(default_factory=list)
    allow_requests_without_database: bool = Field(
        default=True,
        description="serve a key the database cannot look up (LiteLLM then serves any sk- bearer token with "
        "a restricted identity); prod refuses it: each region checks keys against its own reader",
    )

    @classmethod
    def shape_defaults(cls, shape: StackShape) -> dict[str, Any]:
        if shape.tier != "prod":
            return {}
        # prod's rule: a zone's loss leaves a task; and a key nobody can look up is refused, not served.
        return {"min_tasks": 2, "allow_requests_without_database": False}

    def providers_used(self) -> list[str]:
        """Providers whose keys the gateway needs: those of the endpoints that routes reach."""
        endpoints = {e.name: e for e in self.serverless_endpoints}
        reached = {name for route in self.routes for name in [*route.endpoints, *route.fallbacks]}
        return sorted({endpoints[name].provider for name in reached if name in endpoints})


class RedisConfig(Section):
    node_type: ElastiCacheNodeType = "cache.t4g.micro"
    replicas: int = Field(
        default=0, ge=0, le=5, description="replica nodes besides the primary; >= 1 is Multi-AZ"
    )

    @classmethod
    def shape_defaults(cls, shape: StackShape) -> dict[str, Any]:
        return {"replicas": 1} if shape.tier == "prod" else {}  # prod's rule: Multi-AZ failover


@rule(GatewayConfig)
def _gateway_fits(gw: GatewayConfig, view: StackView) -> Iterator[Problem]:
    if gw.cpu not in FARGATE_CPU_MEMORY:
        yield "cpu", f"got {gw.cpu}; Fargate takes: {one_of(FARGATE_CPU_MEMORY)}"
    elif gw.memory_mib not in FARGATE_CPU_MEMORY[gw.cpu]:
        memory = FARGATE_CPU_MEMORY[gw.cpu]
        yield (
            "memoryMib",
            f"got {gw.memory_mib}; with cpu {gw.cpu} Fargate takes {memory[0]}-{memory[-1]} MiB "
            f"in steps of {memory[1] - memory[0]}",
        )
    if gw.min_tasks > gw.max_tasks:
        yield "minTasks", f"got {gw.min_tasks}; at most maxTasks ({gw.max_tasks})"
    if gw.standby_min_tasks > gw.standby_max_tasks:
        yield (
            "standbyMinTasks",
            f"got {gw.standby_min_tasks}; at most standbyMaxTasks ({gw.standby_max_tasks})",
        )
    if view.tier == "prod" and gw.min_tasks < 2:
        yield "minTasks", f"got {gw.min_tasks}; prod runs at least 2 so losing a zone leaves the gateway up"
    if view.standby_region is None:
        for key in ("standby_min_tasks", "standby_max_tasks"):
            if key in gw.model_fields_set:
                yield to_camel(key), "set, but there is no standbyRegion to run a standby gateway in"


@rule(GatewayConfig)
def _routes_name_declared_endpoints(gw: GatewayConfig, view: StackView) -> Iterator[Problem]:
    endpoints = [e.name for e in gw.serverless_endpoints]
    for i, route in enumerate(gw.routes):
        here = f"routes[{i}]"
        if not route.pools and not route.endpoints:
            yield here, "names neither pools nor endpoints; a route needs at least one of them"
        if route.model in endpoints:
            yield (
                f"{here}.model",
                f"got {route.model!r}, also a serverless endpoint's name; the two must differ",
            )
        for field, names in (("endpoints", route.endpoints), ("fallbacks", route.fallbacks)):
            for j, name in enumerate(names):
                if name not in endpoints:
                    known = one_of(endpoints) or "(none declared)"
                    yield f"{here}.{field}[{j}]", f"got {name!r}; declared serverlessEndpoints: {known}"
        for j, name in enumerate(route.fallbacks):
            if name in route.endpoints:
                yield (
                    f"{here}.fallbacks[{j}]",
                    f"got {name!r}, which already serves the route; fall back elsewhere",
                )


@rule(ServerlessEndpointConfig)
def _api_base_where_needed(endpoint: ServerlessEndpointConfig, view: StackView) -> Iterator[Problem]:
    if endpoint.provider in API_BASE_PROVIDERS and endpoint.api_base is None:
        yield "apiBase", f"required for provider {endpoint.provider}: the endpoint's OpenAI-compatible URL"
    elif endpoint.provider not in API_BASE_PROVIDERS and endpoint.api_base is not None:
        yield (
            "apiBase",
            f"set for {endpoint.provider}, which LiteLLM calls at its own endpoint; for another server use "
            f"provider {one_of(API_BASE_PROVIDERS)}",
        )


@rule(GatewayConfig)
def _provider_keys_cover_the_routes(gw: GatewayConfig, view: StackView) -> Iterator[Problem]:
    given = view.secret_object_keys.get(PROVIDER_API_KEYS.key)
    if given is None:
        return  # not visible here: the value is held where only Pulumi can read it
    missing = [p for p in gw.providers_used() if p not in given]
    if missing:
        yield (
            TopKey(PROVIDER_API_KEYS.key),
            f"no key for {one_of(missing)}; the gateway's routes use {one_of(gw.providers_used())}. "
            "Add it in ESC: secrets.providerApiKeys.<provider>",
        )


@rule(GatewayConfig)
def _registry_credentials_for_the_mirror(gw: GatewayConfig, view: StackView) -> Iterator[Problem]:
    if not gw.image.startswith(f"{GHCR}/") or view.secret_object_keys.get(GHCR_CREDENTIALS.key) is not None:
        return
    yield (
        TopKey(GHCR_CREDENTIALS.key),
        f"required: the gateway image is on {GHCR}, mirrored into each region's ECR by a pull-through cache, "
        "which needs ghcr.io credentials. Add them in ESC: secrets.ghcrCredentials.{username,accessToken}",
    )


@rule(RedisConfig)
def _redis_fits(redis: RedisConfig, view: StackView) -> Iterator[Problem]:
    if view.tier == "prod" and redis.replicas < 1:
        yield (
            "replicas",
            f"got {redis.replicas}; prod keeps at least 1 replica in another zone (Multi-AZ failover)",
        )


@stack_rule
def _served_names_fit(view: StackView) -> Iterator[Problem]:
    """The API name fits the certificate's Common Name (the regional names, 253 at most, go in its SANs)."""
    domain = view.domain
    api_name = f"api.{domain}"
    if len(api_name) > MAX_CERTIFICATE_COMMON_NAME_LENGTH:
        yield (
            TopKey("domain"),
            f"got {len(domain)} characters; the certificate's name api.<domain> would be {len(api_name)}, "
            f"and ACM takes at most {MAX_CERTIFICATE_COMMON_NAME_LENGTH} (a domain of at most "
            f"{MAX_CERTIFICATE_COMMON_NAME_LENGTH - len('api.')})",
        )


def _registry_credentials(value: Any) -> str | None:
    if not isinstance(value, dict) or set(value) != {"username", "accessToken"}:
        return "expected an object with username and accessToken (a GitHub token that may read packages)"
    if not all(isinstance(v, str) and v for v in value.values()):
        return "username and accessToken must be non-empty strings"
    return None


def _salt_key(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) < 32:
        return "expected at least 32 characters (e.g. openssl rand -hex 32): it encrypts what LiteLLM stores"
    return None


def _provider_keys(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        return "expected an object of provider name -> API key (e.g. secrets.providerApiKeys.openai in ESC)"
    unknown = [p for p in value if p not in GATEWAY_PROVIDERS]
    if unknown:
        return f"unknown provider(s) {one_of(unknown)}; allowed: {one_of(GATEWAY_PROVIDERS)}"
    return None


GATEWAY_MASTER_KEY = SecretSpec("gatewayMasterKey", "LiteLLM master key for the gateway")
PROVIDER_API_KEYS = SecretSpec(
    "providerApiKeys", "object of serverless fallback provider name -> API key", check=_provider_keys
)
GHCR = "ghcr.io"
GHCR_CREDENTIALS = SecretSpec(
    "ghcrCredentials",
    "object {username, accessToken}: ghcr.io credentials for the gateway image's pull-through cache",
    check=_registry_credentials,
    required=False,
)
GATEWAY_SALT_KEY = SecretSpec(
    "gatewaySaltKey",
    "LITELLM_SALT_KEY: encrypts the credentials LiteLLM stores in its database; never change it once set",
    check=_salt_key,
)
REDIS_AUTH_TOKEN = SecretSpec(
    "redisAuthToken",
    "auth token of the gateway's Redis: 16-128 ASCII letters, digits and ! & # $ ^ < > -",
    check=elasticache_password("an AUTH token"),
)
