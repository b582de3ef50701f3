"""What a consumer of the model store gets: how to mount one model read-only, never the store's internals.

A `MountSpec` carries what the node's agent needs (its `[model_store]` table), and what a JuiceFS CSI
PersistentVolume needs (volume name, metadata URL and where its password lives, storage and bucket,
read-only, mount options with the cache directory and size, warmup), in cloud-neutral terms. The secret
is a reference (`SecretRef`), never its value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

from fleet_agent import constants as agent_constants

# Where nodes mount the volume, and where a Cloud Run job mounts its bucket.
NODE_MOUNT_POINT = agent_constants.STORE_MOUNT_POINT
JOB_MOUNT_POINT = "/models"


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: an AWS Secrets Manager secret (its ARN) and the key in its JSON object."""

    secret_id: pulumi.Input[str]
    key: str
    store: Literal["aws-secrets-manager"] = "aws-secrets-manager"


@dataclass(frozen=True)
class CacheSpec:
    directory: str
    size_mib: int
    free_space_ratio: float
    prefetch: int
    buffer_size_mib: int


@dataclass(frozen=True)
class WarmupSpec:
    """Warm the model's files (its manifest's list) into the local cache before the engine starts."""

    enabled: bool
    threads: int


@dataclass(frozen=True)
class StoreAccess:
    """What a node needs to reach one region's store: a security group that may reach the metadata Redis,
    and the IAM statements that read the chunks and the metadata password."""

    client_security_group_id: pulumi.Input[str]
    statements: Sequence[dict[str, Any]]


@dataclass(frozen=True)
class MountSpec:
    kind: Literal["juicefs", "gcs"]
    volume: str  # the JuiceFS volume's name; for gcs, the bucket's
    model: str  # the model's name in the store (what the pool or job serves)
    path: str  # the model's directory in the volume
    mount_point: str
    read_only: bool = True
    # JuiceFS only: the metadata Redis without credentials (rediss://host:6379/1), and its password.
    metadata_url: pulumi.Input[str] | None = None
    metadata_password: SecretRef | None = None
    storage: str | None = None  # the object store JuiceFS writes chunks to ("s3")
    bucket_url: pulumi.Input[str] | None = None
    cache: CacheSpec | None = None
    warmup: WarmupSpec | None = None
    metadata_cache_s: int = int(agent_constants.STORE_METADATA_CACHE_S)
    extra_options: tuple[str, ...] = field(default=())

    @property
    def model_dir(self) -> str:
        return f"{self.mount_point.rstrip('/')}/{self.path}"

    def mount_options(self) -> list[str]:
        """JuiceFS mount options (`juicefs mount -o`, a CSI PersistentVolume's mountOptions)."""
        if self.kind != "juicefs":
            return ["ro"] if self.read_only else []
        options: list[str] = []
        if self.read_only:
            cache = f"{self.metadata_cache_s}s"
            options += [
                "read-only",
                "no-bgjob",
                "backup-meta=0",
                f"attr-cache={cache}",
                f"entry-cache={cache}",
                f"dir-entry-cache={cache}",
                f"open-cache={cache}",
            ]
        if self.cache is not None:
            options += [
                f"cache-dir={self.cache.directory}",
                f"cache-size={self.cache.size_mib}",
                f"free-space-ratio={self.cache.free_space_ratio:g}",
                f"prefetch={self.cache.prefetch}",
                f"buffer-size={self.cache.buffer_size_mib}",
            ]
        return [*options, "no-usage-report", *self.extra_options]

    def agent_settings(self, metadata_url: str, secret_id: str, *, mode: str = "attach") -> dict[str, Any]:
        """The node agent's `[model_store]` table, with this spec's Outputs resolved by the caller.

        attach: the host's fleet-model-store unit mounts the volume, reading the password from the secret;
        the agent remounts a stale mount by restarting that unit."""
        assert self.kind == "juicefs" and self.metadata_password is not None
        settings: dict[str, Any] = {
            "volume": self.volume,
            "meta_url": metadata_url,
            "meta_secret": {"aws_secret_id": secret_id, "key": self.metadata_password.key},
            "mount_point": self.mount_point,
            "mode": mode,
            "model_dir": self.path,
            "read_only": self.read_only,
            "metadata_cache_s": float(self.metadata_cache_s),
        }
        if mode == "attach":
            settings["remount_command"] = list(agent_constants.STORE_REMOUNT_COMMAND)
        if self.cache is not None:
            settings |= {
                "cache_dir": self.cache.directory,
                "cache_size_mib": self.cache.size_mib,
                "free_space_ratio": self.cache.free_space_ratio,
                "prefetch": self.cache.prefetch,
                "buffer_size_mib": self.cache.buffer_size_mib,
            }
        if self.warmup is not None:
            settings |= {"warmup": self.warmup.enabled, "warmup_threads": self.warmup.threads}
        return settings
