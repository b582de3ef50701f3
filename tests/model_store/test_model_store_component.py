"""The model store as the program declares it: per region with GPU pools a private, encrypted chunks bucket,
a metadata Redis of its own (TLS, auth, noeviction, Multi-AZ and snapshots in prod) that only the store's
clients and its format function reach, the format function inside the VPC with the pinned client; the
nodes' config mounting their region's volume; the batch jobs' bucket on GCP."""

from __future__ import annotations

import base64
import json
import tomllib
from typing import Any

import pytest
import yaml

from components.core.catalog.resource_types import (
    CACHE_PARAMETER_GROUP,
    CLOUD_RUN_JOB,
    GCS_BUCKET,
    IAM_ROLE_POLICY,
    KMS_KEY,
    LAMBDA_FUNCTION,
    LAMBDA_INVOCATION,
    LAMBDA_LAYER_VERSION,
    LAUNCH_TEMPLATE,
    REDIS_REPLICATION_GROUP,
    S3_BUCKET,
    S3_BUCKET_POLICY,
    S3_ENCRYPTION,
    S3_LIFECYCLE,
    S3_OBJECT,
    S3_PUBLIC_ACCESS_BLOCK,
    SECRET,
    SECURITY_GROUP,
    SECURITY_GROUP_EGRESS_RULE,
    SECURITY_GROUP_INGRESS_RULE,
    SUBNET,
)
from components.gpu_pools.user_data import AGENT_CONFIG_PATH, OLLAMA_ENV_PATH
from components.model_store.store import juicefs_release
from fleet.esc import STANDIN_PREFIX
from fleet.harness import RecordedResource, Rendering, is_secret
from fleet_agent import constants as agent_constants
from fleet_agent.config import AgentConfig
from functions.store_format.settings import FormatRequest, FormatSettings

STORE = "inference-fleet:model_store:ModelStore"
REDIS = REDIS_REPLICATION_GROUP
SG = SECURITY_GROUP
INGRESS = SECURITY_GROUP_INGRESS_RULE
EGRESS = SECURITY_GROUP_EGRESS_RULE
POOL_REGIONS = {"llama-8b": "us-east-1", "qwen-14b": "us-east-1", "llama-8b-west": "us-west-2"}
CODES = {"us-east-1": "use1", "us-west-2": "usw2"}


def in_store(
    rendering: Rendering, region: str, resource_type: str, name: str | None = None
) -> RecordedResource:
    store = rendering.one(STORE, f"models-{region}")
    found = [
        r
        for r in rendering.descendants(store)
        if r.type == resource_type and (name is None or r.name == name)
    ]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def in_pool(rendering: Rendering, pool: str, resource_type: str) -> RecordedResource:
    component = rendering.one("inference-fleet:gpu_pools:GpuNodePool", f"pool-{pool}")
    (found,) = [r for r in rendering.children(component) if r.type == resource_type]
    return found


def node_files(rendering: Rendering, pool: str) -> dict[str, str]:
    template = in_pool(rendering, pool, LAUNCH_TEMPLATE)
    document: dict[str, Any] = yaml.safe_load(base64.b64decode(template.inputs["userData"]).decode())
    return {entry["path"]: entry["content"] for entry in document["write_files"]}


def node_config(rendering: Rendering, pool: str) -> AgentConfig:
    return AgentConfig.model_validate(tomllib.loads(node_files(rendering, pool)[AGENT_CONFIG_PATH]))


