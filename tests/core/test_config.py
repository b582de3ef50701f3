"""The stack config model: the shipped stacks validate, and each bad value gets its one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core.config import PROJECT, ConfigError
from components.stack import SECRETS, FleetConfig
from components.stack import parse_stack_config as parse_config
from fleet.stackfile import StackInput

SECRET_KEYS = {s.key: s.description for s in SECRETS}

PROD_CIDRS = {"us-east-1": "10.10.0.0/16", "us-west-2": "10.20.0.0/16"}
PROD_CONTROL_PLANE = yaml.safe_load((Path(__file__).resolve().parents[2] / "Pulumi.prod.yaml").read_text())[
    "config"
]["inference-fleet:controlPlane"]


def network(**changes: Any) -> dict[str, Any]:
    return {"cidrs": PROD_CIDRS, "availabilityZones": 3, "natGateways": "per-az", **changes}


def problems(stack: StackInput) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(stack.config, set(stack.secret_keys))
    return raised.value.problems


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_stacks_validate(stack_input, stack):
    stack = stack_input(stack)
    config = parse_config(stack.config, set(stack.secret_keys))
    assert config.tier == stack.stack


def test_prod_has_two_distinct_control_plane_regions(stack_input):
    stack = stack_input("prod")
    config = parse_config(stack.config, set(stack.secret_keys))
    assert config.control_plane_regions == ["us-east-1", "us-west-2"]
    assert config.network.nat_per_az(config.tier)


def test_dev_defaults_to_one_nat(stack_input):
    stack = stack_input("dev", {"network": {"cidrs": {"us-east-1": "10.110.0.0/16"}}})
    config = parse_config(stack.config, set(stack.secret_keys))
    assert config.control_plane_regions == ["us-east-1"]
    assert not config.network.nat_per_az(config.tier)


REGIONS = (
    "ap-northeast-1, ap-south-1, ap-southeast-1, ca-central-1, eu-central-1, eu-north-1, eu-west-1, "
    "eu-west-2, us-east-1, us-east-2, us-west-1, us-west-2"
)

# (case id, stack, config changes, the exact line expected; one ending in "..." is a prefix)
TINY_MODEL = {"name": "tiny", "source": "meta-llama/Llama-3.1-8B-Instruct"}  # a model prod's store holds

BAD_CONFIGS: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "tier not allowed",
        "prod",
        {"tier": "staging"},
        "inference-fleet:tier: got 'staging'; allowed: 'dev' or 'prod'",
    ),
    (
        "unknown top-level key",
        "prod",
        {"bogusKey": "x"},
        "inference-fleet:bogusKey: unknown key; allowed: tier, domain, primaryRegion, standbyRegion, gcpProject, "
        "gcpRegion, tags, logRetentionDays, network, gpuPools, nodeImage, modelStore, controller, batchJobs, kubernetes, controlPlane, "
        "alerts, gatewayMasterKey, providerApiKeys, redisAuthToken, gatewaySaltKey, ghcrCredentials, "
        "databasePassword, gatewayDatabasePassword, poolApiKey, nodeRedisPassword, modelStoreAuthToken, "
        "controllerRedisPassword, kubernetesKubeconfigs",
    ),
    (
        "misspelt key is suggested",
        "prod",
        {"primaryRegoin": "us-east-1"},
        "inference-fleet:primaryRegoin: unknown key; did you mean 'primaryRegion'? allowed: tier, ...",
    ),
    (
        "unknown region",
        "prod",
        {"primaryRegion": "us-east-9"},
        f"inference-fleet:primaryRegion: got 'us-east-9'; allowed: {REGIONS}",
    ),
    (
        "same primary and standby",
        "prod",
        {"standbyRegion": "us-east-1"},
        "inference-fleet:standbyRegion: got 'us-east-1', the same as primaryRegion; the standby must be another region",
    ),
    (
        "prod without standby",
        "prod",
        {"standbyRegion": None, "network": {"cidrs": {"us-east-1": "10.10.0.0/16"}}},
        "inference-fleet:standbyRegion: required in prod: the control plane runs active-passive across two regions",
    ),
    (
        "zones not a number",
        "prod",
        {"network": network(availabilityZones="three")},
        "inference-fleet:network.availabilityZones: got 'three'; expected an integer",
    ),
    (
        "too few zones",
        "prod",
        {"network": network(availabilityZones=2)},
        "inference-fleet:network.availabilityZones: got 2; input should be greater than or equal to 3",
    ),
    (
        "more zones than the region has",
        "prod",
        {"network": network(availabilityZones=5)},
        "inference-fleet:network.availabilityZones: got 5; us-west-2 offers 4 zones",
    ),
    (
        "not a CIDR",
        "prod",
        {"network": network(cidrs={**PROD_CIDRS, "us-west-2": "10.20.0.0/33"})},
        "inference-fleet:network.cidrs.us-west-2: got '10.20.0.0/33'; expected an IPv4 network such as 10.10.0.0/16",
    ),
    (
        "public range",
        "prod",
        {"network": network(cidrs={**PROD_CIDRS, "us-west-2": "8.8.0.0/16"})},
        "inference-fleet:network.cidrs.us-west-2: got '8.8.0.0/16'; expected a private (RFC 1918) range "
        "such as 10.10.0.0/16: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
    ),
    (
        "VPC too small",
        "prod",
        {"network": network(cidrs={**PROD_CIDRS, "us-west-2": "10.20.0.0/24"})},
        "inference-fleet:network.cidrs.us-west-2: got '10.20.0.0/24'; a VPC is /16 to /20 here "
        "(AWS allows /16 at most; six subnets need /20 at least)",
    ),
    (
        "overlapping regions",
        "prod",
        {"network": network(cidrs={"us-east-1": "10.10.0.0/16", "us-west-2": "10.10.128.0/17"})},
        "inference-fleet:network.cidrs.us-west-2: got '10.10.128.0/17', which overlaps us-east-1's '10.10.0.0/16'; "
        "regions need distinct ranges",
    ),
    (
        "no CIDR for the standby",
        "prod",
        {"network": network(cidrs={"us-east-1": "10.10.0.0/16"})},
        "inference-fleet:network.cidrs.us-west-2: not set; region us-west-2 runs a control plane and needs a VPC CIDR",
    ),
    (
        "CIDR for an unused region",
        "prod",
        {"network": network(cidrs={**PROD_CIDRS, "eu-west-1": "10.30.0.0/16"})},
        "inference-fleet:network.cidrs.eu-west-1: region eu-west-1 is not a control-plane region; "
        "used: us-east-1, us-west-2",
    ),
    (
        "misspelt nested key",
        "prod",
        {"network": {"cidrs": PROD_CIDRS, "availabilityZone": 3}},
        "inference-fleet:network.availabilityZone: unknown key; did you mean 'availabilityZones'? "
        "allowed: cidrs, availabilityZones, natGateways, flowLogRetentionDays",
    ),
    (
        "single NAT in prod",
        "prod",
        {"network": network(natGateways="single")},
        "inference-fleet:network.natGateways: got 'single'; prod needs per-az so one zone's outage leaves egress up",
    ),
    (
        "NAT mode not allowed",
        "prod",
        {"network": network(natGateways="two")},
        "inference-fleet:network.natGateways: got 'two'; allowed: 'per-az' or 'single'",
    ),
    (
        "log retention CloudWatch refuses",
        "prod",
        {"network": network(flowLogRetentionDays=10)},
        "inference-fleet:network.flowLogRetentionDays: got 10; CloudWatch Logs allows: 1, 3, 5, 7, 14, 30, 60, "
        "90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653",
    ),
    (
        "network not a mapping",
        "prod",
        {"network": "10.10.0.0/16"},
        "inference-fleet:network: got '10.10.0.0/16'; expected a YAML mapping or list",
    ),
    (
        "required tag missing",
        "prod",
        {"tags": {"owner": "ml-platform"}},
        "inference-fleet:tags: missing required tag(s) cost-center; every stack names: owner, cost-center",
    ),
    (
        "reserved tag prefix",
        "prod",
        {"tags": {"owner": "a", "cost-center": "b", "aws:team": "c"}},
        "inference-fleet:tags: tag key 'aws:team': 1-128 characters, not starting with 'aws:'",
    ),
    (
        "domain missing",
        "prod",
        {"domain": None},
        "inference-fleet:domain: required but not set; set it in the stack file (config: inference-fleet:domain) "
        "or in an ESC environment the stack imports (values.pulumiConfig: inference-fleet:domain)",
    ),
    (
        "domain not a DNS name",
        "prod",
        {"domain": "Fleet_Example"},
        "inference-fleet:domain: got 'Fleet_Example'; expected a lower-case DNS name such as fleet.example.com",
    ),
    (
        "GCP project id",
        "prod",
        {"gcpProject": "ACME"},
        "inference-fleet:gcpProject: got 'ACME'; a GCP project id is 6-30 lower-case letters, digits or hyphens, "
        "starting with a letter",
    ),
    (
        "GCP region without Cloud Run GPUs",
        "prod",
        {"gcpRegion": "us-west1"},
        "inference-fleet:gcpRegion: got 'us-west1'; allowed (regions with Cloud Run GPUs): asia-south1, "
        "asia-southeast1, europe-west1, europe-west4, us-central1, us-east4",
    ),
    # GPU pools' own rules: tests/gpu_pools/test_gpu_pools_config.py.
    (
        "Cloud Run GPU job below its CPU floor",
        "prod",
        {"batchJobs": [{"name": "embed", "cpu": 2, "model": TINY_MODEL}]},
        "inference-fleet:batchJobs[0].cpu: got 2; a Cloud Run job with nvidia-l4 takes 4-8 CPU",
    ),
    (
        "Cloud Run GPU type not known",
        "prod",
        {"batchJobs": [{"name": "embed", "gpu": "nvidia-h100", "model": TINY_MODEL}]},
        "inference-fleet:batchJobs[0].gpu: got 'nvidia-h100'; allowed: 'nvidia-l4'",
    ),
]


@pytest.mark.parametrize(
    ("stack", "changes", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_value_gets_one_line_naming_the_key(stack_input, stack, changes, expected):
    found = problems(stack_input(stack, changes))
    assert len(found) == 1, found
    if expected.endswith("..."):
        assert found[0].startswith(expected.removesuffix("...")), found[0]
    else:
        assert found[0] == expected


def test_there_are_at_least_twenty_bad_config_cases():
    assert len(BAD_CONFIGS) >= 20


def test_secret_given_in_plain_text_is_refused(stack_input):
    stack = stack_input("prod")
    plain = set(stack.secret_keys) - {f"{PROJECT}:gatewayMasterKey"}
    with pytest.raises(ConfigError) as raised:
        parse_config(stack.config, plain)
    assert raised.value.problems == [
        "inference-fleet:gatewayMasterKey: given in plain text; it is a secret (LiteLLM master key for the "
        "gateway): set it with fn::secret in the stack's ESC environment or `pulumi config set --secret "
        "gatewayMasterKey`"
    ]


def test_every_sections_problems_are_reported_together(stack_input):
    found = problems(
        stack_input(
            "prod",
            {
                "network": network(natGateways="single"),
                "controlPlane": {
                    **PROD_CONTROL_PLANE,
                    "gateway": {**PROD_CONTROL_PLANE["gateway"], "minTasks": 5, "maxTasks": 2},
                    "redis": {"replicas": 0},
                },
                "batchJobs": [{"name": "embed", "cpu": 2, "model": TINY_MODEL}],
            },
        )
    )
    assert found == [
        "inference-fleet:network.natGateways: got 'single'; prod needs per-az so one zone's outage leaves egress up",
        "inference-fleet:batchJobs[0].cpu: got 2; a Cloud Run job with nvidia-l4 takes 4-8 CPU",
        "inference-fleet:controlPlane.gateway.minTasks: got 5; at most maxTasks (2)",
        "inference-fleet:controlPlane.redis.replicas: got 0; prod keeps at least 1 replica in another zone "
        "(Multi-AZ failover)",
    ]


def test_several_bad_values_get_a_line_each(stack_input):
    found = problems(stack_input("prod", {"tier": "qa", "gcpRegion": "mars-1"}))
    assert [line.split(":")[1] for line in found] == ["tier", "gcpRegion"]


def test_other_namespaces_are_not_ours_to_check(stack_input):
    stack = stack_input("prod", {"aws:region": "us-east-1", "pulumi:tags": {"x": "y"}})
    assert parse_config(stack.config, set(stack.secret_keys)).tier == "prod"


def test_project_file_declarations_match_the_model(project_dir):
    """Pulumi.yaml's typed declarations and the model must agree, or `pulumi up` and `fleet plan` diverge."""
    declared = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())["config"]
    kinds = {str: "string", int: "integer", bool: "boolean"}
    for key, declaration in declared.items():
        field = next(
            f for name, f in FleetConfig.model_fields.items() if f.alias == key or _camel(name) == key
        )
        base = field.annotation
        scalar = next((t for t in kinds if t is base or t in getattr(base, "__args__", ())), str)
        assert declaration["type"] == kinds[scalar], key
        if "default" in declaration and declaration["default"] != "":
            assert field.default == declaration["default"], key
        assert declaration.get("description"), key
    assert set(SECRET_KEYS).isdisjoint(declared)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)
