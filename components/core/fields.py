"""Field types more than one section uses, each refusing a bad value with the allowed ones named."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

from components.core.catalog.aws import (
    AWS_REGIONS,
    ELASTICACHE_AUTH_TOKEN_LENGTH,
    ELASTICACHE_AUTH_TOKEN_SPECIALS,
    ELASTICACHE_NODE_TYPES,
    LOG_RETENTION_DAYS,
    MAX_DNS_NAME_LENGTH,
    MAX_TAG_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS_PER_RESOURCE,
    RESERVED_TAG_PREFIX,
    TAG_SPECIAL_CHARACTERS,
)
from components.core.catalog.gcp import GCP_REGIONS
from components.core.config import one_of

REQUIRED_TAGS = ("owner", "cost-center")
# Tags the program adds to every resource (through the providers' default tags), and the most tags a
# component sets on one resource itself (a subnet: Name, its Kubernetes load-balancer role, subnet-tier).
DEFAULT_TAG_KEYS = ("project", "stack", "tier", "managed-by")
MAX_RESOURCE_TAGS = 3
MAX_STACK_TAGS = MAX_TAGS_PER_RESOURCE - len(DEFAULT_TAG_KEYS) - MAX_RESOURCE_TAGS


def listed(values: Iterable[str | int]) -> WithJsonSchema:
    """The JSON Schema of a field whose validator takes only `values` (`fleet schema`: editors offer them)."""
    allowed = list(values)
    kind = "integer" if all(isinstance(v, int) for v in allowed) else "string"
    return WithJsonSchema({"type": kind, "enum": allowed})


def pattern(regex: re.Pattern[str], example: str) -> WithJsonSchema:
    """The JSON Schema of a string field whose validator matches `regex`."""
    return WithJsonSchema({"type": "string", "pattern": regex.pattern, "examples": [example]})


def in_(allowed: Sequence[str], what: str = "allowed") -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"got {value!r}; {what}: {one_of(allowed)}")
        return value

    return check


def _aws_region(value: str) -> str:
    if value not in AWS_REGIONS:
        raise ValueError(f"got {value!r}; allowed: {one_of(sorted(AWS_REGIONS))}")
    return value


def _gcp_region(value: str) -> str:
    if value not in GCP_REGIONS:
        raise ValueError(
            f"got {value!r}; allowed (regions with Cloud Run GPUs): {one_of(sorted(GCP_REGIONS))}"
        )
    return value


_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def _vpc_cidr(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value)
    except ValueError:
        raise ValueError(f"got {value!r}; expected an IPv4 network such as 10.10.0.0/16") from None
    if not 16 <= net.prefixlen <= 20:
        raise ValueError(
            f"got {value!r}; a VPC is /16 to /20 here (AWS allows /16 at most; six subnets need /20 at least)"
        )
    # Python calls link-local (169.254/16) and other special ranges private; a VPC takes RFC 1918 only.
    if not any(net.subnet_of(block) for block in _RFC1918):
        raise ValueError(
            f"got {value!r}; expected a private (RFC 1918) range such as 10.10.0.0/16: "
            "10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
        )
    return str(net)


_DNS_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN_RE = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})+$")
_GCP_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")


def _domain(value: str) -> str:
    if len(value) > MAX_DNS_NAME_LENGTH:
        raise ValueError(f"got {len(value)} characters; a DNS name is at most {MAX_DNS_NAME_LENGTH}")
    if not _DOMAIN_RE.match(value):
        raise ValueError(f"got {value!r}; expected a lower-case DNS name such as fleet.example.com")
    return value


def _gcp_project(value: str) -> str:
    if not _GCP_PROJECT_RE.match(value):
        raise ValueError(
            f"got {value!r}; a GCP project id is 6-30 lower-case letters, digits or hyphens, "
            "starting with a letter"
        )
    return value


def _slug(value: str) -> str:
    if not _SLUG_RE.match(value):
        raise ValueError(
            f"got {value!r}; expected 2-32 lower-case letters, digits or hyphens, starting with a letter"
        )
    return value


def _log_retention(value: int) -> int:
    if value not in LOG_RETENTION_DAYS:
        raise ValueError(f"got {value}; CloudWatch Logs allows: {one_of(LOG_RETENTION_DAYS)}")
    return value


def _tag_text_ok(text: str) -> bool:
    """Letters, digits and spaces of any script, and AWS's few specials (every tagging API's pattern)."""
    return all(unicodedata.category(c)[0] in "LZN" or c in TAG_SPECIAL_CHARACTERS for c in text)


def _tags(value: dict[str, str]) -> dict[str, str]:
    specials = " ".join(TAG_SPECIAL_CHARACTERS)
    for key, tag in value.items():
        if not 1 <= len(key) <= MAX_TAG_KEY_LENGTH or key.lower().startswith(RESERVED_TAG_PREFIX):
            raise ValueError(f"tag key {key!r}: 1-128 characters, not starting with 'aws:'")
        if key in DEFAULT_TAG_KEYS:
            raise ValueError(
                f"tag key {key!r}: the program sets it on every resource; "
                f"reserved: {one_of(DEFAULT_TAG_KEYS)}"
            )
        if not _tag_text_ok(key):
            raise ValueError(f"tag key {key!r}: AWS allows letters, digits, spaces and {specials}")
        if len(tag) > MAX_TAG_VALUE_LENGTH:
            raise ValueError(f"tag {key!r}: value longer than 256 characters")
        if not _tag_text_ok(tag):
            raise ValueError(f"tag {key!r}: value {tag!r}; AWS allows letters, digits, spaces and {specials}")
    if len(value) > MAX_STACK_TAGS:
        raise ValueError(
            f"got {len(value)} tags; at most {MAX_STACK_TAGS}: "
            f"AWS allows {MAX_TAGS_PER_RESOURCE} per resource, "
            f"and the program adds {len(DEFAULT_TAG_KEYS)} to every resource and up to {MAX_RESOURCE_TAGS} "
            "of a resource's own"
        )
    missing = [t for t in REQUIRED_TAGS if t not in value]
    if missing:
        raise ValueError(
            f"missing required tag(s) {one_of(missing)}; every stack names: {one_of(REQUIRED_TAGS)}"
        )
    return value


# registry[:port]/path[:tag][@sha256:digest]; a tag alone passes here, the policy pack judges pinning.
_IMAGE_RE = re.compile(
    r"^(?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
_MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}[a-z0-9]$")


def _image(value: str) -> str:
    if not _IMAGE_RE.match(value):
        example = "ghcr.io/berriai/litellm-database@sha256:<digest>"
        raise ValueError(f"got {value!r}; expected an image reference such as {example}")
    return value


def _model_name(value: str) -> str:
    if not _MODEL_NAME_RE.match(value):
        raise ValueError(
            f"got {value!r}; expected 2-64 lower-case letters, digits, '.', '-' or '_' (a name clients send)"
        )
    return value


AwsRegionName = Annotated[str, AfterValidator(_aws_region), listed(sorted(AWS_REGIONS))]
ElastiCacheNodeType = Annotated[
    str, AfterValidator(in_(ELASTICACHE_NODE_TYPES)), listed(ELASTICACHE_NODE_TYPES)
]
GcpRegionName = Annotated[str, AfterValidator(_gcp_region), listed(sorted(GCP_REGIONS))]
VpcCidr = Annotated[
    str,
    AfterValidator(_vpc_cidr),
    WithJsonSchema(
        {"type": "string", "description": "a private IPv4 range, /16 to /20", "examples": ["10.10.0.0/16"]}
    ),
]
DomainName = Annotated[str, AfterValidator(_domain), pattern(_DOMAIN_RE, "fleet.example.com")]
GcpProjectId = Annotated[str, AfterValidator(_gcp_project), pattern(_GCP_PROJECT_RE, "acme-inference-prod")]
Slug = Annotated[str, AfterValidator(_slug), pattern(_SLUG_RE, "llama-8b")]
LogRetentionDays = Annotated[int, AfterValidator(_log_retention), listed(LOG_RETENTION_DAYS)]
Tags = Annotated[dict[str, str], AfterValidator(_tags)]
ImageRef = Annotated[str, AfterValidator(_image)]
ModelName = Annotated[str, AfterValidator(_model_name), pattern(_MODEL_NAME_RE, "llama-3.1-8b")]


def elasticache_password(what: str) -> Callable[[object], str | None]:
    """A SecretSpec check: why ElastiCache would refuse a value as `what` (an AUTH token and an RBAC
    user's password follow the same rules), or None."""

    def problem(value: object) -> str | None:
        low, high = ELASTICACHE_AUTH_TOKEN_LENGTH
        text = value if isinstance(value, str) else ""
        allowed = all(c.isascii() and (c.isalnum() or c in ELASTICACHE_AUTH_TOKEN_SPECIALS) for c in text)
        if not (low <= len(text) <= high and allowed):
            specials = " ".join(ELASTICACHE_AUTH_TOKEN_SPECIALS)
            return (
                f"ElastiCache takes {what} of {low}-{high} ASCII letters, digits and {specials}; "
                f"got {len(text)} characters"
            )
        return None

    return problem
