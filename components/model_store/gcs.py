"""GcsModelStore: the store's bucket for the batch jobs on GCP, which mount it directly.

Why no JuiceFS there: a Cloud Run job has no disk that outlives a task attempt, so a JuiceFS cache would
start empty on every attempt (in memory, counted against the container's limit): every read would come
from the object store anyway, which is what Cloud Run's own Cloud Storage volume does without a metadata
service. JuiceFS would add a Memorystore instance, a VPC and Direct VPC egress on the GCP side for no
faster load. The same `fleet models sync` layout and manifest apply: sync into a mount of this bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.core.context import GcpContext, StackContext


def bucket_name(project: str, stack: str) -> str:
    """Bucket names are global: the (globally unique) project id leads."""
    return f"{project}-{stack}-models"


@dataclass(frozen=True)
class GcsModelStoreArgs:
    stack: StackContext
    gcp: GcpContext


class GcsModelStore(pulumi.ComponentResource):
    bucket: str

    def __init__(
        self, name: str, args: GcsModelStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("inference-fleet:model_store:GcsModelStore", name, None, opts)
        stack, ctx = args.stack, args.gcp
        self.bucket = bucket_name(ctx.project, stack.stack)
        gcp.storage.Bucket(
            f"{name}-bucket",
            project=ctx.project,
            name=self.bucket,
            location=ctx.region.upper(),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=not stack.deletion_protection,
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="AbortIncompleteMultipartUpload"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=1),
                )
            ],
            labels={"component": "model-store"},
            opts=ctx.options(self, protect=stack.deletion_protection),
        )
        self.register_outputs({"bucket": self.bucket})
