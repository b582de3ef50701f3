"""The regional control planes as the program declares them: per-region ALB, gateway, Redis and Aurora,
who may reach whom, where the secrets go, and what the gateway is configured with."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from components.control_plane import gateway_metrics
from components.core.catalog.resource_types import (
    AWS_PROVIDER,
    CACHE_USER,
    CACHE_USER_GROUP,
    CERTIFICATE,
    CERTIFICATE_VALIDATION,
    ECR_PULL_THROUGH_CACHE_RULE,
    ECS_SERVICE,
    ECS_TASK_DEFINITION,
    IAM_ROLE_POLICY,
    KMS_KEY,
    LISTENER,
    LISTENER_RULE,
    LOAD_BALANCER,
    LOG_GROUP,
    RDS_CLUSTER,
    RDS_CLUSTER_INSTANCE,
    RDS_GLOBAL_CLUSTER,
    REDIS_REPLICATION_GROUP,
    ROUTE,
    ROUTE53_RECORD,
    ROUTE_TABLE,
    S3_BUCKET,
    S3_BUCKET_POLICY,
    S3_OBJECT,
    S3_PUBLIC_ACCESS_BLOCK,
    SCALABLE_TARGET,
    SCALING_POLICY,
    SECRET,
    SECRET_VERSION,
    SECURITY_GROUP,
    SECURITY_GROUP_EGRESS_RULE,
    SECURITY_GROUP_INGRESS_RULE,
    TARGET_GROUP,
    VPC_PEERING_CONNECTION,
    VPC_PEERING_CONNECTION_ACCEPTER,
)
from components.network import subnet_plan
from fleet.esc import STANDIN_PREFIX
from fleet.harness import RecordedResource, Rendering, is_secret

CONTROL_PLANE = "inference-fleet:control_plane:RegionalControlPlane"
DATA_TIER = "inference-fleet:data_tier:DataTier"
REGIONS = ("us-east-1", "us-west-2")


def in_region(rendering: Rendering, region: str, resource_type: str) -> list[RecordedResource]:
    """The control plane's and the data tier's resources of a type in a region (not the GPU pools', the model
    store's or the fleet controller's, which open their own ways in)."""
    provider = rendering.one(AWS_PROVIDER, f"aws-{region}").urn

    def of_pools(r: RecordedResource) -> bool:
        top = rendering.top_component(r)
        return top is not None and top.type.startswith(
            (
                "inference-fleet:gpu_pools:",
                "inference-fleet:model_store:",
                "inference-fleet:controller:",
                "inference-fleet:observability:",
            )
        )

    return [r for r in rendering.of_type(resource_type) if r.provider == provider and not of_pools(r)]


def one_in(
    rendering: Rendering, region: str, resource_type: str, name: str | None = None
) -> RecordedResource:
    found = [r for r in in_region(rendering, region, resource_type) if name is None or r.name == name]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def gateway_group(rendering: Rendering, region: str) -> RecordedResource:
    return one_in(rendering, region, TARGET_GROUP, f"control-plane-{region}-tg")


def gateway_secret(rendering: Rendering, region: str) -> RecordedResource:
    return one_in(rendering, region, SECRET, f"control-plane-{region}-gateway-secret")


def gateway_version(rendering: Rendering, region: str) -> RecordedResource:
    return one_in(
        rendering,
        region,
        SECRET_VERSION,
        f"control-plane-{region}-gateway-secret",
    )


def containers(rendering: Rendering, region: str) -> dict[str, dict[str, Any]]:
    return {
        c["name"]: c
        for c in json.loads(one_in(rendering, region, ECS_TASK_DEFINITION).inputs["containerDefinitions"])
    }


def container(rendering: Rendering, region: str) -> dict[str, Any]:
    return containers(rendering, region)["gateway"]


def strings(value: Any) -> Iterator[str]:
    """Every string in a recorded value that is not marked secret."""
    if is_secret(value):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def secret_value(value: Any) -> Any:
    assert is_secret(value), f"expected a secret, got {value!r}"
    return value["value"]


# --- topology -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_prod_runs_a_full_control_plane_in_each_region_under_its_own_provider(render, region):
    prod = render("prod")
    for resource_type in (LOAD_BALANCER, ECS_SERVICE, REDIS_REPLICATION_GROUP, RDS_CLUSTER):
        one_in(prod, region, resource_type)
    component = prod.one(CONTROL_PLANE, f"control-plane-{region}")
    provider = prod.one(AWS_PROVIDER, f"aws-{region}").urn
    children = prod.descendants(component)
    assert all(child.provider == provider for child in children if child.custom)
    assert all(child.name.startswith(f"{component.name}-") for child in children)


def test_prod_has_one_global_database_over_both_regional_clusters(render):
    prod = render("prod")
    global_cluster = prod.one(RDS_GLOBAL_CLUSTER)
    assert global_cluster.inputs["engine"] == "aurora-postgresql"
    assert global_cluster.inputs["storageEncrypted"] is True
    assert global_cluster.inputs["deletionProtection"] is True
    writer, secondary = (one_in(prod, region, RDS_CLUSTER) for region in REGIONS)
    for cluster in (writer, secondary):
        assert cluster.inputs["globalClusterIdentifier"] == global_cluster.id
    assert writer.inputs["masterUsername"] and is_secret(writer.inputs["masterPassword"])
    assert "masterPassword" not in secondary.inputs, "a secondary takes no credentials"


@pytest.mark.parametrize("region", REGIONS)
def test_each_region_encrypts_its_data_with_its_own_key(render, region):
    prod = render("prod")
    key = one_in(prod, region, KMS_KEY)
    assert key.inputs["enableKeyRotation"] is True
    cluster = one_in(prod, region, RDS_CLUSTER)
    assert cluster.inputs["storageEncrypted"] is True
    assert cluster.inputs["kmsKeyId"] == key.outputs["arn"]
    assert cluster.inputs["backupRetentionPeriod"] == 14
    assert cluster.inputs["deletionProtection"] is True
    assert cluster.inputs["skipFinalSnapshot"] is False
    redis = one_in(prod, region, REDIS_REPLICATION_GROUP)
    assert redis.inputs["kmsKeyId"] == key.outputs["arn"]
    for instance in in_region(prod, region, RDS_CLUSTER_INSTANCE):
        assert instance.inputs["clusterIdentifier"] == cluster.id
        assert instance.inputs["publiclyAccessible"] is False
        assert instance.inputs["instanceClass"] == "db.r7g.large"


def test_the_standby_cluster_joins_after_the_writer_has_instances(render):
    prod = render("prod")
    secondary = one_in(prod, "us-west-2", RDS_CLUSTER)
    assert secondary.inputs.get("replicationSourceIdentifier") is None
    writer_instances = in_region(prod, "us-east-1", RDS_CLUSTER_INSTANCE)
    assert len(writer_instances) == 2
    assert len(in_region(prod, "us-west-2", RDS_CLUSTER_INSTANCE)) == 2


def test_gateways_write_through_the_global_writer_and_read_from_their_own_regions_reader(render):
    """Writes go to the endpoint Aurora moves with a switchover or failover (nothing to change after a
    promotion); reads, key lookups included, to the region's own cluster's reader endpoint (the standby's
    is its secondary cluster), so a region checks keys while the writer's region is gone."""
    prod = render("prod")
    endpoint = prod.one(RDS_GLOBAL_CLUSTER).outputs["endpoint"]
    readers = set()
    for region in REGIONS:
        document = json.loads(secret_value(gateway_version(prod, region).inputs["secretString"]))
        reader = one_in(prod, region, RDS_CLUSTER).outputs["readerEndpoint"]
        readers.add(reader)
        for variable, host in (("DATABASE_URL", endpoint), ("DATABASE_URL_READ_REPLICA", reader)):
            url = document[variable]
            # As its own role, never the master user; giving up a connect after 5 s, not a TCP timeout's.
            assert url.startswith("postgresql://litellm_gateway:")
            assert url.endswith(f"@{host}:5432/litellm?sslmode=require&connect_timeout=5")
    assert len(readers) == 2
    assert prod.outputs["database"]["writerEndpoint"] == endpoint