@pytest.mark.parametrize("region", ["us-east-1", "us-west-2"])
def test_each_gpu_region_has_its_own_volume_with_a_private_encrypted_bucket(render, region: str) -> None:
    prod = render("prod")
    bucket = in_store(prod, region, S3_BUCKET)
    block = in_store(prod, region, S3_PUBLIC_ACCESS_BLOCK)
    assert block.inputs["bucket"] == bucket.id
    assert all(
        block.inputs[flag]
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    sse = in_store(prod, region, S3_ENCRYPTION)
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    policy = json.loads(in_store(prod, region, S3_BUCKET_POLICY).inputs["policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (rule,) = in_store(prod, region, S3_LIFECYCLE).inputs["rules"]
    assert rule["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 1}
    # Versioning stays off: JuiceFS never rewrites an object, old versions would only cost.
    assert not [
        r for r in prod.descendants(prod.one(STORE, f"models-{region}")) if "bucketVersioning" in r.type
    ]
    assert bucket.inputs["forceDestroy"] is False  # prod keeps the chunks
    exported = prod.outputs["modelStore"]["volumes"][region]
    assert exported["volume"] == f"fleet-prod-{CODES[region]}-models"
    assert exported["bucket"] == bucket.id


@pytest.mark.parametrize("region", ["us-east-1", "us-west-2"])
def test_the_metadata_redis_is_its_own_tls_with_auth_noeviction_and_multi_az_in_prod(
    render, region: str
) -> None:
    prod = render("prod")
    redis = in_store(prod, region, REDIS)
    assert redis.physical_name != prod.one(REDIS, f"control-plane-{region}-redis").physical_name
    inputs = redis.inputs
    assert inputs["atRestEncryptionEnabled"] is True and inputs["transitEncryptionEnabled"] is True
    assert inputs["transitEncryptionMode"] == "required"
    assert is_secret(inputs["authToken"])
    data_key = prod.one(KMS_KEY, f"data-{region}-key")  # the region's own key
    assert inputs["kmsKeyId"] == data_key.outputs["arn"]
    parameters = in_store(prod, region, CACHE_PARAMETER_GROUP)
    assert inputs["parameterGroupName"] == parameters.physical_name
    assert parameters.inputs["family"] == "redis7"
    assert {p["name"]: p["value"] for p in parameters.inputs["parameters"]} == {
        "maxmemory-policy": "noeviction"
    }
    assert (inputs["numCacheClusters"], inputs["multiAzEnabled"], inputs["automaticFailoverEnabled"]) == (
        2,
        True,
        True,
    )
    assert inputs["snapshotRetentionLimit"] == 7
    assert inputs["tags"] == {"fleet-role": "juicefs-metadata"}
    assert redis.options.protect
    token = in_store(prod, region, SECRET)
    assert token.options.protect and token.inputs["kmsKeyId"] == data_key.outputs["arn"]


def test_maintenance_never_hits_both_volumes_nor_the_gateways_redis_at_once(render) -> None:
    prod = render("prod")
    days = {r.name: r.inputs["maintenanceWindow"].split(":", 1)[0] for r in prod.of_type(REDIS)}
    store_days = {days["models-us-east-1-meta"], days["models-us-west-2-meta"]}
    gateway_days = {days["control-plane-us-east-1-redis"], days["control-plane-us-west-2-redis"]}
    assert len(store_days) == 2 and not store_days & gateway_days
    for region in ("us-east-1", "us-west-2"):
        redis = in_store(prod, region, REDIS)
        assert redis.inputs["snapshotWindow"] == "03:00-04:00"  # before any maintenance window


def rules_on(rendering: Rendering, group_id: str) -> list[dict[str, Any]]:
    found = []
    for kind, direction in ((INGRESS, "in"), (EGRESS, "out")):
        for rule in rendering.of_type(kind):
            if rule.inputs["securityGroupId"] == group_id:
                peer = rule.inputs.get("referencedSecurityGroupId") or rule.inputs.get("cidrIpv4")
                found.append({"direction": direction, "port": rule.inputs["fromPort"], "peer": peer})
    return found


@pytest.mark.parametrize("pool", sorted(POOL_REGIONS))
def test_only_the_stores_clients_and_its_format_function_reach_the_metadata(render, pool: str) -> None:
    prod = render("prod")
    region = POOL_REGIONS[pool]
    redis = in_store(prod, region, REDIS)
    (redis_sg,) = redis.inputs["securityGroupIds"]
    groups = {r.name: r.id for r in prod.descendants(prod.one(STORE, f"models-{region}")) if r.type == SG}
    client_sg, format_sg = groups[f"models-{region}-client-sg"], groups[f"models-{region}-format-sg"]
    assert sorted(rules_on(prod, redis_sg), key=str) == sorted(
        [
            {"direction": "in", "port": 6379, "peer": client_sg},
            {"direction": "in", "port": 6379, "peer": format_sg},
        ],
        key=str,
    )
    assert rules_on(prod, client_sg) == [{"direction": "out", "port": 6379, "peer": redis_sg}]
    # The pool's nodes are the store's clients (in their own region's store), through their launch template.
    template = in_pool(prod, pool, LAUNCH_TEMPLATE)
    assert template.inputs["vpcSecurityGroupIds"][1] == client_sg


def test_the_format_runs_inside_the_vpc_with_the_pinned_client(render) -> None:
    prod = render("prod")
    region, code = "us-east-1", "use1"
    function = in_store(prod, region, LAMBDA_FUNCTION)
    network = prod.one("inference-fleet:network:RegionalNetwork", f"network-{region}")
    private = [r.id for r in prod.descendants(network) if r.type == SUBNET and "private" in r.name]
    assert function.inputs["vpcConfig"]["subnetIds"] == private
    format_sg = in_store(prod, region, SG, f"models-{region}-format-sg")
    assert function.inputs["vpcConfig"]["securityGroupIds"] == [format_sg.id]
    release = juicefs_release()
    env = function.inputs["environment"]["variables"]
    assert set(env) == {"JUICEFS", "JUICEFS_SHA256"}
    assert FormatSettings.from_env(env) == FormatSettings(release["binary"], release["binary_sha256"])
    assert function.inputs["architectures"] == ["x86_64"]
    assert function.inputs["handler"] == "store_format.handler.handle"
    layer = in_store(prod, region, LAMBDA_LAYER_VERSION)
    assert function.inputs["layers"] == [layer.outputs["arn"]]
    wheel = in_store(prod, region, S3_OBJECT)
    assert (layer.inputs["s3Bucket"], layer.inputs["s3Key"]) == (wheel.inputs["bucket"], wheel.inputs["key"])
    assert wheel.inputs["source"].uri == release["wheel_url"]
    invocation = in_store(prod, region, LAMBDA_INVOCATION)
    assert invocation.inputs["functionName"] == function.outputs["name"]
    assert is_secret(invocation.inputs["input"])  # it carries the Redis token
    request = FormatRequest.from_event(json.loads(invocation.inputs["input"]["value"]))
    redis = in_store(prod, region, REDIS)
    assert request.meta_url == f"rediss://{redis.outputs['primaryEndpointAddress']}:6379/1"
    assert (request.volume.name, request.volume.storage) == (f"fleet-prod-{code}-models", "s3")
    bucket = in_store(prod, region, S3_BUCKET)
    assert request.bucket == f"https://{bucket.id}.s3.{region}.amazonaws.com"
    # Settings changes re-run it; it waits for the Redis it formats.
    assert json.loads(invocation.inputs["triggers"]["settings"]) == request.volume.to_event()
    assert redis.urn in invocation.property_dependencies["input"]
    role = in_store(prod, region, IAM_ROLE_POLICY)
    statements = {s["Sid"]: s for s in json.loads(role.inputs["policy"])["Statement"]}
    assert statements["VolumeObjects"]["Resource"] == f"{bucket.outputs['arn']}/fleet-prod-{code}-models/*"


@pytest.mark.parametrize("pool", sorted(POOL_REGIONS))
def test_every_node_mounts_its_regions_volume_read_only(render, pool: str) -> None:
    prod = render("prod")
    region = POOL_REGIONS[pool]
    config = node_config(prod, pool)
    store = config.model_store
    assert store is not None
    redis = in_store(prod, region, REDIS)
    token = in_store(prod, region, SECRET)
    assert store.volume == f"fleet-prod-{CODES[region]}-models"  # the standby's nodes: the standby's volume
    assert store.meta_url == f"rediss://{redis.outputs['primaryEndpointAddress']}:6379/1"
    assert store.meta_secret is not None and store.meta_secret.aws_secret_id == token.outputs["arn"]
    assert (store.mode, store.read_only) == ("attach", True)
    assert store.remount_command == list(agent_constants.STORE_REMOUNT_COMMAND)
    assert str(store.mount_point) == agent_constants.STORE_MOUNT_POINT
    assert str(store.cache_dir) == agent_constants.STORE_CACHE_DIR  # on the NVMe where there is one
    assert (store.cache_size_mib, store.prefetch, store.warmup) == (200 * 1024, 4, True)
    files = node_files(prod, pool)
    assert STANDIN_PREFIX not in "".join(files.values())  # the token stays in Secrets Manager
    # The node may read its volume's chunks and the token, nothing more of the store.
    policy = in_pool(prod, pool, IAM_ROLE_POLICY)
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    bucket = in_store(prod, region, S3_BUCKET)
    assert statements["ReadModelStoreChunks"]["Action"] == "s3:GetObject"
    assert statements["ReadModelStoreChunks"]["Resource"] == f"{bucket.outputs['arn']}/{store.volume}/*"
    assert statements["ReadModelStoreToken"]["Resource"] == token.outputs["arn"]


def test_engines_load_from_the_mount(render) -> None:
    prod = render("prod")
    vllm = node_config(prod, "llama-8b")
    assert (
        str(vllm.engine.model_path) == f"{agent_constants.STORE_MOUNT_POINT}/meta-llama/Llama-3.1-8B-Instruct"
    )
    assert vllm.model_store is not None and vllm.model_store.model_dir == "meta-llama/Llama-3.1-8B-Instruct"
    ollama = node_files(prod, "qwen-14b")
    # After the pool's concurrency (tests/gpu_pools/test_scaling.py), the model's directory in the mount.
    assert ollama[OLLAMA_ENV_PATH].endswith(
        f"OLLAMA_MODELS={agent_constants.STORE_MOUNT_POINT}/ollama/qwen2.5-14b\nOLLAMA_NOPRUNE=1\n"
    )
    assert OLLAMA_ENV_PATH not in node_files(prod, "llama-8b")


def test_dev_has_one_small_volume_it_may_destroy(render) -> None:
    dev = render("dev")
    assert [s.name for s in dev.of_type(STORE)] == ["models-us-east-1"]
    redis = in_store(dev, "us-east-1", REDIS)
    assert (redis.inputs["numCacheClusters"], redis.inputs["multiAzEnabled"]) == (1, False)
    assert not redis.options.protect
    assert in_store(dev, "us-east-1", S3_BUCKET).inputs["forceDestroy"] is True


def test_batch_jobs_mount_the_stores_gcs_bucket(render) -> None:
    prod = render("prod")
    bucket = prod.one(GCS_BUCKET, "models-gcs-bucket")
    assert bucket.physical_name == "acme-inference-prod-prod-models"
    assert (
        bucket.inputs["uniformBucketLevelAccess"] is True
        and bucket.inputs["publicAccessPrevention"] == "enforced"
    )
    assert bucket.inputs["lifecycleRules"][0]["action"] == {"type": "AbortIncompleteMultipartUpload"}
    assert prod.outputs["modelStore"]["gcsBucket"] == bucket.physical_name
    job = prod.one(CLOUD_RUN_JOB)
    task = job.inputs["template"]["template"]
    (volume,) = task["volumes"]
    assert volume["gcs"] == {"bucket": bucket.physical_name, "readOnly": True}
