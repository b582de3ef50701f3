"""Explicit cloud providers: one per AWS region, so every resource says where it lives.

The stacks set `pulumi:disable-default-providers: ["*"]`: a resource that forgets its provider fails
instead of landing in whatever region the ambient credentials point at.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi_aws as aws


def aws_provider(region: str, tags: Mapping[str, str]) -> aws.Provider:
    """The provider for one region. Its default tags reach every taggable resource declared with it."""
    return aws.Provider(
        f"aws-{region}",
        region=region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=dict(tags)),
    )
