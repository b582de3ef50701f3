"""The stack config model: the shipped stacks validate, and each bad value gets its one clear line."""

from __future__ import annotations

import copy
import json
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
        "alerts, slo, costBudget, monitoring, gatewayMasterKey, providerApiKeys, redisAuthToken, gatewaySaltKey, ghcrCredentials, "
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


# --- every independent problem in one run ---------------------------------------------------------------


def test_a_type_error_does_not_hide_the_rule_errors_of_other_keys(stack_input):
    found = problems(
        stack_input(
            "prod",
            {
                "network": network(natGateways="single"),
                "controlPlane": {
                    **PROD_CONTROL_PLANE,
                    "gateway": {**PROD_CONTROL_PLANE["gateway"], "cpu": "big", "minTasks": 1},
                    "redis": {"replicas": 0},
                },
            },
        )
    )
    assert found == [
        "inference-fleet:controlPlane.gateway.cpu: got 'big'; expected an integer",
        "inference-fleet:network.natGateways: got 'single'; prod needs per-az so one zone's outage leaves egress up",
        # The gateway's other rules read its cpu, which is wrong: they wait for it; Redis's does not.
        "inference-fleet:controlPlane.redis.replicas: got 0; prod keeps at least 1 replica in another zone "
        "(Multi-AZ failover)",
    ]


def test_a_rule_that_reads_a_wrong_value_says_nothing(stack_input):
    """A wrong primary region is said once: the rules that read the regions (the networks' CIDRs, the pools'
    regions, the store's) would only echo it."""
    assert problems(stack_input("prod", {"primaryRegion": "mars-1"})) == [
        f"inference-fleet:primaryRegion: got 'mars-1'; allowed: {REGIONS}"
    ]


def test_every_wrongly_typed_value_is_refused_by_key_never_with_a_traceback(stack_input):
    """Each value of the prod stack, in turn, replaced by one of another shape: always a ConfigError whose
    lines all name a key (the partial config the rules run on never breaks)."""
    stack = stack_input("prod")
    checked = 0
    for full_key, text in stack.config.items():
        if not full_key.startswith(f"{PROJECT}:") or full_key in stack.secret_keys:
            continue
        value = json.loads(text) if text[:1] in "{[" else text
        for path in _leaves(value):
            changed = _replaced(value, path, {"wrong": [1]})
            config = {
                **stack.config,
                full_key: json.dumps(changed) if not isinstance(changed, str) else changed,
            }
            with pytest.raises(ConfigError) as raised:
                parse_config(config, set(stack.secret_keys))
            assert raised.value.problems, full_key
            assert all(line.startswith(f"{PROJECT}:") for line in raised.value.problems), (
                raised.value.problems
            )
            checked += 1
    assert checked > 100


def _leaves(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*at, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*at, i))]
    return [at]


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    changed = copy.deepcopy(value)
    node = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = new
    return changed


# --- keys required where they are used, keys that moved --------------------------------------------------


def test_gcp_project_is_required_only_with_batch_jobs(stack_input):
    without = stack_input("k8s-example", {"gcpProject": None})
    assert parse_config(without.config, set(without.secret_keys)).gcp_project == ""
    assert problems(stack_input("dev", {"gcpProject": None})) == [
        "inference-fleet:gcpProject: required with batchJobs (their GCP project) but not set; set it in the stack "
        "file (config: inference-fleet:gcpProject) or in an ESC environment the stack imports "
        "(values.pulumiConfig: inference-fleet:gcpProject)"
    ]


POOL_SECRETS = ("poolApiKey", "nodeRedisPassword", "controllerRedisPassword", "modelStoreAuthToken")


def test_pool_and_store_secrets_are_required_only_where_the_stack_uses_them(stack_input):
    stack = stack_input(
        "dev", {"gpuPools": [], "batchJobs": [], "controlPlane": {"dns": {"recordType": "alias"}}}
    )
    config = {k: v for k, v in stack.config.items() if k.split(":", 1)[1] not in POOL_SECRETS}
    parse_config(config, set(stack.secret_keys))  # no pool, no store: none of the four is needed
    with_pools = stack_input("dev")
    config = {k: v for k, v in with_pools.config.items() if k != f"{PROJECT}:nodeRedisPassword"}
    with pytest.raises(ConfigError) as raised:
        parse_config(config, set(with_pools.secret_keys))
    assert raised.value.problems == [
        "inference-fleet:nodeRedisPassword: required but not set (password of the pool nodes' own Redis user, for "
        "their heartbeats (openssl rand -hex 32)); set it with fn::secret in the stack's ESC environment "
        "(values.pulumiConfig: inference-fleet:nodeRedisPassword)"
    ]


