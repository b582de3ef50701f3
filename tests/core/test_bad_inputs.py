"""What a careless operator hits, refused by `fleet plan` with exit 2 and one line naming the key or file.

Each case is a stack file (and where needed an ESC environment) written as an operator would, planned by
the real CLI; the expected line is compared whole. Secrets whose values only Pulumi can read offline are
checked where the program sees them at `pulumi up`: the config loader, given the values as the engine
passes them.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic.alias_generators import to_camel

from components.core.config import ConfigError
from components.stack import SECRETS, FleetConfig, parse_stack_config
from fleet.cli import main as fleet_main

PROJECT_DIR = Path(__file__).resolve().parents[2]
SHARED = ("Pulumi.yaml", "__main__.py", "components", "functions")
PROD = yaml.safe_load((PROJECT_DIR / "Pulumi.prod.yaml").read_text())
DEV = yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())
NS = "inference-fleet"


def project(tmp_path: Path, stack_text: str, esc: dict[str, str] | None = None) -> Path:
    """A project directory like ours with one stack file `Pulumi.case.yaml` (and ESC files) of our own."""
    for item in SHARED:
        source = PROJECT_DIR / item
        (tmp_path / item).symlink_to(source, target_is_directory=source.is_dir())
    (tmp_path / "esc").mkdir()
    for definition in (PROJECT_DIR / "esc").glob("*.yaml"):
        text = (esc or {}).get(definition.name, definition.read_text())
        (tmp_path / "esc" / definition.name).write_text(text)
    (tmp_path / "Pulumi.case.yaml").write_text(stack_text)
    return tmp_path


def plan(directory: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    code = fleet_main(["plan", "--stack", "case", "-C", str(directory), *extra])
    return code, capsys.readouterr().err.splitlines()


def stack_with(base: dict[str, Any], **config: Any) -> str:
    """The base stack file with `inference-fleet:` keys set (None removes one)."""
    doc = copy.deepcopy(base)
    for key, value in config.items():
        full = f"{NS}:{key}"
        if value is None:
            doc["config"].pop(full, None)
        else:
            doc["config"][full] = value
    return yaml.safe_dump(doc, sort_keys=False)


def prod_cp(**changes: Any) -> dict[str, Any]:
    cp = copy.deepcopy(PROD["config"][f"{NS}:controlPlane"])
    for path, value in changes.items():
        node = cp
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return cp


def pools(*specs: tuple[str, str, str, int]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "region": region,
            "engine": "vllm",
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "instanceTypes": [instance_type],
            "maxSize": size,
            "onDemandBase": 1,
        }
        for name, region, instance_type, size in specs
    ]


PROD_TEXT = (PROJECT_DIR / "Pulumi.prod.yaml").read_text()
PROD_POOLS: list[dict[str, Any]] = PROD["config"][f"{NS}:gpuPools"]
DEV_POOLS: list[dict[str, Any]] = DEV["config"][f"{NS}:gpuPools"]


def prod_pools(*extra: dict[str, Any], **changes: dict[str, Any]) -> list[dict[str, Any]]:
    """The prod pools (with `changes` by pool name) and extra ones after them."""
    return [{**p, **changes.get(p["name"], {})} for p in copy.deepcopy(PROD_POOLS)] + list(extra)


ROUTES = PROD["config"][f"{NS}:controlPlane"]["gateway"]["routes"]
ENDPOINTS = PROD["config"][f"{NS}:controlPlane"]["gateway"]["serverlessEndpoints"]
MANY_TAGS = {"owner": "a", "cost-center": "b", **{f"t{i}": "x" for i in range(42)}}
ESC_PROD = (PROJECT_DIR / "esc" / "prod.yaml").read_text()
K8S_TEXT = (PROJECT_DIR / "Pulumi.k8s-example.yaml").read_text()
ROOT_KEYS = [
    *(field.alias or to_camel(name) for name, field in FleetConfig.model_fields.items()),
    *(spec.key for spec in SECRETS),
]

# (case id, stack file text, ESC file overrides, the exact line expected)
CASES: list[tuple[str, str, dict[str, str], str]] = [
    # --- the stack file itself ---------------------------------------------------------------------------
    (
        "misspelt config namespace",
        PROD_TEXT.replace("inference-fleet:tier: prod", "inferense-fleet:tier: prod"),
        {},
        "error: inferense-fleet:tier: unknown namespace 'inferense-fleet'; did you mean 'inference-fleet'? "
        "(inference-fleet:tier is required and not set) allowed: inference-fleet, pulumi, aws, gcp, kubernetes, "
        "command",
    ),
    (
        "misspelt top-level key config",
        PROD_TEXT.replace("\nconfig:\n", "\nconfigs:\n"),
        {},
        "error: Pulumi.case.yaml: configs: unknown key; did you mean 'config'? "
        "allowed: config, environment, secretsprovider, encryptedkey, encryptionsalt",
    ),
    (
        "misspelt top-level key environment",
        PROD_TEXT.replace("environment:", "enviroment:"),
        {},
        "error: Pulumi.case.yaml: enviroment: unknown key; did you mean 'environment'? "
        "allowed: config, environment, secretsprovider, encryptedkey, encryptionsalt",
    ),
    (
        "not YAML",
        PROD_TEXT.replace("inference-fleet:tier: prod", "inference-fleet:tier: [prod"),
        {},
        "error: Pulumi.case.yaml line 10: not valid YAML (expected ',' or ']', but got ':')",
    ),
    (
        "config not a mapping",
        "config: [tier]\n",
        {},
        "error: Pulumi.case.yaml: config: expected a mapping of key: value",
    ),
    (
        "unquoted date",
        PROD_TEXT.replace("inference-fleet:domain: fleet.example.com", "inference-fleet:domain: 2025-01-01"),
        {},
        "error: Pulumi.case.yaml: inference-fleet:domain: got 2025-01-01 unquoted (a date to YAML 1.1, a "
        "string to Pulumi); quote it or fix it",
    ),
    (
        "unquoted no for a string",
        PROD_TEXT.replace("natGateways: per-az", "natGateways: no"),
        {},
        "error: Pulumi.case.yaml: inference-fleet:network.natGateways: got no unquoted (YAML 1.1 reads it as "
        "False, Pulumi as the string); quote it or fix it",
    ),
    (
        "unquoted yes for a string",
        PROD_TEXT.replace("recordType: cname", "recordType: yes"),
        {},
        "error: Pulumi.case.yaml: inference-fleet:controlPlane.dns.recordType: got yes unquoted (YAML 1.1 "
        "reads it as True, Pulumi as the string); quote it or fix it",
    ),
    (
        "NaN",
        re.sub(r"ttlSeconds: \d+", "ttlSeconds: .nan", PROD_TEXT),
        {},
        "error: Pulumi.case.yaml: inference-fleet:controlPlane.dns.ttlSeconds: got .nan unquoted (not a "
        "number Pulumi's config can carry); quote it or fix it",
    ),
    (
        "huge integer",
        PROD_TEXT.replace("minTasks: 3", "minTasks: 123456789012345678901"),
        {},
        "error: Pulumi.case.yaml: inference-fleet:controlPlane.gateway.minTasks: got 123456789012345678901 "
        "unquoted (an integer past 2^53, which JSON does not carry exactly); quote it or fix it",
    ),
    (
        "empty environment entry",
        PROD_TEXT.replace("  - inference-fleet/prod\n", '  - ""\n'),
        {},
        "error: Pulumi.case.yaml: environment[1]: got ''; expected <project>/<environment> (letters, digits, "
        "'_', '.', '-'), such as inference-fleet/dev",
    ),
    (
        "environment entry without a project",
        PROD_TEXT.replace("  - inference-fleet/prod\n", "  - prod\n"),
        {},
        "error: Pulumi.case.yaml: environment[1]: got 'prod'; expected <project>/<environment> (letters, "
        "digits, '_', '.', '-'), such as inference-fleet/dev",
    ),
    (
        "environment not a list",
        PROD_TEXT.replace(
            "environment:\n  - inference-fleet/common\n  - inference-fleet/prod\n",
            "environment: inference-fleet/prod\n",
        ),
        {},
        "error: Pulumi.case.yaml: environment: expected a list of ESC environments such as inference-fleet/dev",
    ),
    (
        "environment without a definition",
        PROD_TEXT.replace("  - inference-fleet/prod\n", "  - inference-fleet/staging\n"),
        {},
        "error: Pulumi.case.yaml: environment inference-fleet/staging: no definition at ...",
    ),
    (
        "secure value on an object key",
        PROD_TEXT.replace(
            "  inference-fleet:tags:\n    owner: ml-platform\n    cost-center: inference\n",
            "  inference-fleet:tags:\n    secure: AAABAKp1bHVtaQ==\n",
        ),
        {},
        "error: inference-fleet:tags: given as a secret, but it is plain config; the stack's secrets are "
        "gatewayMasterKey, providerApiKeys, redisAuthToken, gatewaySaltKey, ghcrCredentials, databasePassword, "
        "gatewayDatabasePassword, poolApiKey, nodeRedisPassword, modelStoreAuthToken, controllerRedisPassword, "
        "kubernetesKubeconfigs",
    ),
    (
        "secret missing from ESC",
        PROD_TEXT,
        {
            "prod.yaml": ESC_PROD.replace(
                "    inference-fleet:gatewayMasterKey: ${secrets.gatewayMasterKey}\n", ""
            )
        },
        "error: inference-fleet:gatewayMasterKey: required but not set (LiteLLM master key for the gateway); "
        "set it with fn::secret in the stack's ESC environment (values.pulumiConfig: "
        "inference-fleet:gatewayMasterKey)",
    ),
    (
        "secret given in plain text",
        stack_with(PROD, redisAuthToken="0123456789abcdef0123"),
        {},
        "error: inference-fleet:redisAuthToken: given in plain text; it is a secret (auth token of the "
        "gateway's Redis: 16-128 ASCII letters, digits and ! & # $ ^ < > -): set it with fn::secret in the "
        "stack's ESC environment or `pulumi config set --secret redisAuthToken`",
    ),
    (
        "provider key missing for a route",
        PROD_TEXT,
        {
            "common.yaml": (PROJECT_DIR / "esc" / "common.yaml")
            .read_text()
            .replace("      fireworks_ai:\n        fn::secret: placeholder-set-with-esc-env-set\n", "")
        },
        "error: inference-fleet:providerApiKeys: no key for fireworks_ai; the gateway's routes use anthropic, "
        "fireworks_ai, openai, runpod, together_ai. Add it in ESC: secrets.providerApiKeys.<provider>",
    ),
    # --- what Pulumi's own YAML reader refuses or reads otherwise ----------------------------------------
    (
        "a key given twice (the last would win)",
        PROD_TEXT.replace("      maxSize: 8\n", "      maxSize: 4\n      maxSize: 8\n", 1),
        {},
        "error: Pulumi.case.yaml line 36: inference-fleet:gpuPools[0].maxSize: given twice (first on line 35); "
        "Pulumi's YAML reader refuses a repeated key: keep one",
    ),
    (
        "a key given twice in an ESC definition",
        PROD_TEXT,
        {
            "prod.yaml": ESC_PROD.replace(
                "  pulumiConfig:\n", "  pulumiConfig:\n    inference-fleet:gcpProject: x\n", 1
            )
        },
        "error: Pulumi.case.yaml: environment inference-fleet/prod: prod.yaml line 37: "
        "values.pulumiConfig.inference-fleet:gcpProject: given twice (first on line 36); Pulumi's YAML reader "
        "refuses a repeated key: keep one",
    ),
    (
        "an integer of 5000 digits",
        PROD_TEXT.replace("minTasks: 3", "minTasks: " + "9" * 5000),
        {},
        "error: Pulumi.case.yaml: inference-fleet:controlPlane.gateway.minTasks: got an integer of 5000 digits "
        "unquoted (an integer past 2^53, which JSON does not carry exactly); quote it or fix it",
    ),
    (
        "a key with a no-break space",
        PROD_TEXT.replace("inference-fleet:tier: prod", "inference-fleet:tier\u00a0: prod"),
        {},
        "error: inference-fleet:tier\\u00a0: unknown key (holds U+00A0 NO-BREAK SPACE); did you mean 'tier'? (it "
        "is required and not set) allowed: " + ", ".join(ROOT_KEYS),
    ),
    (
        "a key with a Cyrillic letter",
        PROD_TEXT.replace("inference-fleet:tier: prod", "inference-fleet:t\u0456er: prod"),
        {},
        "error: inference-fleet:t\\u0456er: unknown key (holds U+0456 CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN "
        "I); did you mean 'tier'? (it is required and not set) allowed: " + ", ".join(ROOT_KEYS),
    ),
    (
        "a key with a byte-order mark",
        PROD_TEXT.replace("  inference-fleet:domain:", "  \ufeffinference-fleet:domain:"),
        {},
        "error: \\ufeffinference-fleet:domain: unknown namespace '\\ufeffinference-fleet' (holds U+FEFF ZERO WIDTH "
        "NO-BREAK SPACE); did you mean 'inference-fleet'? (inference-fleet:domain is required and not set) "
        "allowed: inference-fleet, pulumi, aws, gcp, kubernetes, command",
    ),
    (
        "a Kubernetes version read as a number",
        K8S_TEXT.replace('kubernetesVersion: "1.33"', "kubernetesVersion: 1.30"),
        {},
        "error: inference-fleet:kubernetes.clusters[0].kubernetesVersion: got 1.3, a number; expected a string: "
        'quote it in the stack file (an unquoted 1.30 is read as the number 1.3; write "1.30")',
    ),
    # --- keys that moved, keys needed only where used -------------------------------------------------------
    (
        "log retention under its old key",
        PROD_TEXT.replace("  inference-fleet:logRetentionDays: 90\n", "").replace(
            "      promoteAfterSeconds: 60\n", "      promoteAfterSeconds: 60\n    logRetentionDays: 90\n"
        ),
        {},
        "error: inference-fleet:controlPlane.logRetentionDays: moved to inference-fleet:logRetentionDays; set it "
        "there (see CHANGELOG.md)",
    ),
    (
        "batch jobs without a GCP project",
        PROD_TEXT,
        {"prod.yaml": ESC_PROD.replace("    inference-fleet:gcpProject: acme-inference-prod\n", "")},
        "error: inference-fleet:gcpProject: required with batchJobs (their GCP project) but not set; set it in the "
        "stack file (config: inference-fleet:gcpProject) or in an ESC environment the stack imports "
        "(values.pulumiConfig: inference-fleet:gcpProject)",
    ),
    (
        "a required key left out says where it goes",
        PROD_TEXT.replace("  inference-fleet:domain: fleet.example.com\n", ""),
        {},
        "error: inference-fleet:domain: required but not set; set it in Pulumi.case.yaml (config: "
        "inference-fleet:domain) or in an ESC environment the stack imports (values.pulumiConfig: "
        "inference-fleet:domain)",
    ),
    # --- duplicates -----------------------------------------------------------------------------------
    (
        "two pools with one name",
        stack_with(PROD, gpuPools=prod_pools(*pools(("qwen-14b", "us-west-2", "g6.xlarge", 2)))),
        {},
        "error: inference-fleet:gpuPools[3].name: got 'qwen-14b' twice; each is named once",
    ),
    (
        "an instance type twice in a pool",
        stack_with(
            PROD, gpuPools=prod_pools(**{"qwen-14b": {"instanceTypes": ["g6.2xlarge", "g6.2xlarge"]}})
        ),
        {},
        "error: inference-fleet:gpuPools[1].instanceTypes[1]: got 'g6.2xlarge' twice; list each once",
    ),
    (
        "two endpoints with one name",
        stack_with(PROD, controlPlane=prod_cp(**{"gateway.serverlessEndpoints": [*ENDPOINTS, ENDPOINTS[0]]})),
        {},
        f"error: inference-fleet:controlPlane.gateway.serverlessEndpoints[{len(ENDPOINTS)}].name: got "
        f"{ENDPOINTS[0]['name']!r} twice; each is named once",
    ),
    (
        "two routes for one model",
        stack_with(PROD, controlPlane=prod_cp(**{"gateway.routes": [*ROUTES, ROUTES[-1]]})),
        {},
        f"error: inference-fleet:controlPlane.gateway.routes[{len(ROUTES)}].model: got {ROUTES[-1]['model']!r} "
        "twice; each is named once",
    ),
    (
        "a fallback listed twice",
        stack_with(
            PROD,
            controlPlane=prod_cp(
                **{
                    "gateway.routes": [
                        {
                            "model": "gpt-4o-mini",
                            "endpoints": ["openai-gpt-4o-mini"],
                            "fallbacks": ["anthropic-claude-haiku", "anthropic-claude-haiku"],
                        }
                    ]
                }
            ),
        ),
        {},
        "error: inference-fleet:controlPlane.gateway.routes[0].fallbacks[1]: got 'anthropic-claude-haiku' "
        "twice; list each once",
    ),
    (
        "a checker region twice",
        stack_with(
            PROD, controlPlane=prod_cp(**{"failover.checkerRegions": ["us-west-1", "eu-west-1", "us-west-1"]})
        ),
        {},
        "error: inference-fleet:controlPlane.failover.checkerRegions[2]: got 'us-west-1' twice; list each once",
    ),
    # --- address ranges ---------------------------------------------------------------------------------
    (
        "public range",
        stack_with(
            PROD,
            network={
                **PROD["config"][f"{NS}:network"],
                "cidrs": {"us-east-1": "11.0.0.0/16", "us-west-2": "10.20.0.0/16"},
            },
        ),
        {},
        "error: inference-fleet:network.cidrs.us-east-1: got '11.0.0.0/16'; expected a private (RFC 1918) range "
        "such as 10.10.0.0/16: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
    ),
    (
        "link-local range",
        stack_with(
            PROD,
            network={
                **PROD["config"][f"{NS}:network"],
                "cidrs": {"us-east-1": "169.254.0.0/16", "us-west-2": "10.20.0.0/16"},
            },
        ),
        {},
        "error: inference-fleet:network.cidrs.us-east-1: got '169.254.0.0/16'; expected a private (RFC 1918) "
        "range such as 10.10.0.0/16: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
    ),
    (
        "carrier-grade NAT range",
        stack_with(
            PROD,
            network={
                **PROD["config"][f"{NS}:network"],
                "cidrs": {"us-east-1": "100.64.0.0/16", "us-west-2": "10.20.0.0/16"},
            },
        ),
        {},
        "error: inference-fleet:network.cidrs.us-east-1: got '100.64.0.0/16'; expected a private (RFC 1918) "
        "range such as 10.10.0.0/16: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
    ),
    # --- numbers beyond what the tier allows --------------------------------------------------------------
    (
        "dev pool too large",
        stack_with(DEV, gpuPools=[{**DEV_POOLS[0], "maxSize": 6}]),
        {},
        "error: inference-fleet:gpuPools[0].maxSize: got 6; a dev pool runs at most 4 nodes",
    ),
    (
        "prod GPUs past the tier cap",
        stack_with(PROD, gpuPools=prod_pools(**{"llama-8b": {"maxSize": 60, "onDemandBase": 16}})),
        {},
        "error: inference-fleet:gpuPools: 68 GPUs at full scale (llama-8b: 60, qwen-14b: 4, llama-8b-west: 4); "
        "a prod stack runs at most 64",
    ),
    (
        "a pool outside the control-plane regions",
        stack_with(PROD, gpuPools=prod_pools(*pools(("extra", "us-east-2", "g6.xlarge", 1)))),
        {},
        "error: inference-fleet:gpuPools[3].region: got 'us-east-2'; pools run in control-plane regions: "
        "us-east-1, us-west-2",
    ),
    (
        "a GPU type the pool's region does not offer",
        stack_with(
            PROD,
            standbyRegion="eu-west-1",
            network={
                **PROD["config"][f"{NS}:network"],
                "cidrs": {"us-east-1": "10.10.0.0/16", "eu-west-1": "10.20.0.0/16"},
            },
            gpuPools=prod_pools(
                **{"llama-8b-west": {"region": "eu-west-1", "instanceTypes": ["g6e.xlarge"]}}
            ),
        ),
        {},
        "error: inference-fleet:gpuPools[2].instanceTypes[0]: g6e.xlarge is not offered in eu-west-1; offered "
        "there: g5.xlarge, g5.2xlarge, g5.4xlarge, g5.8xlarge, g5.16xlarge, g5.12xlarge, g5.24xlarge, "
        "g5.48xlarge, g6.xlarge, g6.2xlarge, g6.4xlarge, g6.8xlarge, g6.16xlarge, g6.12xlarge, g6.24xlarge, "
        "g6.48xlarge, p4d.24xlarge",
    ),
    (
        "gateway tasks beyond the API's range",
        stack_with(PROD, controlPlane=prod_cp(**{"gateway.maxTasks": 500})),
        {},
        "error: inference-fleet:controlPlane.gateway.maxTasks: got 500; input should be less than or equal to 200",
    ),
    # --- tags --------------------------------------------------------------------------------------------
    (
        "more tags than a resource can carry",
        stack_with(PROD, tags=MANY_TAGS),
        {},
        "error: inference-fleet:tags: got 44 tags; at most 43: AWS allows 50 per resource, and the program adds "
        "4 to every resource and up to 3 of a resource's own",
    ),
    (
        "a tag key with a character AWS refuses",
        stack_with(PROD, tags={"owner": "a", "cost-center": "b", "team|x": "c"}),
        {},
        "error: inference-fleet:tags: tag key 'team|x': AWS allows letters, digits, spaces and _ . : / = + - @",
    ),
    (
        "a tag value with a character AWS refuses",
        stack_with(PROD, tags={"owner": "ml;platform", "cost-center": "b"}),
        {},
        "error: inference-fleet:tags: tag 'owner': value 'ml;platform'; AWS allows letters, digits, spaces and "
        "_ . : / = + - @",
    ),
    (
        "a tag the program sets itself",
        stack_with(PROD, tags={"owner": "a", "cost-center": "b", "tier": "gold"}),
        {},
        "error: inference-fleet:tags: tag key 'tier': the program sets it on every resource; reserved: project, "
        "stack, tier, managed-by",
    ),
    (
        "a tag value over 256 characters",
        stack_with(PROD, tags={"owner": "a" * 257, "cost-center": "b"}),
        {},
        "error: inference-fleet:tags: tag 'owner': value longer than 256 characters",
    ),
    # --- DNS names ------------------------------------------------------------------------------------
    (
        "a domain past DNS's 253 characters",
        stack_with(PROD, domain=".".join(["a" * 63] * 4) + ".com"),
        {},
        "error: inference-fleet:domain: got 259 characters; a DNS name is at most 253",
    ),
    (
        "an API name too long for the certificate",
        stack_with(PROD, domain="inference." + "platform-" * 6 + "example.com"),
        {},
        "error: inference-fleet:domain: got 75 characters; the certificate's name api.<domain> would be 79, and "
        "ACM takes at most 64 (a domain of at most 60)",
    ),
    # --- values the program would silently round, remedies that cannot be ------------------------------------
    (
        "promotion delay not a whole number of prober observations",
        stack_with(PROD, controlPlane=prod_cp(**{"failover.promoteAfterSeconds": 95})),
        {},
        "error: inference-fleet:controlPlane.failover.promoteAfterSeconds: got 95; the prober observes every 10 s: "
        "give a multiple of 10",
    ),
    (
        "no setting could meet the RTO",
        stack_with(PROD, controlPlane=prod_cp(**{"failover.failureThreshold": 6, "failover.rtoSeconds": 63})),
        {},
        "error: inference-fleet:controlPlane.failover.rtoSeconds: got 63, but a gateway-level failover can take "
        "156 s (10 s firstProbeOffset + 50 s probeIntervals + 6 s probeTimeout + 10 s dnsTtl + 20 s "
        "ttlIgnoringResolver + 60 s keepAliveHeld); no setting fails every client over faster than 106 s: raise "
        "rtoSeconds to at least 156 as declared, or to 106 with 10 s checks, threshold 1 and a 5 s cname",
    ),
    (
        "a TTL below Route53's floor",
        stack_with(PROD, controlPlane=prod_cp(**{"dns.ttlSeconds": 2})),
        {},
        "error: inference-fleet:controlPlane.dns.ttlSeconds: got 2; input should be greater than or equal to 5",
    ),
]


@pytest.mark.parametrize(("stack_text", "esc", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_careless_input_exits_2_with_one_line_naming_the_key(tmp_path, capsys, stack_text, esc, expected):
    code, lines = plan(project(tmp_path, stack_text, esc), capsys)
    assert code == 2, lines
    assert len(lines) == 1, lines
    if expected.endswith("..."):
        assert lines[0].startswith(expected.removesuffix("...")), lines[0]
    else:
        assert lines[0] == expected


def test_there_are_at_least_forty_cases():
    assert len(CASES) + len(SECRET_CASES) + 2 >= 40


# --- secrets: checked where the program sees their values (at `pulumi up`, as the engine passes them) --------

SECRET_CASES: list[tuple[str, str, Any, str]] = [
    (
        "Aurora password with @",
        "databasePassword",
        "pass@word-123",
        "inference-fleet:databasePassword: Aurora takes a master password of 8-41 printable ASCII characters "
        'without / " @; got 13 characters (value not shown)',
    ),
    (
        "Aurora password from openssl rand -hex 32",
        "databasePassword",
        "a" * 64,
        "inference-fleet:databasePassword: Aurora takes a master password of 8-41 printable ASCII characters "
        'without / " @; got 64 characters (value not shown)',
    ),
    (
        "Redis token with a slash",
        "redisAuthToken",
        "0123456789abcdef/0123",
        "inference-fleet:redisAuthToken: ElastiCache takes an AUTH token of 16-128 ASCII letters, digits and "
        "! & # $ ^ < > -; got 21 characters (value not shown)",
    ),
    (
        "Redis token too short",
        "redisAuthToken",
        "short-token",
        "inference-fleet:redisAuthToken: ElastiCache takes an AUTH token of 16-128 ASCII letters, digits and "
        "! & # $ ^ < > -; got 11 characters (value not shown)",
    ),
    (
        "provider key for an unknown provider",
        "providerApiKeys",
        {
            "openai": "k",
            "anthropic": "k",
            "together_ai": "k",
            "fireworks_ai": "k",
            "runpod": "k",
            "openia": "k",
        },
        "inference-fleet:providerApiKeys: unknown provider(s) openia; allowed: openai, anthropic, together_ai, "
        "fireworks_ai, groq, deepinfra, mistral, replicate, lambda_ai, runpod, modal, openai_compatible "
        "(value not shown)",
    ),
]


@pytest.mark.parametrize(
    ("key", "value", "expected"), [c[1:] for c in SECRET_CASES], ids=[c[0] for c in SECRET_CASES]
)
def test_a_secret_the_cloud_would_refuse_is_named_without_its_value(stack_input, key, value, expected):
    stack = stack_input("prod", {key: value})
    with pytest.raises(ConfigError) as raised:
        parse_stack_config(stack.config, set(stack.secret_keys))
    assert raised.value.problems == [expected]
    assert str(value) not in str(raised.value)


def test_the_readme_generation_commands_make_values_the_clouds_accept(stack_input):
    """Run each `openssl rand` command the README gives for a secret and check the value as `pulumi up` would."""
    readme = (PROJECT_DIR / "README.md").read_text()
    commands = {}
    for line in readme.splitlines():
        for key in ("gatewayMasterKey", "databasePassword", "redisAuthToken"):
            if f"secrets.{key} " in line and "openssl rand" in line:
                commands[key] = line.split(f"secrets.{key} ", 1)[1].rsplit(" --secret", 1)[0]
    assert set(commands) == {"gatewayMasterKey", "databasePassword", "redisAuthToken"}, commands
    values = {
        key: subprocess.run(
            ["bash", "-c", f"printf %s {command}"], capture_output=True, text=True, check=True
        ).stdout
        for key, command in commands.items()
    }
    stack = stack_input("prod", values)
    parse_stack_config(stack.config, set(stack.secret_keys))  # raises ConfigError on a value AWS refuses


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("{tmp}", "error: --out {tmp}: is a directory; give a file path"),
        ("{tmp}/missing/plan.json", "error: --out {tmp}/missing/plan.json: no directory {tmp}/missing"),
    ],
    ids=["a directory", "a missing directory"],
)
def test_out_that_cannot_be_written_fails_before_rendering(tmp_path, capsys, out, expected):
    (tmp_path / "project").mkdir()
    directory = project(tmp_path / "project", PROD_TEXT)
    target = out.format(tmp=tmp_path)
    code, lines = plan(directory, capsys, "--out", target)
    assert (code, lines) == (2, [expected.format(tmp=tmp_path)])