def test_dev_is_one_small_region_without_a_global_database_or_deletion_protection(render):
    dev = render("dev")
    assert [c.name for c in dev.of_type(CONTROL_PLANE)] == ["control-plane-us-east-1"]
    assert dev.of_type(RDS_GLOBAL_CLUSTER) == []
    (cluster,) = dev.of_type(RDS_CLUSTER)
    assert cluster.inputs.get("globalClusterIdentifier") is None
    assert cluster.inputs["deletionProtection"] is False
    assert cluster.inputs["skipFinalSnapshot"] is True
    (instance,) = dev.of_type(RDS_CLUSTER_INSTANCE)
    assert instance.inputs["instanceClass"] == "db.t4g.medium"
    (redis,) = in_region(dev, "us-east-1", REDIS_REPLICATION_GROUP)
    assert redis.inputs["numCacheClusters"] == 1
    assert redis.inputs["multiAzEnabled"] is False
    alb = one_in(dev, "us-east-1", LOAD_BALANCER)
    assert alb.inputs["enableDeletionProtection"] is False
    (task,) = dev.of_type(ECS_TASK_DEFINITION)
    assert (task.inputs["cpu"], task.inputs["memory"]) == ("512", "1024")
    (service,) = dev.of_type(ECS_SERVICE)
    assert service.inputs["desiredCount"] == 1
    assert dev.outputs["database"]["writerEndpoint"] == cluster.outputs["endpoint"]