def test_log_retention_is_set_at_the_root_and_refused_under_the_control_plane(stack_input):
    stack = stack_input("prod")
    assert parse_config(stack.config, set(stack.secret_keys)).log_retention_days == 90
    moved = {"controlPlane": {**PROD_CONTROL_PLANE, "logRetentionDays": 90}}
    assert problems(stack_input("prod", moved)) == [
        "inference-fleet:controlPlane.logRetentionDays: moved to inference-fleet:logRetentionDays; set it there "
        "(see CHANGELOG.md)"
    ]
    assert problems(stack_input("prod", {"logRetentionDays": 45})) == [
        "inference-fleet:logRetentionDays: got 45; CloudWatch Logs allows: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, "
        "180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653"
    ]


# --- defaults that agree with each other and with the tier ----------------------------------------------

MINIMAL_KEYS = ("tier", "domain", "primaryRegion", "standbyRegion", "gcpRegion", "tags", "network", "alerts")


def minimal(stack: StackInput, **changes: Any) -> StackInput:
    """Only the keys a stack cannot do without (and its secrets): everything else left to the defaults."""
    config = {
        k: v
        for k, v in stack.config.items()
        if not k.startswith(f"{PROJECT}:") or k.split(":", 1)[1] in MINIMAL_KEYS or k in stack.secret_keys
    }
    return StackInput(stack.project, stack.stack, stack.project_dir, config, stack.secret_keys).with_config(
        changes
    )


POOL = {
    "name": "llama",
    "region": "us-east-1",
    "engine": "vllm",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "instanceTypes": ["g6.2xlarge"],
    "maxSize": 4,
}


def test_a_prod_stack_left_to_the_defaults_passes_prods_rules(stack_input):
    """The defaults follow the stack's shape: a prod gateway runs 2 tasks, its Redis and database keep a
    replica, a two-region database takes a memory-optimized class, a prod pool keeps an on-demand node, the
    default DNS TTL meets the default RTO."""
    stack = minimal(stack_input("prod"), gpuPools=[POOL], modelStore={"models": [{"name": POOL["model"]}]})
    config = parse_config(stack.config, set(stack.secret_keys))
    cp = config.control_plane
    assert (cp.gateway.min_tasks, cp.redis.replicas, cp.database.instances) == (2, 1, 2)
    assert (cp.database.backup_retention_days, cp.database.instance_class) == (7, "db.r7g.large")
    assert (config.model_store.metadata.replicas, config.gpu_pools[0].on_demand_base) == (1, 1)
    assert cp.dns.ttl_seconds == 10
    # Defaults are not "given": the rules that refuse a key set without a standby still see them unset.
    assert "min_tasks" not in cp.gateway.model_fields_set


def test_a_dev_stack_with_a_standby_left_to_the_defaults_passes(stack_input):
    stack = minimal(
        stack_input("dev"),
        standbyRegion="us-west-2",
        network={"cidrs": {"us-east-1": "10.110.0.0/16", "us-west-2": "10.120.0.0/16"}},
    )
    config = parse_config(stack.config, set(stack.secret_keys))
    assert config.control_plane.database.instance_class == "db.r7g.large"
    assert config.control_plane.gateway.min_tasks == 1  # dev-sized otherwise


def test_the_stores_prod_rules_apply_only_where_a_store_exists(stack_input):
    no_store = {"metadata": {"replicas": 0, "snapshotRetentionDays": 0}}
    stack = minimal(stack_input("prod"), modelStore=no_store)
    parse_config(stack.config, set(stack.secret_keys))  # no pool, no cluster: no metadata Redis to judge
    with_store = {**no_store, "models": [{"name": POOL["model"]}]}
    assert problems(minimal(stack_input("prod"), modelStore=with_store, gpuPools=[POOL])) == [
        "inference-fleet:modelStore.metadata.replicas: got 0; prod keeps at least 1 replica in another zone "
        "(Multi-AZ): losing the metadata Redis loses the volume",
        "inference-fleet:modelStore.metadata.snapshotRetentionDays: got 0; prod keeps daily snapshots of the "
        "volume's metadata",
    ]


def test_an_explicit_ttl_that_misses_the_rto_is_still_refused(stack_input):
    changes = {"controlPlane": {**PROD_CONTROL_PLANE, "dns": {"recordType": "cname", "ttlSeconds": 45}}}
    assert problems(stack_input("prod", changes)) == [
        "inference-fleet:controlPlane.failover.rtoSeconds: got 130, but a gateway-level failover can take 141 s "
        "(10 s firstProbeOffset + 20 s probeIntervals + 6 s probeTimeout + 45 s dnsTtl + 0 s ttlIgnoringResolver "
        "+ 60 s keepAliveHeld); detect faster (healthCheckIntervalSeconds 10, a lower failureThreshold), use a "
        "cname with a shorter dns.ttlSeconds, or raise rtoSeconds to at least 141"
    ]
