"""The node image the program bakes: one Image Builder component per recipe step (the recipe's own list),
each fetching the bundle the program uploads and running that step; the bundle is the tree the Dockerfile
copies, so the AMI and the container run the same recipe; a change to it rebuilds the image."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
import yaml

from components.core.catalog.resource_types import (
    IMAGE_BUILDER_COMPONENT,
    IMAGE_BUILDER_DISTRIBUTION,
    IMAGE_RECIPE,
    S3_OBJECT,
)
from components.gpu_pools.node_image import NODE_IMAGE_DIR, bundle_digest, bundle_files, recipe_steps

COMPONENT = IMAGE_BUILDER_COMPONENT


def test_every_recipe_step_is_a_component_in_the_recipes_order(render) -> None:
    prod = render("prod")
    components = {c.outputs["arn"]: c for c in prod.of_type(COMPONENT)}
    bundle = prod.one(S3_OBJECT, "node-image-bundle")
    uri = f"s3://{bundle.inputs['bucket']}/{bundle.inputs['key']}"
    for engine in ("vllm", "ollama"):
        recipe = prod.one(IMAGE_RECIPE, f"node-image-{engine}")
        used = [components[c["componentArn"]] for c in recipe.inputs["components"]]
        assert [c.name.removeprefix("node-image-") for c in used] == recipe_steps()
        for step, component in zip(recipe_steps(), used, strict=True):
            document = yaml.safe_load(component.inputs["data"])
            (phase,) = document["phases"]
            assert phase["name"] == ("test" if step == "validate" else "build")
            fetch, run, *rest = phase["steps"]
            assert fetch["action"] == "S3Download" and fetch["inputs"][0]["source"] == uri
            assert run["action"] == "ExecuteBash"
            assert f"STEP={step} bash /tmp/fleet-image/recipe/provision.sh" in run["inputs"]["commands"][-1]
            assert "TARGET=ami ENGINE='{{ Engine }}'" in run["inputs"]["commands"][-1]
            assert [s["action"] for s in rest] == (["Reboot"] if step == "nvidia" else [])


def test_the_bundle_is_what_the_dockerfile_copies(render) -> None:
    files = bundle_files()
    dockerfile = (NODE_IMAGE_DIR / "Dockerfile").read_text()
    copied = [
        source.removeprefix("node_image/")
        for line in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE)
        for source in line.split()
    ]
    for source in copied:
        assert any(name == source or name.startswith(source + "/") for name in files), source
    assert "recipe/provision.sh" in files and "recipe/versions.env" in files
    assert "agent/fleet_agent/aws.py" in files and not any("__pycache__" in n for n in files)
    bundle = render("prod").one(S3_OBJECT, "node-image-bundle")
    assert bundle.inputs["key"] == f"node-image/bundle-{bundle_digest(files)}.zip"


def test_a_change_to_any_bundled_file_is_a_new_bundle(tmp_path: Path) -> None:
    step = tmp_path / "engine.sh"
    step.write_text("echo vllm\n")
    before = bundle_digest({"recipe/steps/engine.sh": step})
    step.write_text("echo vllm 0.34\n")
    assert bundle_digest({"recipe/steps/engine.sh": step}) != before
    assert bundle_digest({"recipe/steps/other.sh": step}) != bundle_digest({"recipe/steps/engine.sh": step})


def test_the_ami_names_are_what_image_builder_accepts(render) -> None:
    model = botocore.session.get_session().get_service_model("imagebuilder")
    shape = model.shape_for("AmiNameString")
    pattern, low, high = shape.metadata["pattern"], shape.metadata["min"], shape.metadata["max"]
    for distribution in render("prod").of_type(IMAGE_BUILDER_DISTRIBUTION):
        for entry in distribution.inputs["distributions"]:
            name = entry["amiDistributionConfiguration"]["name"]
            assert re.fullmatch(pattern, name) and low <= len(name) <= high, name
            assert "{{ imagebuilder:buildDate }}" in name  # unique per build
