"""The gateway image, mirrored into each region's ECR by a pull-through cache, so a region that recovers
(or scales up) pulls from its own registry, not from an outside one.

A `ghcr.io/<path>@sha256:<digest>` image becomes `<account>.dkr.ecr.<region>.amazonaws.com/ghcr/<path>@...`:
the first pull in a region fetches it from GitHub's registry once (ECR's pull-through cache needs
credentials for ghcr.io, the `ghcrCredentials` secret); every later pull, by the same immutable digest,
is served by ECR. Both regions run the gateway all the time, so both caches hold the image before it is
ever needed. An image already in ECR is used as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.core.context import RegionContext

UPSTREAM = "ghcr.io"
CACHE_PREFIX = "ghcr"
# ECR requires this prefix on the name of a pull-through cache's credentials secret.
CREDENTIALS_SECRET_PREFIX = "ecr-pullthroughcache/"
_ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)")


def mirrored(image: str) -> bool:
    return image.startswith(f"{UPSTREAM}/")


def ecr_repository(image: str) -> tuple[str, str, str] | None:
    """(account, region, repository) of an image in ECR, else None."""
    match = _ECR_IMAGE.match(image)
    return (match.group(1), match.group(2), match.group(3)) if match else None


@dataclass(frozen=True)
class Mirror:
    image: pulumi.Output[str]
    repository_arn: pulumi.Output[str]


def declare_mirror(
    name: str,
    image: str,
    region: RegionContext,
    account: pulumi.Input[str],
    secret_name: str,
    credentials: pulumi.Input[str],
    protect: bool,
    parent: pulumi.Resource,
) -> Mirror:
    """The region's pull-through cache for ghcr.io and the image reference through it."""
    # ECR reads the secret with its service-linked role: it stays under Secrets Manager's own key.
    secret = aws.secretsmanager.Secret(
        f"{name}-credentials",
        name=f"{CREDENTIALS_SECRET_PREFIX}{secret_name}",
        description="ghcr.io credentials for the gateway image's pull-through cache",
        opts=region.options(parent, protect=protect),
    )
    version = aws.secretsmanager.SecretVersion(
        f"{name}-credentials", secret_id=secret.id, secret_string=credentials, opts=region.options(parent)
    )
    rule = aws.ecr.PullThroughCacheRule(
        name,
        ecr_repository_prefix=CACHE_PREFIX,
        upstream_registry_url=UPSTREAM,
        credential_arn=secret.arn,
        opts=region.options(parent, depends_on=[version]),
    )
    path = image.removeprefix(f"{UPSTREAM}/")
    registry = pulumi.Output.concat(account, ".dkr.ecr.", region.region, ".amazonaws.com")
    repository = re.split(r"[@:]", path, maxsplit=1)[0]
    return Mirror(
        image=pulumi.Output.concat(registry, "/", rule.ecr_repository_prefix, "/", path),
        repository_arn=pulumi.Output.concat(
            "arn:aws:ecr:", region.region, ":", account, ":repository/", CACHE_PREFIX, "/", repository
        ),
    )
