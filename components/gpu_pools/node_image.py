"""NodeImage: the GPU node AMI, baked by EC2 Image Builder from node_image/recipe, once per engine.

    node_image/ (recipe, units, agent) --zip--> S3 bundle (key carries its digest)
    Image Builder components: one per recipe step (STEP=<name>, ENGINE a parameter), build phase; the
      `validate` step is the test phase, run on an instance launched from the new AMI
    recipe per engine (pinned parent, encrypted gp3 root) + infrastructure (GPU build instance in a
      private subnet, IMDSv2 required) + distribution (every region with pools) -> image per engine

A change anywhere in the bundle changes its key, so the components, the recipes and the images are
replaced: a new AMI, a new launch template version, an instance refresh of every pool on that engine.
The same recipe builds the container image (node_image/Dockerfile, TARGET=container).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import yaml

from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.core.iam import instance_role
from components.core.node_image import NODE_IMAGE_DIR, RECIPE_DIR, recipe_versions
from components.core.security import SecurityGroups
from components.core.storage import private_bucket
from components.gpu_pools.config import NodeImageConfig

# Where the build instance unpacks the bundle; the layout the Dockerfile gives STAGING too.
STAGING = "/tmp/fleet-image"
ENGINE_PARAMETER = "Engine"
# The NVIDIA driver step ends with a reboot, so the later steps and the test run on the driver's kernel.
REBOOT_AFTER = ("nvidia",)
# Ubuntu's root device (the parent image's block device mapping).
ROOT_DEVICE = "/dev/sda1"
# Image Builder's own policy for build instances, and Systems Manager, which it drives them through.
BUILD_INSTANCE_POLICIES = (
    "arn:aws:iam::aws:policy/EC2InstanceProfileForImageBuilder",
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
)
# A vLLM bake (driver, CUDA wheels, tests on a second instance) takes most of an hour; the provider's
# default create timeout is 60 minutes.
IMAGE_CREATE_TIMEOUT = "3h"
BUILD_LOG_PREFIX = "build-logs"


def recipe_steps() -> list[str]:
    """The recipe's steps in order, as provision.sh lists them (the one place they are named)."""
    found = re.search(r"^STEPS=\((.*)\)$", (RECIPE_DIR / "provision.sh").read_text(), re.MULTILINE)
    assert found is not None, "node_image/recipe/provision.sh lists no STEPS"
    return found.group(1).split()


