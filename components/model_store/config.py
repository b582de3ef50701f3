"""The `modelStore` section: the models the store holds, its metadata Redis, and the nodes' local cache.

Pools and batch jobs name models from `models` (their own sections' rules check it at plan time); the
node checks the model's manifest in the mounted volume before it warms or serves it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from components.core.config import Problem, SecretSpec, Section, StackShape, StackView, rule
from components.core.fields import ElastiCacheNodeType, elasticache_password
from fleet_agent import constants as agent_constants
from fleet_agent.manifest import model_path, path_problem

# A model's name as its engine knows it: a Hugging Face repository (vLLM) or an Ollama tag.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")
# JuiceFS `format` block sizes (KiB powers of two from 64 KiB to 16 MiB); whole MiB here.
BLOCK_SIZES_MIB = (1, 2, 4, 8, 16)


def _model_name(value: str) -> str:
    if not _MODEL_NAME.match(value):
        raise ValueError(
            f"got {value!r}; expected the engine's model id: a Hugging Face repository "
            "(meta-llama/Llama-3.1-8B-Instruct) or an Ollama tag (qwen2.5:14b)"
        )
    return value


def _volume_path(value: str) -> str:
    problem = path_problem(value)
    if problem:
        raise ValueError(problem)
    return value


StoredModelName = Annotated[str, AfterValidator(_model_name)]
VolumePath = Annotated[str, AfterValidator(_volume_path)]


class StoredModelConfig(Section):
    """A model the store holds: `fleet models sync` copies it in, `fleet models verify` checks it."""

    list_key = "name"

    name: StoredModelName
    path: VolumePath | None = Field(
        default=None, description="its directory in the volume; default: the name, ':' as a level"
    )
    size_gib: float | None = Field(
        default=None,
        gt=0,
        le=4096,
        description="its weights on disk; sizes how long a node may take to load it (default: what fits "
        "in the GPU memory of the node that serves it)",
    )

    @property
    def directory(self) -> str:
        return self.path if self.path is not None else model_path(self.name)


class ModelStoreMetadataConfig(Section):
    """The volume's metadata Redis in each region (ElastiCache, its own: never the gateway's)."""

    node_type: ElastiCacheNodeType = "cache.t4g.small"
    replicas: int = Field(default=0, ge=0, le=5, description="replicas besides the primary; >= 1 is Multi-AZ")
    # Without its metadata the volume's chunks are unreadable: daily snapshots are its backup.
    snapshot_retention_days: int = Field(default=1, ge=0, le=35)

    @classmethod
    def shape_defaults(cls, shape: StackShape) -> dict[str, Any]:
        return {"replicas": 1} if shape.tier == "prod" else {}  # prod's rule: Multi-AZ


class ModelStoreCacheConfig(Section):
    """Each node's local cache (on the instance store when the node has one)."""

    size_gib: int = Field(default=agent_constants.STORE_CACHE_SIZE_MIB // 1024, ge=1, le=65536)
    free_space_ratio: float = Field(default=agent_constants.STORE_FREE_SPACE_RATIO, ge=0, lt=1)
    prefetch: int = Field(default=2, ge=0, le=256, description="blocks read ahead in parallel")
    buffer_size_mib: int = Field(default=1024, ge=32, le=65536)
    warmup_threads: int = Field(default=agent_constants.STORE_WARMUP_THREADS, ge=1, le=256)


class ModelStoreConfig(Section):
    """`modelStore`: a JuiceFS volume per region with GPU pools (S3 for the chunks, a metadata Redis of its
    own), mounted read-only on every node; for batch jobs (Cloud Run), a GCS bucket they mount directly."""

    models: list[StoredModelConfig] = Field(default_factory=list)
    metadata: ModelStoreMetadataConfig = Field(default_factory=ModelStoreMetadataConfig)
    cache: ModelStoreCacheConfig = Field(default_factory=ModelStoreCacheConfig)
    block_size_mib: int = Field(default=4, description="JuiceFS block size (format --block-size)")

    def model(self, name: str) -> StoredModelConfig:
        found = next((m for m in self.models if m.name == name), None)
        if found is None:
            raise KeyError(f"{name} is not in modelStore.models")
        return found

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]


@rule(ModelStoreConfig)
def _store_fits(store: ModelStoreConfig, view: StackView) -> Iterator[Problem]:
    if store.block_size_mib not in BLOCK_SIZES_MIB:
        sizes = ", ".join(map(str, BLOCK_SIZES_MIB))
        yield "blockSizeMib", f"got {store.block_size_mib}; JuiceFS takes: {sizes}"
    # The metadata Redis exists only where something mounts the store (GPU pools, Kubernetes clusters).
    if view.tier == "prod" and view.store_regions and store.metadata.replicas < 1:
        yield (
            "metadata.replicas",
            f"got {store.metadata.replicas}; prod keeps at least 1 replica in another zone (Multi-AZ): "
            "losing the metadata Redis loses the volume",
        )
    if view.tier == "prod" and view.store_regions and store.metadata.snapshot_retention_days < 1:
        yield "metadata.snapshotRetentionDays", "got 0; prod keeps daily snapshots of the volume's metadata"
    directories: dict[str, str] = {}
    for i, model in enumerate(store.models):
        if model.path is None:
            problem = path_problem(model.name.replace(":", "/"))
            if problem:
                yield f"models[{i}].name", f"{problem}; give models[{i}].path"
                continue
        other = directories.setdefault(model.directory, model.name)
        if other != model.name:
            yield f"models[{i}]", f"{model.name} would share the directory {model.directory} with {other}"


MODEL_STORE_AUTH_TOKEN = SecretSpec(
    "modelStoreAuthToken",
    "auth token of the model store's metadata Redis: 16-128 ASCII letters, digits and ! & # $ ^ < > -",
    check=elasticache_password("an AUTH token"),
    needed=lambda view: bool(view.store_regions),
)
