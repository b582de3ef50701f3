"""The node image's container build: node_image/Dockerfile from the repository root, one image per
engine, pushed to a registry. Batch (Artifact Registry) and Kubernetes (ECR) differ only in where the
image goes and how they log in."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pulumi
import pulumi_docker_build as docker_build

from components.core.node_image import BUILD_CONTEXT, DOCKERFILE


def node_container_images(
    name: str,
    parent: pulumi.Resource,
    engines: Iterable[str],
    *,
    tag: Callable[[str], pulumi.Input[str]],
    registry: docker_build.RegistryArgs,
    repository: pulumi.Resource,
) -> dict[str, pulumi.Output[str]]:
    """Each engine's image (`<name>-node-<engine>`, tagged `tag(engine)`), built by the component's own
    docker-build provider and pushed once `repository` exists. Each value is the pushed tag with the
    build's digest: jobs and pods run exactly what was built."""
    builder = docker_build.Provider(f"{name}-docker-build", opts=pulumi.ResourceOptions(parent=parent))
    images: dict[str, pulumi.Output[str]] = {}
    for engine in engines:
        image = docker_build.Image(
            f"{name}-node-{engine}",
            context=docker_build.BuildContextArgs(location=BUILD_CONTEXT),
            dockerfile=docker_build.DockerfileArgs(location=DOCKERFILE),
            build_args={"ENGINE": engine},
            platforms=[docker_build.Platform.LINUX_AMD64],
            push=True,
            tags=[tag(engine)],
            registries=[registry],
            opts=pulumi.ResourceOptions(parent=parent, provider=builder, depends_on=[repository]),
        )
        images[engine] = image.ref
    return images
