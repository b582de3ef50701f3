"""What every rule needs to read a resource the way the engine hands it over.

Properties arrive as the engine sends them to an analyzer: inputs in their wire (camelCase) names, secrets
already unwrapped, nested objects as mappings, numbers as floats, and values that are only known after
`pulumi up` (an id, an ARN) as sentinels that raise `UnknownValueError` when read. A rule that needs such
a value lets the error propagate, and the engine reports "can't run policy during preview" instead of a
wrong verdict. A rule that only needs to know whether a property is *set* uses `present`, which never reads
the value.

Nothing here imports a cloud SDK: the pack starts in its own process for every preview.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    PolicyConfigSchema,
    PolicyProviderResource,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import UnknownValueError

from components.core.catalog.resource_types import (
    AWS_PROVIDER,
    GCP_PROVIDER,
    K8S_CRON_JOB,
    K8S_DAEMON_SET,
    K8S_DEPLOYMENT,
    K8S_JOB,
    K8S_POD,
    K8S_REPLICA_SET,
    K8S_STATEFUL_SET,
)

PROD_TIER = "prod"
# The program tags every resource with its stack's tier through the provider's default tags (AWS) or
# default labels (GCP); rules that only apply to production read it from there.
TIER_KEY = "tier"

ResourceLike = ResourceValidationArgs | PolicyResource


def present(props: Mapping[str, Any], key: str) -> bool:
    """Whether a property is set, without reading a value that is only known after `pulumi up`."""
    try:
        return props.get(key) is not None
    except UnknownValueError:
        return True  # set, to a value another resource produces on create


def known(props: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The property's value, or `default` where it is unset or not known until `pulumi up`.

    For checks that only concern literal values the program states (a port, a CIDR): a value computed
    from another resource cannot be one of them.
    """
    try:
        value = props.get(key)
    except UnknownValueError:
        return default
    return default if value is None else value


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def items(value: Any) -> list[Any]:
    """A list property as a list (absent -> empty); strings are not lists here."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return []


def path(props: Mapping[str, Any], *keys: str | int) -> Any:
    """A nested property (`path(p, "template", "template", "maxRetries")`), None where any step is unset."""
    current: Any = props
    for key in keys:
        if isinstance(key, int):
            seq = items(current)
            if key >= len(seq):
                return None
            current = seq[key]
        else:
            if not isinstance(current, Mapping) or not present(current, key):
                return None
            current = current[key]
    return current


def json_value(value: Any) -> Any:
    """A property the provider takes as a JSON document (policies, container definitions), parsed."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def truthy(value: Any) -> bool:
    """A boolean input; the AWS provider also takes "true"/"false" strings for some."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


# --- config -----------------------------------------------------------------------------------------


def setting(args: ResourceValidationArgs | StackValidationArgs, schema: PolicyConfigSchema, key: str) -> Any:
    """A rule's config value: what the pack's config sets, else the default its schema declares.

    The CLI fills schema defaults in before it configures the pack; reading them here too keeps a rule
    correct when it runs without any config at all.
    """
    config = args.get_config() or {}
    if key in config and config[key] is not None:
        return config[key]
    return schema.properties[key]["default"]


# --- tags and labels ----------------------------------------------------------------------------------


def provider_defaults(provider: PolicyProviderResource | None) -> dict[str, str]:
    """Tags (AWS `defaultTags.tags`) or labels (GCP `defaultLabels`) a provider adds to what it creates.

    Provider inputs travel JSON-encoded when they are objects, so either form is accepted.
    """
    if provider is None:
        return {}
    props = provider.props
    if provider.resource_type == AWS_PROVIDER:
        default_tags = json_value(known(props, "defaultTags"))
        return _string_map(mapping(default_tags).get("tags"))
    if provider.resource_type in (GCP_PROVIDER, "pulumi:providers:google-beta"):
        return _string_map(json_value(known(props, "defaultLabels")))
    return {}


def own_tags(props: Mapping[str, Any], key: str = "tags") -> dict[str, str]:
    """A resource's own tags: a map, or the list of {key, value} blocks Auto Scaling groups take."""
    value = known(props, key)
    if isinstance(value, Mapping):
        return _string_map(value)
    return {
        str(tag.get("key")): str(tag.get("value"))
        for tag in items(value)
        if isinstance(tag, Mapping) and tag.get("key") is not None
    }


def effective_tags(resource: ResourceLike) -> dict[str, str]:
    """Own tags (or GCP labels) over the provider's defaults: what the cloud will show on the resource."""
    label_key = "labels" if resource.resource_type.startswith("gcp:") else "tags"
    return {**provider_defaults(resource.provider), **own_tags(resource.props, label_key)}


def is_prod(resource: ResourceLike) -> bool:
    return effective_tags(resource).get(TIER_KEY) == PROD_TIER


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


# --- naming what fired ------------------------------------------------------------------------------


def label(resource: ResourceLike) -> str:
    """`Type name` as a user finds it in `pulumi preview`: `aws:s3/bucket:Bucket access-logs`."""
    return f"{resource.resource_type} {resource.name!r}"


def report_each(report: ReportViolation, messages: Iterator[str], urn: str | None = None) -> None:
    for message in messages:
        report(message, urn)


# --- quantities ---------------------------------------------------------------------------------------

_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")
_BINARY = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def cpu_count(value: Any) -> float | None:
    """A Kubernetes-style CPU quantity ("4", "4000m", 4) in CPUs."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _QUANTITY.match(str(value)) if isinstance(value, str) else None
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2)
    if unit == "m":
        return number / 1000
    return number if unit == "" else None


def memory_gib(value: Any) -> float | None:
    """A Kubernetes-style memory quantity ("16Gi", "16G", "16384Mi") in GiB."""
    match = _QUANTITY.match(str(value)) if isinstance(value, str | int | float) else None
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2)
    if unit in _BINARY:
        return number * _BINARY[unit] / 2**30
    if unit in _DECIMAL:
        return number * _DECIMAL[unit] / 2**30
    return None


# --- Kubernetes workloads ---------------------------------------------------------------------------

# Where each workload kind keeps the spec of the pods it runs.
K8S_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    K8S_POD: ("spec",),
    K8S_DEPLOYMENT: ("spec", "template", "spec"),
    K8S_STATEFUL_SET: ("spec", "template", "spec"),
    K8S_DAEMON_SET: ("spec", "template", "spec"),
    K8S_REPLICA_SET: ("spec", "template", "spec"),
    K8S_JOB: ("spec", "template", "spec"),
    K8S_CRON_JOB: ("spec", "jobTemplate", "spec", "template", "spec"),
}


def pod_spec(resource: ResourceLike) -> Mapping[str, Any] | None:
    """The pod spec a Kubernetes workload runs (None for anything else)."""
    keys = K8S_POD_SPEC_PATHS.get(resource.resource_type)
    return mapping(path(resource.props, *keys)) if keys is not None else None


def pod_containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every container of a pod spec: init, app and ephemeral ones."""
    return [
        mapping(container)
        for key in ("initContainers", "containers", "ephemeralContainers")
        for container in items(spec.get(key))
    ]
