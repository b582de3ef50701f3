"""The model store capability: model weights in a JuiceFS volume per AWS region with GPU pools (chunks in
S3, metadata in a Redis of its own, cache on the nodes' local NVMe), and a GCS bucket that the batch jobs
on Cloud Run mount directly.

Each region's store is its own volume: the standby region's nodes mount the standby's volume, and
`fleet models sync` loads a model into each (the README says why and what that costs).

Published: `ModelStoreConfig` (and its parts), `MODEL_STORE_AUTH_TOKEN`, `SECRETS`, `MountSpec` (and
`SecretRef`, `CacheSpec`, `WarmupSpec`, `StoreAccess`), `ModelStoreOutputs` (`mount`, `gcs_mount`,
`access`), `declare`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi

from components.core.config import SecretSpec, StackSecrets
from components.core.context import StackContext
from components.model_store.config import (
    MODEL_STORE_AUTH_TOKEN,
    ModelStoreCacheConfig,
    ModelStoreConfig,
    ModelStoreMetadataConfig,
    StoredModelConfig,
)
from components.model_store.mount import (
    JOB_MOUNT_POINT,
    NODE_MOUNT_POINT,
    CacheSpec,
    MountSpec,
    SecretRef,
    StoreAccess,
    WarmupSpec,
)
from fleet_agent import constants as agent_constants

if TYPE_CHECKING:  # the config and MountSpec load without the cloud SDKs (the `fleet` clients read them)
    from components.model_store.store import RegionalModelStoreOutputs
    from components.network import NetworkOutputs

__all__ = [
    "MODEL_STORE_AUTH_TOKEN",
    "SECRETS",
    "CacheSpec",
    "ModelStoreCacheConfig",
    "ModelStoreConfig",
    "ModelStoreMetadataConfig",
    "ModelStoreOutputs",
    "MountSpec",
    "SecretRef",
    "StoreAccess",
    "StoredModelConfig",
    "WarmupSpec",
    "declare",
]

SECRETS: list[SecretSpec] = [MODEL_STORE_AUTH_TOKEN]


@dataclass(frozen=True)
class ModelStoreOutputs:
    config: ModelStoreConfig
    regions: dict[str, RegionalModelStoreOutputs] = field(default_factory=dict)
    gcs_bucket: str | None = None

    def mount(self, region: str, model: str) -> MountSpec:
        """How a node in `region` mounts `model` (a name from modelStore.models)."""
        store = self.regions[region]
        cache = self.config.cache
        return MountSpec(
            kind="juicefs",
            volume=store.volume,
            model=model,
            path=self.config.model(model).directory,
            mount_point=NODE_MOUNT_POINT,
            read_only=True,
            metadata_url=store.metadata_url,
            metadata_password=store.metadata_password,
            storage="s3",
            bucket_url=store.bucket_url,
            cache=CacheSpec(
                directory=agent_constants.STORE_CACHE_DIR,
                size_mib=cache.size_gib * 1024,
                free_space_ratio=cache.free_space_ratio,
                prefetch=cache.prefetch,
                buffer_size_mib=cache.buffer_size_mib,
            ),
            warmup=WarmupSpec(enabled=True, threads=cache.warmup_threads),
        )

    def gcs_mount(self, model: str) -> MountSpec:
        """How a batch job mounts `model`: the store's GCS bucket, read-only, at /models."""
        if self.gcs_bucket is None:
            raise KeyError("the model store declared no GCS bucket (there are no batch jobs)")
        return MountSpec(
            kind="gcs",
            volume=self.gcs_bucket,
            model=model,
            path=self.config.model(model).directory,
            mount_point=JOB_MOUNT_POINT,
            read_only=True,
            storage="gcs",
        )

    def access(self, region: str) -> StoreAccess:
        return self.regions[region].access

    def exports(self) -> dict[str, Any]:
        if not self.regions and self.gcs_bucket is None:
            return {}
        return {
            "modelStore": {
                "models": self.config.names,
                "volumes": {
                    region: {
                        "volume": store.volume,
                        "uuid": store.volume_uuid,
                        "bucket": store.bucket,
                        "metadataUrl": store.metadata_url,
                        "tokenSecret": store.metadata_password.secret_id,
                    }
                    for region, store in self.regions.items()
                },
                **({"gcsBucket": self.gcs_bucket} if self.gcs_bucket else {}),
            }
        }

    def budgets(self) -> dict[str, Any]:
        return {}


def declare(
    stack: StackContext,
    *,
    config: ModelStoreConfig,
    networks: NetworkOutputs,
    kms_key_arns: dict[str, pulumi.Output[str]],
    secrets: StackSecrets,
    log_retention_days: int,
    regions: Sequence[str],
    gcp: tuple[str, str] | None = None,
) -> ModelStoreOutputs:
    """A volume in each of `regions` (`models-<region>`), and the batch jobs' bucket (`models-gcs`) when
    `gcp` (project, region) is given."""
    from components.model_store.store import ModelStore, ModelStoreArgs

    token = secrets.require(MODEL_STORE_AUTH_TOKEN.key) if regions else None
    built: dict[str, RegionalModelStoreOutputs] = {}
    for index, region in enumerate(regions):
        net = networks.regions[region]
        assert token is not None
        built[region] = ModelStore(
            f"models-{region}",
            ModelStoreArgs(
                config=config,
                stack=stack,
                region=net.region,
                vpc_id=net.vpc_id,
                private_subnet_ids=net.private_subnet_ids,
                kms_key_arn=kms_key_arns[region],
                auth_token=token,
                log_retention_days=log_retention_days,
                deletion_protection=stack.deletion_protection,
                index=index,
            ),
        ).outputs
    gcs_bucket = None
    if gcp is not None:
        from components.model_store.gcs import GcsModelStore, GcsModelStoreArgs

        project, gcp_region = gcp
        gcs_bucket = GcsModelStore(
            "models-gcs", GcsModelStoreArgs(stack=stack, gcp=stack.gcp(project, gcp_region))
        ).bucket
    return ModelStoreOutputs(config=config, regions=built, gcs_bucket=gcs_bucket)
