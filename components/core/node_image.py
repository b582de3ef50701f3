"""The node image as the program sees it: the one recipe (node_image/recipe) builds the AMI the GPU pools
boot and the GPU container image the batch jobs (and Kubernetes) run, so what it can carry is one fact.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from components.core.config import one_of
from components.core.fields import listed

NODE_IMAGE_DIR = Path(__file__).resolve().parents[2] / "node_image"
RECIPE_DIR = NODE_IMAGE_DIR / "recipe"

# Engines the GPU image can carry. llama.cpp publishes no Linux CUDA build (releases b6500 to b10356 ship
# CUDA for Windows only) and the recipe does not build one from source (about 4.5 minutes per CUDA
# architecture, measured on 16 cores), so a GPU image does not carry it.
IMAGE_ENGINES: tuple[str, ...] = ("vllm", "ollama")
# The container image's build: `docker build -f node_image/Dockerfile .` from the repository root.
DOCKERFILE = "node_image/Dockerfile"
BUILD_CONTEXT = "."


def recipe_versions() -> dict[str, str]:
    """node_image/recipe/versions.env as a mapping: every version the image pins, in one place (the model
    store's format function runs the same JuiceFS release as the nodes)."""
    pairs = (line.split("=", 1) for line in (RECIPE_DIR / "versions.env").read_text().splitlines())
    return {k.strip(): v.strip() for k, v in (p for p in pairs if len(p) == 2) if not k.startswith("#")}


def image_engine(allowed: Sequence[str] = IMAGE_ENGINES, why: str = "") -> Callable[[str], str]:
    """A field validator: one of `allowed` (engines the image carries), llama.cpp refused with the reason."""

    def check(value: str) -> str:
        because = f" ({why})" if why else ""
        if value == "llamacpp":
            raise ValueError(
                "got 'llamacpp'; llama.cpp publishes no Linux CUDA build (releases b6500 to b10356 ship CUDA "
                "for Windows only) and the image recipe does not build one, so the GPU image does not carry "
                f"it; allowed{because}: {one_of(allowed)}"
            )
        if value not in allowed:
            raise ValueError(f"got {value!r}; allowed{because}: {one_of(allowed)}")
        return value

    return check


_ENGINE_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")


def _engine_model(value: str) -> str:
    if not _ENGINE_MODEL_RE.match(value):
        raise ValueError(
            f"got {value!r}; expected the engine's model id: a Hugging Face repository "
            "(meta-llama/Llama-3.1-8B-Instruct) for vllm, a model tag (qwen2.5:14b) for ollama"
        )
    return value


# What a GPU node or pod serves: an engine the image carries, and the id that engine knows the model by.
EngineName = Annotated[str, AfterValidator(image_engine()), listed(IMAGE_ENGINES)]
EngineModelId = Annotated[str, AfterValidator(_engine_model)]