def bundle_files() -> dict[str, Path]:
    """What the build instance needs, by its path in the bundle: the same tree the Dockerfile copies."""
    agent = NODE_IMAGE_DIR / "agent"
    files = {
        "agent/pyproject.toml": agent / "pyproject.toml",
        "agent/requirements.lock.txt": agent / "requirements.lock.txt",
        "config/agent.example.toml": NODE_IMAGE_DIR / "config" / "agent.example.toml",
    }
    for root, prefix, pattern in (
        (RECIPE_DIR, "recipe", "*"),
        (NODE_IMAGE_DIR / "systemd", "systemd", "*"),
        (agent / "fleet_agent", "agent/fleet_agent", "*.py"),
    ):
        for path in sorted(root.rglob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                files[f"{prefix}/{path.relative_to(root).as_posix()}"] = path
    return dict(sorted(files.items()))


def bundle_digest(files: Mapping[str, Path]) -> str:
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def component_document(step: str, bundle_uri: str) -> str:
    """The AWSTOE document of one step: fetch the bundle, unpack it, run the step for the engine."""
    phase = "test" if step == "validate" else "build"
    run = [
        f"rm -rf {STAGING} && python3 -m zipfile -e {STAGING}.zip {STAGING}",
        f"TARGET=ami ENGINE='{{{{ {ENGINE_PARAMETER} }}}}' STAGING={STAGING} STEP={step} "
        f"bash {STAGING}/recipe/provision.sh",
    ]
    steps: list[dict[str, object]] = [
        {
            "name": "FetchRecipe",
            "action": "S3Download",
            "inputs": [{"source": bundle_uri, "destination": f"{STAGING}.zip", "overwrite": True}],
        },
        {"name": "Run", "action": "ExecuteBash", "inputs": {"commands": run}},
    ]
    if step in REBOOT_AFTER:
        steps.append({"name": "Reboot", "action": "Reboot", "inputs": {"delaySeconds": 10}})
    document = {
        "name": f"fleet-node-{step}",
        "description": f"{PROJECT} node image recipe, step {step} (node_image/recipe/steps/{step}.sh)",
        "schemaVersion": 1.0,
        "parameters": [
            {ENGINE_PARAMETER: {"type": "string", "default": "vllm", "description": "vllm or ollama"}}
        ],
        "phases": [{"name": phase, "steps": steps}],
    }
    return yaml.safe_dump(document, sort_keys=False)


@dataclass(frozen=True)
class NodeImageArgs:
    config: NodeImageConfig
    stack: StackContext
    region: RegionContext  # where the image is built: the primary region
    subnet_id: pulumi.Input[str]  # a private subnet there (with NAT: the bake downloads packages)
    vpc_id: pulumi.Input[str]
    engines: Sequence[str]
    distribution_regions: Sequence[str]
    deletion_protection: bool


@dataclass(frozen=True)
class NodeImageOutputs:
    # Per engine, per region: the AMI id the pools launch.
    amis: dict[str, dict[str, pulumi.Output[str]]]
    image_arns: dict[str, pulumi.Output[str]]


class NodeImage(pulumi.ComponentResource):
    outputs: NodeImageOutputs

    def __init__(self, name: str, args: NodeImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            "inference-fleet:gpu_pools:NodeImage",
            name,
            None,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[args.region.provider])),
        )
        child = pulumi.ResourceOptions(parent=self)
        stack, config = args.stack, args.config

        files = bundle_files()
        bucket = private_bucket(f"{name}-bundle", child, force_destroy=not args.deletion_protection).bucket
        key = f"node-image/bundle-{bundle_digest(files)}.zip"
        bundle = aws.s3.BucketObjectv2(
            f"{name}-bundle",
            bucket=bucket.id,
            key=key,
            source=pulumi.AssetArchive({path: pulumi.FileAsset(str(file)) for path, file in files.items()}),
            content_type="application/zip",
            opts=child,
        )
        bundle_uri = pulumi.Output.concat("s3://", bundle.bucket, "/", bundle.key)

        profile = instance_role(
            f"{name}-build",
            [
                {
                    "Sid": "ReadRecipeBundle",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": pulumi.Output.concat(bucket.arn, "/node-image/*"),
                },
                {
                    # The build's logs (the infrastructure configuration's S3 logging).
                    "Sid": "WriteBuildLogs",
                    "Effect": "Allow",
                    "Action": "s3:PutObject",
                    "Resource": pulumi.Output.concat(bucket.arn, f"/{BUILD_LOG_PREFIX}/*"),
                },
            ],
            child,
            managed_policy_arns=BUILD_INSTANCE_POLICIES,
        )
        groups = SecurityGroups(name, args.vpc_id, child)
        build_sg = groups.group(
            "build-sg", "node image build instances: out to package mirrors and AWS APIs only"
        )
        for port in (80, 443):  # Ubuntu's archive is HTTP (signed); the rest is HTTPS
            groups.allow(
                "out",
                f"build-out-{port}",
                build_sg.id,
                port,
                "package downloads and AWS APIs during the bake",
                cidr="0.0.0.0/0",
            )

        components = [
            aws.imagebuilder.Component(
                f"{name}-{step}",
                platform="Linux",
                version="1.0.0",
                description=f"node image recipe step {step}",
                data=bundle_uri.apply(lambda uri, step=step: component_document(step, uri)),
                opts=child,
            )
            for step in recipe_steps()
        ]
        infrastructure = aws.imagebuilder.InfrastructureConfiguration(
            f"{name}-infra",
            description=f"{PROJECT}/{stack.stack} GPU node image builds",
            instance_profile_name=profile.name,
            instance_types=[config.build_instance_type],
            subnet_id=args.subnet_id,
            security_group_ids=[build_sg.id],
            instance_metadata_options=aws.imagebuilder.InfrastructureConfigurationInstanceMetadataOptionsArgs(
                http_tokens="required", http_put_response_hop_limit=2
            ),
            terminate_instance_on_failure=True,
            logging=aws.imagebuilder.InfrastructureConfigurationLoggingArgs(
                s3_logs=aws.imagebuilder.InfrastructureConfigurationLoggingS3LogsArgs(
                    s3_bucket_name=bucket.id, s3_key_prefix=BUILD_LOG_PREFIX
                )
            ),
            opts=child,
        )
        # What the image pins, on every AMI (tag values as AWS takes them).
        pinned = {k.lower(): v for k, v in recipe_versions().items() if not k.endswith(("SHA256", "URL"))}
        amis: dict[str, dict[str, pulumi.Output[str]]] = {}
        arns: dict[str, pulumi.Output[str]] = {}
        for engine in args.engines:
            recipe = aws.imagebuilder.ImageRecipe(
                f"{name}-{engine}",
                version="1.0.0",
                description=f"GPU node with {engine}: node_image/recipe",
                parent_image=config.parent_image,
                components=[
                    aws.imagebuilder.ImageRecipeComponentArgs(
                        component_arn=component.arn,
                        parameters=[
                            aws.imagebuilder.ImageRecipeComponentParameterArgs(
                                name=ENGINE_PARAMETER, value=engine
                            )
                        ],
                    )
                    for component in components
                ],
                block_device_mappings=[
                    aws.imagebuilder.ImageRecipeBlockDeviceMappingArgs(
                        device_name=ROOT_DEVICE,
                        ebs=aws.imagebuilder.ImageRecipeBlockDeviceMappingEbsArgs(
                            volume_size=config.root_volume_gib,
                            volume_type="gp3",
                            encrypted="true",
                            delete_on_termination="true",
                        ),
                    )
                ],
                opts=child,
            )
            # One per engine: AMI names are unique per region, and builds of two engines start together.
            distribution = aws.imagebuilder.DistributionConfiguration(
                f"{name}-{engine}",
                description=f"{PROJECT}/{stack.stack} GPU node images ({engine}) to every region with pools",
                distributions=[
                    aws.imagebuilder.DistributionConfigurationDistributionArgs(
                        region=region,
                        ami_distribution_configuration=aws.imagebuilder.DistributionConfigurationDistributionAmiDistributionConfigurationArgs(
                            name=f"{PROJECT}-{stack.stack}-{engine}-{{{{ imagebuilder:buildDate }}}}",
                            description=f"{PROJECT} GPU node with {engine} (node_image/recipe)",
                            ami_tags={**dict(stack.tags), "engine": engine, **pinned},
                        ),
                    )
                    for region in args.distribution_regions
                ],
                opts=child,
            )
            image = aws.imagebuilder.Image(
                f"{name}-{engine}",
                image_recipe_arn=recipe.arn,
                infrastructure_configuration_arn=infrastructure.arn,
                distribution_configuration_arn=distribution.arn,
                image_tests_configuration=aws.imagebuilder.ImageImageTestsConfigurationArgs(
                    image_tests_enabled=True, timeout_minutes=60
                ),
                enhanced_image_metadata_enabled=True,
                opts=pulumi.ResourceOptions(
                    parent=self, custom_timeouts=pulumi.CustomTimeouts(create=IMAGE_CREATE_TIMEOUT)
                ),
            )
            arns[engine] = image.arn
            amis[engine] = {
                region: image.output_resources.apply(
                    lambda resources, region=region: next(
                        ami.image or "" for r in resources for ami in (r.amis or []) if ami.region == region
                    )
                )
                for region in args.distribution_regions
            }

        self.outputs = NodeImageOutputs(amis=amis, image_arns=arns)
        self.register_outputs({"imageArns": arns})