# --- the load balancer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_alb_serves_https_with_a_dns_validated_certificate_and_redirects_http(render, region):
    prod = render("prod")
    alb = one_in(prod, region, LOAD_BALANCER)
    assert alb.inputs["internal"] is False
    assert alb.inputs["dropInvalidHeaderFields"] is True
    public_subnets = prod.outputs["networks"][region]  # private ids are exported; public are the others
    assert not set(alb.inputs["subnets"]) & set(public_subnets["privateSubnetIds"])
    listeners = {listener.inputs["port"]: listener for listener in in_region(prod, region, LISTENER)}
    assert set(listeners) == {80, 443}

    https = listeners[443]
    assert https.inputs["protocol"] == "HTTPS"
    assert https.inputs["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    validation = one_in(prod, region, CERTIFICATE_VALIDATION)
    certificate = one_in(prod, region, CERTIFICATE)
    assert (
        https.inputs["certificateArn"] == validation.outputs["certificateArn"] == certificate.outputs["arn"]
    )
    assert certificate.inputs["validationMethod"] == "DNS"
    assert certificate.inputs["domainName"] == "api.fleet.example.com"
    assert certificate.inputs["subjectAlternativeNames"] == [f"{region}.api.fleet.example.com"]
    # Only listed paths are forwarded (see the listener-rule test); anything else is the ALB's own 404.
    (default,) = https.inputs["defaultActions"]
    assert default["type"] == "fixed-response"
    assert default["fixedResponse"]["statusCode"] == "404"

    (redirect,) = listeners[80].inputs["defaultActions"]
    assert redirect["type"] == "redirect"
    assert redirect["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}


def test_every_certificate_name_is_validated_by_exactly_one_route53_record(render):
    """ACM asks for the same record for a name in every region: the shared API name gets one record."""
    prod = render("prod")
    validations = {region: one_in(prod, region, CERTIFICATE_VALIDATION) for region in REGIONS}
    records = [
        r
        for r in prod.of_type(ROUTE53_RECORD)
        if r.inputs["name"].startswith("_") and r.inputs["type"] == "CNAME"
    ]
    names = [r.inputs["name"] for r in records]
    assert len(names) == len(set(names)) == 3  # api.<domain> once, each region's own name once
    for region, validation in validations.items():
        certificate = one_in(prod, region, CERTIFICATE)
        wanted = {o["resourceRecordName"].rstrip(".") for o in certificate.outputs["domainValidationOptions"]}
        assert set(validation.inputs["validationRecordFqdns"]) == wanted


@pytest.mark.parametrize("region", REGIONS)
def test_alb_writes_access_logs_to_a_private_bucket_it_may_write_to(render, region):
    prod = render("prod")
    alb = one_in(prod, region, LOAD_BALANCER)
    bucket = one_in(prod, region, S3_BUCKET)
    logs = alb.inputs["accessLogs"]
    assert logs == {"bucket": bucket.id, "prefix": "alb-logs", "enabled": True}
    block = one_in(prod, region, S3_PUBLIC_ACCESS_BLOCK)
    assert all(
        block.inputs[k]
        for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    policy = json.loads(one_in(prod, region, S3_BUCKET_POLICY).inputs["policy"])
    allow = next(s for s in policy["Statement"] if s["Effect"] == "Allow")
    assert allow["Action"] == "s3:PutObject"
    assert allow["Resource"] == f"{bucket.outputs['arn']}/alb-logs/AWSLogs/123456789012/*"


@pytest.mark.parametrize("region", REGIONS)
def test_target_health_is_the_gateway_liveness_never_the_database(render, region):
    group = gateway_group(render("prod"), region)
    assert group.inputs["targetType"] == "ip"
    assert group.inputs["port"] == 4000
    check = group.inputs["healthCheck"]
    assert (check["path"], check["matcher"]) == ("/health/liveliness", "200")


@pytest.mark.parametrize("region", REGIONS)
def test_the_public_listener_forwards_only_the_inference_api_and_the_region_health(render, region):
    prod = render("prod")
    https = one_in(prod, region, LISTENER, f"control-plane-{region}-https")
    rules = sorted(
        (r for r in in_region(prod, region, LISTENER_RULE)),
        key=lambda r: r.inputs["priority"],
    )
    health = one_in(prod, region, TARGET_GROUP, f"control-plane-{region}-health-tg")
    forwarded: dict[str, str] = {}
    for rule in rules:
        assert rule.inputs["listenerArn"] == https.outputs["arn"]
        (condition,) = rule.inputs["conditions"]
        assert len(condition["pathPattern"]["values"]) <= 5  # the ALB's quota of values per rule
        (action,) = rule.inputs["actions"]
        assert action["type"] == "forward"
        for path in condition["pathPattern"]["values"]:
            forwarded[path] = action["targetGroupArn"]
    gateway = gateway_group(prod, region).outputs["arn"]
    assert forwarded.pop("/fleet/region-health") == health.outputs["arn"]
    assert set(forwarded.values()) == {gateway}
    assert {"/v1/chat/completions", "/chat/completions", "/v1/embeddings", "/v1/models"} <= set(forwarded)
    # The region-health sidecar's own port, checked on its liveness path.
    assert (health.inputs["port"], health.inputs["healthCheck"]["path"]) == (4001, "/fleet/live")


# --- the gateway service ---------------------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_gateway_runs_on_fargate_in_private_subnets_behind_the_alb(render, region):
    prod = render("prod")
    service = one_in(prod, region, ECS_SERVICE)
    task = one_in(prod, region, ECS_TASK_DEFINITION)
    assert service.inputs["launchType"] == "FARGATE"
    assert service.inputs["taskDefinition"] == task.outputs["arn"]
    network = service.inputs["networkConfiguration"]
    assert network["assignPublicIp"] is False
    assert network["subnets"] == prod.outputs["networks"][region]["privateSubnetIds"]
    balancers = {b["containerName"]: b for b in service.inputs["loadBalancers"]}
    assert balancers["gateway"]["targetGroupArn"] == gateway_group(prod, region).outputs["arn"]
    assert balancers["region-health"]["containerPort"] == 4001
    assert service.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert task.inputs["requiresCompatibilities"] == ["FARGATE"]
    assert (task.inputs["cpu"], task.inputs["memory"]) == ("2048", "4096")


def test_gateway_image_is_the_one_the_stack_config_pins(render, stack_input):
    prod = render("prod")
    config = json.loads(stack_input("prod").config["inference-fleet:controlPlane"])
    pinned = config["gateway"]["image"]
    assert "@sha256:" in pinned and pinned.startswith("ghcr.io/")
    for region in REGIONS:
        # Pulled through the region's own ECR (a pull-through cache of ghcr.io), by the same digest.
        cache = one_in(prod, region, ECR_PULL_THROUGH_CACHE_RULE)
        assert (cache.inputs["upstreamRegistryUrl"], cache.inputs["ecrRepositoryPrefix"]) == (
            "ghcr.io",
            "ghcr",
        )
        mirrored = f"123456789012.dkr.ecr.{region}.amazonaws.com/ghcr/{pinned.removeprefix('ghcr.io/')}"
        images = {name: c["image"] for name, c in containers(prod, region).items()}
        # Besides the metrics sidecar (the CloudWatch agent, pinned by digest too), every container runs it.
        assert images.pop(gateway_metrics.METRICS_CONTAINER) == gateway_metrics.METRICS_AGENT_IMAGE
        assert set(images.values()) == {mirrored}


@pytest.mark.parametrize("region", REGIONS)
def test_gateway_secrets_come_only_from_secrets_manager(render, region):
    prod = render("prod")
    definition = container(prod, region)
    secret = gateway_secret(prod, region)
    names = {s["name"] for s in definition["secrets"]}
    assert names == {
        "LITELLM_MASTER_KEY",
        "DATABASE_URL",
        "DATABASE_URL_READ_REPLICA",
        "REDIS_PASSWORD",
        "LITELLM_SALT_KEY",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "TOGETHER_AI_API_KEY",
        "FIREWORKS_AI_API_KEY",
        "RUNPOD_API_KEY",
        # Both regions' gateways route to a GPU pool of their own.
        "FLEET_POOL_API_KEY",
    }
    # The metrics sidecar's scrape config holds the master key: a secret too, from the same document.
    sidecar = containers(prod, region)[gateway_metrics.METRICS_CONTAINER]
    (scrape,) = sidecar["secrets"]
    assert (scrape["name"], scrape["valueFrom"]) == (
        gateway_metrics.PROMETHEUS_CONFIG_ENV,
        f"{secret.outputs['arn']}:{gateway_metrics.PROMETHEUS_CONFIG_ENV}::",
    )
    for entry in definition["secrets"]:
        assert entry["valueFrom"] == f"{secret.outputs['arn']}:{entry['name']}::"
    plain = {e["name"] for e in definition["environment"]}
    assert not plain & names
    assert not [
        n for n in plain if n.endswith(("_API_KEY", "MASTER_KEY", "PASSWORD", "TOKEN", "DATABASE_URL"))
    ]
    # The secret's document holds exactly the keys the task reads (the gateway's, the region-health sidecar's
    # own key, the metrics sidecar's scrape config), encrypted with the region's key.
    version = gateway_version(prod, region)
    assert set(json.loads(secret_value(version.inputs["secretString"]))) == names | {
        "FLEET_REGION_HEALTH_KEY",
        gateway_metrics.PROMETHEUS_CONFIG_ENV,
    }
    assert secret.inputs["kmsKeyId"] == one_in(prod, region, KMS_KEY).outputs["arn"]


def test_no_resource_input_holds_an_esc_secret_in_clear(render):
    for stack in ("dev", "prod"):
        rendering = render(stack)
        for resource in rendering.resources:
            leaked = [s for s in strings(resource.inputs) if STANDIN_PREFIX in s]
            assert not leaked, f"{resource.type} {resource.name} holds a secret in clear: {leaked}"


def test_the_secret_checks_would_see_a_leak(render):
    """The scan above must be able to fail: the secrets do reach inputs, wrapped."""
    prod = render("prod")
    wrapped = [
        r
        for r in prod.resources
        if any(is_secret(v) and STANDIN_PREFIX in json.dumps(v) for v in r.inputs.values())
    ]
    assert {r.type for r in wrapped} >= {
        SECRET_VERSION,
        RDS_CLUSTER,
        CACHE_USER,
    }


@pytest.mark.parametrize("region", REGIONS)
def test_execution_role_reads_only_its_secret_and_task_role_only_its_config(render, region):
    prod = render("prod")
    policies = {p.name: json.loads(p.inputs["policy"]) for p in in_region(prod, region, IAM_ROLE_POLICY)}
    execution = {s["Sid"]: s for s in policies[f"control-plane-{region}-gateway-execution"]["Statement"]}
    secret = gateway_secret(prod, region)
    assert execution["GatewaySecret"]["Resource"] == secret.outputs["arn"]
    # Pulling the image from the region's pull-through cache: its one repository (created on first pull).
    repository = f"arn:aws:ecr:{region}:123456789012:repository/ghcr/berriai/litellm-database"
    assert execution["EcrPull"]["Resource"] == repository
    assert "ecr:BatchImportUpstreamImage" in execution["EcrPull"]["Action"]
    for sid, statement in execution.items():
        # ECR defines no resource for its login call: the one account-wide statement.
        assert statement["Resource"] != "*" or (sid, statement["Action"]) == (
            "EcrLogin",
            "ecr:GetAuthorizationToken",
        )
        assert "*" not in statement["Action"]
    task = policies[f"control-plane-{region}-gateway-task"]["Statement"]
    assert [s["Action"] for s in task] == [
        "s3:GetObject",
        # The metrics sidecar writes its EMF to its own log group, and nothing else.
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        "logs:DescribeLogStreams",
    ]
    assert task[0]["Resource"].endswith(container_config_key(prod, region))
    metrics_logs = one_in(prod, region, LOG_GROUP, f"control-plane-{region}-gateway-metrics")
    assert {s["Resource"] for s in task[1:]} == {metrics_logs.outputs["arn"] + ":*"}


def container_config_key(rendering: Rendering, region: str) -> str:
    env = {e["name"]: e["value"] for e in container(rendering, region)["environment"]}
    return env["LITELLM_CONFIG_BUCKET_OBJECT_KEY"]


@pytest.mark.parametrize("region", REGIONS)
def test_gateway_reads_its_rendered_config_from_s3(render, region):
    prod = render("prod")
    env = {e["name"]: e["value"] for e in container(prod, region)["environment"]}
    obj = one_in(prod, region, S3_OBJECT)
    assert env["LITELLM_CONFIG_BUCKET_NAME"] == obj.inputs["bucket"]
    assert env["LITELLM_CONFIG_BUCKET_OBJECT_KEY"] == obj.inputs["key"]
    assert (
        env["REDIS_HOST"] == one_in(prod, region, REDIS_REPLICATION_GROUP).outputs["primaryEndpointAddress"]
    )
    assert env["REDIS_SSL"] == "True"
    config = yaml.safe_load(obj.inputs["content"])
    assert config["general_settings"] == {
        "master_key": "os.environ/LITELLM_MASTER_KEY",
        "database_url": "os.environ/DATABASE_URL",
        # prod refuses a key it cannot look up (each region reads keys from its own reader).
        "allow_requests_on_db_unavailable": False,
    }
    assert config["router_settings"]["redis_password"] == "os.environ/REDIS_PASSWORD"


def test_gateway_config_carries_routes_fallbacks_and_costs(render):
    prod = render("prod")
    config = yaml.safe_load(one_in(prod, "us-east-1", S3_OBJECT).inputs["content"])
    router = config["router_settings"]
    assert router["routing_strategy"] == "latency-based-routing"
    assert router["num_retries"] == 2
    assert router["fallbacks"] == [
        {"llama-3.3-70b": ["fireworks-llama-3.3-70b"]},
        {"gpt-4o-mini": ["anthropic-claude-haiku"]},
    ]
    groups = {d["model_name"]: d["litellm_params"] for d in config["model_list"]}
    assert set(groups) == {
        "llama-3.1-8b",
        "qwen-2.5-14b",
        "llama-3.3-70b",
        "gpt-4o-mini",
        "fireworks-llama-3.3-70b",
        "anthropic-claude-haiku",
    }
    assert groups["llama-3.3-70b"]["model"] == "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert groups["llama-3.3-70b"]["api_key"] == "os.environ/TOGETHER_AI_API_KEY"
    assert groups["anthropic-claude-haiku"]["output_cost_per_token"] == pytest.approx(4.0e-6)
    assert groups["fireworks-llama-3.3-70b"]["input_cost_per_token"] == pytest.approx(0.9e-6)
    # The file names no secret: every credential is an environment reference.
    text = one_in(prod, "us-east-1", S3_OBJECT).inputs["content"]
    assert STANDIN_PREFIX not in text and "placeholder" not in text


def test_a_routing_change_is_a_new_config_object_and_a_new_task_definition(render, stack_input):
    prod = render("prod")
    control_plane = json.loads(stack_input("prod").config["inference-fleet:controlPlane"])
    control_plane["gateway"]["routingStrategy"] = "cost-based-routing"
    changed = render("prod", {"controlPlane": control_plane})
    key, new_key = (container_config_key(r, "us-east-1") for r in (prod, changed))
    assert key != new_key
    assert key.startswith("config/litellm-") and new_key.endswith(".yaml")
    assert one_in(changed, "us-east-1", S3_OBJECT).inputs["key"] == new_key


@pytest.mark.parametrize(("region", "minimum"), [("us-east-1", 3), ("us-west-2", 2)])
def test_gateway_scales_on_requests_per_target_and_the_standby_is_smaller(render, region, minimum):
    prod = render("prod")
    target = one_in(prod, region, SCALABLE_TARGET)
    service = one_in(prod, region, ECS_SERVICE)
    assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == (minimum, 12)
    assert service.inputs["desiredCount"] == minimum
    policy = one_in(prod, region, SCALING_POLICY, f"control-plane-{region}-gateway-requests")
    tracking = policy.inputs["targetTrackingScalingPolicyConfiguration"]
    metric = tracking["predefinedMetricSpecification"]
    assert metric["predefinedMetricType"] == "ALBRequestCountPerTarget"
    alb = one_in(prod, region, LOAD_BALANCER).outputs["arnSuffix"]
    group = gateway_group(prod, region).outputs["arnSuffix"]
    assert metric["resourceLabel"] == f"{alb}/{group}"
    assert tracking["targetValue"] == 600


# --- Redis ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_prod_redis_is_multi_az_with_tls_auth_and_encryption_at_rest(render, region):
    redis = one_in(render("prod"), region, REDIS_REPLICATION_GROUP)
    assert redis.inputs["numCacheClusters"] == 2
    assert redis.inputs["multiAzEnabled"] is True
    assert redis.inputs["automaticFailoverEnabled"] is True
    assert redis.inputs["transitEncryptionEnabled"] is True
    assert redis.inputs["atRestEncryptionEnabled"] is True
    # RBAC, not a bare AUTH token: the gateway's token is the password of the `default` user, and the
    # other clients (pool nodes, the fleet controller) are users of their own, limited to their keys.
    assert "authToken" not in redis.inputs
    (group_id,) = redis.inputs["userGroupIds"]
    group = one_in(render("prod"), region, CACHE_USER_GROUP)
    assert group.outputs["userGroupId"] == group_id
    users = {u.outputs["userId"]: u for u in in_region(render("prod"), region, CACHE_USER)}
    members = [users[i] for i in group.inputs["userIds"]]
    by_name = {u.inputs["userName"]: u for u in members}
    assert set(by_name) == {"default", "fleet-node", "fleet-controller"}
    assert by_name["default"].inputs["accessString"] == "on ~* &* +@all"
    for user in members:
        assert is_secret(user.inputs["authenticationMode"])  # the passwords inside are secrets
    prefix = f"fleet:{region}"
    assert by_name["fleet-node"].inputs["accessString"] == (
        f"on ~{prefix}:node:* ~{prefix}:nodes -@all +set +zadd"
    )
    assert by_name["fleet-controller"].inputs["accessString"].startswith(f"on ~{prefix}:* -@all ")
    passwords = [u.inputs["authenticationMode"]["value"]["passwords"][0] for u in members]
    assert len(set(passwords)) == 3  # three principals, three passwords


# --- who may reach whom -----------------------------------------------------------------------------------


def flows(rendering: Rendering, region: str) -> dict[str, set[tuple[str, int]]]:
    """Ingress per security group name: {(source, port)}, source a group name or a CIDR."""
    groups = {g.id: g.name for g in in_region(rendering, region, SECURITY_GROUP)}
    found: dict[str, set[tuple[str, int]]] = {name: set() for name in groups.values()}
    for rule in in_region(rendering, region, SECURITY_GROUP_INGRESS_RULE):
        source = groups.get(rule.inputs.get("referencedSecurityGroupId"), rule.inputs.get("cidrIpv4"))
        assert rule.inputs["fromPort"] == rule.inputs["toPort"]
        found[groups[rule.inputs["securityGroupId"]]].add((source, rule.inputs["fromPort"]))
    return found


def egress(rendering: Rendering, region: str) -> dict[str, set[tuple[str, int]]]:
    groups = {g.id: g.name for g in in_region(rendering, region, SECURITY_GROUP)}
    found: dict[str, set[tuple[str, int]]] = {name: set() for name in groups.values()}
    for rule in in_region(rendering, region, SECURITY_GROUP_EGRESS_RULE):
        target = groups.get(rule.inputs.get("referencedSecurityGroupId"), rule.inputs.get("cidrIpv4"))
        found[groups[rule.inputs["securityGroupId"]]].add((target, rule.inputs["fromPort"]))
    return found


@pytest.mark.parametrize(
    ("region", "other_cidr"), [("us-east-1", "10.20.0.0/16"), ("us-west-2", "10.10.0.0/16")]
)
def test_only_the_alb_reaches_the_gateway_and_only_the_gateway_reaches_the_data(render, region, other_cidr):
    prod = render("prod")
    cp = f"control-plane-{region}"
    other_private = {(cidr, 5432) for cidr in subnet_plan(other_cidr, 3)[0]}
    primary = region == "us-east-1"
    # The functions the failover design adds: the database bootstrap and the writer's heartbeat (primary),
    # the prober (standby: the other region's writer over the peering, its own replica for the heartbeat).
    helpers = ["data-gateway-role-sg", "heartbeat-sg"] if primary else ["promotion-sg"]
    helpers_in: dict[str, set[tuple[str, int]]] = {group: set() for group in helpers}
    helpers_out = (
        {
            "data-gateway-role-sg": {(f"data-{region}-sg", 5432), *other_private},
            "heartbeat-sg": {(f"data-{region}-sg", 5432)},
        }
        if primary
        else {"promotion-sg": {("0.0.0.0/0", 443), (f"data-{region}-sg", 5432), *other_private}}
    )
    assert flows(prod, region) == {
        f"{cp}-alb-sg": {("0.0.0.0/0", 443), ("0.0.0.0/0", 80)},
        f"{cp}-gateway-sg": {(f"{cp}-alb-sg", 4000), (f"{cp}-alb-sg", 4001)},
        f"{cp}-redis-sg": {(f"{cp}-gateway-sg", 6379)},
        # The gateway here, and the other region's gateway subnets over the peering (by CIDR:
        # AWS cannot reference a group across regions).
        f"data-{region}-sg": {(f"{cp}-gateway-sg", 5432)}
        | other_private
        | {(group, 5432) for group in helpers},
        **helpers_in,
    }
    assert egress(prod, region) == {
        f"{cp}-alb-sg": {(f"{cp}-gateway-sg", 4000), (f"{cp}-gateway-sg", 4001)},
        f"{cp}-gateway-sg": {
            (f"{cp}-redis-sg", 6379),
            (f"data-{region}-sg", 5432),
            ("0.0.0.0/0", 443),
            *other_private,
        },
        f"{cp}-redis-sg": set(),
        f"data-{region}-sg": set(),
        **helpers_out,
    }
    # The groups carry no inline rules that could widen this.
    for group in in_region(prod, region, SECURITY_GROUP):
        assert not group.inputs.get("ingress") and not group.inputs.get("egress")


def test_the_peering_routes_each_regions_private_subnets_to_the_other(render):
    prod = render("prod")
    peering = prod.one(VPC_PEERING_CONNECTION)
    assert peering.inputs["peerRegion"] == "us-west-2"
    accepter = prod.one(VPC_PEERING_CONNECTION_ACCEPTER)
    assert accepter.inputs["vpcPeeringConnectionId"] == peering.id
    routes = [r for r in prod.of_type(ROUTE) if r.inputs.get("vpcPeeringConnectionId")]
    by_destination = {
        cidr: [r for r in routes if r.inputs["destinationCidrBlock"] == cidr]
        for cidr in ("10.10.0.0/16", "10.20.0.0/16")
    }
    assert {len(v) for v in by_destination.values()} == {3}
    for region, other in (("us-east-1", "10.20.0.0/16"), ("us-west-2", "10.10.0.0/16")):
        private_tables = {
            t.id for t in prod.of_type(ROUTE_TABLE) if t.name.startswith(f"network-{region}-private")
        }
        assert {r.inputs["routeTableId"] for r in by_destination[other]} == private_tables


# --- outputs ----------------------------------------------------------------------------------------------


def test_stack_outputs_name_the_api_the_gateways_the_checks_the_databases_and_the_budget(render):
    outputs = render("prod").outputs
    assert outputs["apiUrl"] == "https://api.fleet.example.com"
    assert outputs["gatewayUrls"] == {r: f"https://{r}.api.fleet.example.com" for r in REGIONS}
    assert set(outputs["healthCheckIds"]) == set(REGIONS)
    assert set(outputs["database"]["clusterEndpoints"]) == set(REGIONS)
    assert outputs["database"]["globalClusterId"] == "inference-fleet-prod"
    budgets = outputs["budgets"]
    breakdown = budgets["failover"]
    assert breakdown["gatewayFailureInference"]["worstSeconds"] == budgets["dnsFailoverWorstCaseSeconds"]
    assert breakdown["regionLossWrites"]["worstSeconds"] == budgets["regionLossRtoSeconds"]
    assert outputs["failover"]["checkerRegions"] == ["us-west-1", "eu-west-1", "ap-southeast-1"]
