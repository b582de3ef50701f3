"""The policy pack holds the model store to what it needs: its bucket private and encrypted, its metadata
Redis encrypted with auth (the pack's S3 and Redis rules, which reach the store's resources), and never
evicting a key, Multi-AZ with snapshots in prod (juicefs-metadata-redis). Each rule stays quiet on the
stacks as shipped and fires, naming the store's resource, when the store's part is taken away from the
recording `fleet plan` evaluates."""

from __future__ import annotations

from dataclasses import replace

import pytest

from components.core.catalog.resource_types import (
    CACHE_PARAMETER_GROUP,
    REDIS_REPLICATION_GROUP,
    S3_ENCRYPTION,
    S3_PUBLIC_ACCESS_BLOCK,
)
from fleet.harness import RecordedResource, Rendering
from fleet.policy_run import evaluate

STORE_RULES = (
    "s3-bucket-public-access-blocked",
    "s3-bucket-encrypted",
    "redis-encrypted-with-auth",
    "juicefs-metadata-redis",
)
BUCKET = "models-us-west-2-chunks"
REDIS = "models-us-west-2-meta"


def violations(rendering: Rendering, rule: str) -> list[str]:
    return [v.urn.rsplit("::", 1)[-1] for v in evaluate(rendering).violations if v.policy == rule]


def without(rendering: Rendering, resource_type: str, name: str) -> Rendering:
    kept = [r for r in rendering.resources if not (r.type == resource_type and r.name == name)]
    assert len(kept) == len(rendering.resources) - 1
    return Rendering(rendering.project, rendering.stack, kept, rendering.outputs, rendering.project_dir)


def changed(rendering: Rendering, resource_type: str, name: str, **inputs: object) -> Rendering:
    def edit(r: RecordedResource) -> RecordedResource:
        if r.type != resource_type or r.name != name:
            return r

        # Resource rules read the inputs, stack rules the state (outputs): change both.
        def apply(values: dict[str, object]) -> dict[str, object]:
            return {k: v for k, v in {**values, **inputs}.items() if v is not None}

        return replace(r, inputs=apply(r.inputs), outputs=apply(r.outputs))

    edited = [edit(r) for r in rendering.resources]
    return Rendering(rendering.project, rendering.stack, edited, rendering.outputs, rendering.project_dir)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_shipped_stores_pass_every_rule(render, stack: str) -> None:
    rendering = render(stack)
    for rule in STORE_RULES:
        assert violations(rendering, rule) == [], rule


def test_a_store_bucket_without_its_public_access_block_is_named(render) -> None:
    prod = without(render("prod"), S3_PUBLIC_ACCESS_BLOCK, BUCKET)
    assert violations(prod, "s3-bucket-public-access-blocked") == [BUCKET]


def test_a_store_bucket_without_default_encryption_is_named(render) -> None:
    sse = S3_ENCRYPTION
    prod = without(render("prod"), sse, BUCKET)
    assert violations(prod, "s3-bucket-encrypted") == [BUCKET]


def test_a_metadata_redis_without_auth_is_named(render) -> None:
    prod = changed(render("prod"), REDIS_REPLICATION_GROUP, REDIS, authToken=None)
    assert violations(prod, "redis-encrypted-with-auth") == [REDIS]


def test_a_metadata_redis_that_may_evict_or_stands_alone_in_prod_is_named(render) -> None:
    group = REDIS_REPLICATION_GROUP
    evicting = without(render("prod"), CACHE_PARAMETER_GROUP, REDIS)
    assert violations(evicting, "juicefs-metadata-redis") == [REDIS]
    alone = changed(render("prod"), group, REDIS, numCacheClusters=1, multiAzEnabled=False)
    assert violations(alone, "juicefs-metadata-redis") == [REDIS]
    forgetful = changed(render("prod"), group, REDIS, snapshotRetentionLimit=0)
    assert violations(forgetful, "juicefs-metadata-redis") == [REDIS]
    # The gateway's Redis is not a volume's metadata: the rule leaves it to its own (LRU is right there).
    assert (
        render("prod").one(group, "control-plane-us-west-2-redis").inputs["parameterGroupName"]
        == "default.redis7"
    )
