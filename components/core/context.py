"""What every component is given instead of reading config itself: the stack it belongs to and the region
it is declared in, with that region's provider.

One explicit provider per AWS region: the stacks set `pulumi:disable-default-providers: ["*"]`, so a
resource that forgets its provider fails instead of landing wherever the ambient credentials point.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from components.core.catalog.aws import region_code
from components.core.config import PROJECT

if TYPE_CHECKING:
    import pulumi_gcp as gcp

# Explicit physical names start with this, then the stack and (for regional resources) the region's code:
# short enough for the tightest limits (load balancers: 32), and readable in the console.
NAME_PREFIX = "fleet"


@dataclass(frozen=True)
class RegionContext:
    """A region a component is declared in, and the provider every resource there goes through."""

    region: str
    provider: aws.Provider

    @property
    def code(self) -> str:
        return region_code(self.region)

    def options(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for a child declared here: the parent, this region's provider, and any others given."""
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **kwargs)


@dataclass(frozen=True)
class GcpContext:
    """The GCP project and region a component is declared in, and the provider every resource there goes
    through (credentials: the ambient ones, which ESC's gcp-login sets as GOOGLE_OAUTH_ACCESS_TOKEN)."""

    project: str
    region: str
    provider: gcp.Provider

    def options(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **kwargs)


def gcp_label(value: str) -> str:
    """A tag value as a GCP label value: lower-case letters, digits, '_' and '-', at most 63."""
    return re.sub(r"[^a-z0-9_-]", "_", value.lower())[:63]


@dataclass
class StackContext:
    """The stack a component belongs to: project, stack, tier, and the tags every resource carries."""

    stack: str
    tier: str
    tags: Mapping[str, str]
    project: str = PROJECT
    _regions: dict[str, RegionContext] = field(default_factory=dict, repr=False)
    _gcp: dict[tuple[str, str], GcpContext] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, tier: str, configured_tags: Mapping[str, str]) -> StackContext:
        stack = pulumi.get_stack()
        tags = {**configured_tags, "project": PROJECT, "stack": stack, "tier": tier, "managed-by": "pulumi"}
        return cls(stack=stack, tier=tier, tags=tags)

    @property
    def deletion_protection(self) -> bool:
        """prod keeps stateful resources from being deleted by a stray `pulumi destroy`."""
        return self.tier == "prod"

    def region(self, name: str) -> RegionContext:
        """The region's context, its provider declared once (at the top level, as `aws-<region>`)."""
        if name not in self._regions:
            provider = aws.Provider(
                f"aws-{name}",
                region=name,
                # Default tags reach every taggable resource declared with this provider.
                default_tags=aws.ProviderDefaultTagsArgs(tags=dict(self.tags)),
            )
            self._regions[name] = RegionContext(name, provider)
        return self._regions[name]

    def gcp(self, project: str, region: str) -> GcpContext:
        """The GCP project and region's context, its provider declared once (at the top level, as
        `gcp-<region>`). The stack's tags become the provider's default labels."""
        import pulumi_gcp as gcp  # loaded only by stacks that declare GCP resources

        key = (project, region)
        if key not in self._gcp:
            provider = gcp.Provider(
                f"gcp-{region}",
                project=project,
                region=region,
                default_labels={k: gcp_label(v) for k, v in self.tags.items()},
            )
            self._gcp[key] = GcpContext(project, region, provider)
        return self._gcp[key]

    def physical_name(
        self,
        kind: str,
        region: RegionContext | None = None,
        replaced_on: tuple[object, ...] = (),
        max_length: int | None = None,
    ) -> str:
        """An explicit name that carries the stack and region: `fleet-prod-use1-gateway`.

        `replaced_on`: the values whose change makes the cloud replace the resource. Their digest ends
        the name, so a replacement is created under a new name before the old one goes (a fixed name
        would collide with the resource it replaces).
        `max_length`: the API's limit. A name over it carries a short digest of the stack's name instead
        of the name (`fleet-3f9a1c-use1-gateway-4697`); names that fit are never changed.
        """

        def joined(stack: str) -> str:
            parts = [NAME_PREFIX, stack, *([region.code] if region else []), kind]
            if replaced_on:
                parts.append(hashlib.sha256(repr(replaced_on).encode()).hexdigest()[:4])
            return "-".join(parts)

        name = joined(self.stack)
        if max_length is not None and len(name) > max_length:
            name = joined(hashlib.sha256(self.stack.encode()).hexdigest()[:6])
        return name
