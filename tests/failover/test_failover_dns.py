"""The API name's failover: health checks, the PRIMARY/SECONDARY pair, and the worst-case failover time
computed from what is declared and held to the stack's RTO at config time."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from components.core.config import ConfigError
from components.stack import parse_stack_config as parse_config
from fleet.harness import Rendering

HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
RECORD = "aws:route53/record:Record"
ALB = "aws:lb/loadBalancer:LoadBalancer"
API = "api.fleet.example.com"
ALIAS_TTL = 60  # what resolvers may hold an alias to an ALB for


def api_records(rendering: Rendering, name: str = API) -> list[Any]:
    return [r for r in rendering.of_type(RECORD) if r.inputs["name"] == name]


def alb_of(rendering: Rendering, region: str) -> Any:
    provider = rendering.one("pulumi:providers:aws", f"aws-{region}").urn
    # The region's gateway ALB (the GPU pools' internal load balancers are no failover target).
    (alb,) = [
        r for r in rendering.of_type(ALB) if r.provider == provider and r.name.startswith("control-plane-")
    ]
    return alb


def worst_case_from_declarations(rendering: Rendering) -> int:
    """Recompute the figure from the recorded resources alone, as a reviewer would."""
    checks = rendering.of_type(HEALTH_CHECK)
    detection = max(c.inputs["requestInterval"] * c.inputs["failureThreshold"] for c in checks)
    ttls = [ALIAS_TTL if r.inputs.get("aliases") else r.inputs["ttl"] for r in api_records(rendering)]
    return detection + max(ttls)


def control_plane(stack_input, **changes: dict[str, Any]) -> dict[str, Any]:
    """The prod stack's controlPlane with some sections' keys changed."""
    config = json.loads(stack_input("prod").config["inference-fleet:controlPlane"])
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    return config


def problems(stack_input, changes: dict[str, Any]) -> list[str]:
    stack = stack_input("prod", changes)
    with pytest.raises(ConfigError) as raised:
        parse_config(stack.config, set(stack.secret_keys))
    return raised.value.problems


def test_each_region_has_an_https_health_check_on_the_gateway_readiness(render):
    prod = render("prod")
    checks = {c.inputs["fqdn"]: c for c in prod.of_type(HEALTH_CHECK)}
    assert set(checks) == {"us-east-1.api.fleet.example.com", "us-west-2.api.fleet.example.com"}
    for check in checks.values():
        assert check.inputs["type"] == "HTTPS"
        assert check.inputs["port"] == 443
        assert check.inputs["resourcePath"] == "/health/readiness"
        assert check.inputs["enableSni"] is True
        assert check.inputs["requestInterval"] == 10
        assert check.inputs["failureThreshold"] == 3
        assert check.inputs["regions"] == ["us-east-1", "us-west-2", "eu-west-1"]


def test_the_checked_names_lead_to_their_own_regions_alb(render):
    prod = render("prod")
    for region in ("us-east-1", "us-west-2"):
        (record,) = api_records(prod, f"{region}.api.fleet.example.com")
        (alias,) = record.inputs["aliases"]
        assert alias["name"] == alb_of(prod, region).outputs["dnsName"]


def test_the_api_name_is_a_primary_secondary_pair_tied_to_the_health_checks(render):
    prod = render("prod")
    checks = {c.inputs["fqdn"].split(".", 1)[0]: c for c in prod.of_type(HEALTH_CHECK)}
    records = api_records(prod)
    assert len(records) == 2
    by_role = {r.inputs["failoverRoutingPolicies"][0]["type"]: r for r in records}
    assert set(by_role) == {"PRIMARY", "SECONDARY"}
    for role, region in (("PRIMARY", "us-east-1"), ("SECONDARY", "us-west-2")):
        record = by_role[role]
        assert record.inputs["healthCheckId"] == checks[region].id
        assert record.inputs["type"] == "CNAME"
        assert record.inputs["records"] == [alb_of(prod, region).outputs["dnsName"]]
        assert record.inputs["ttl"] == 15
        assert record.inputs["setIdentifier"]
    assert prod.outputs["healthCheckIds"] == {region: check.id for region, check in checks.items()}


def test_the_budget_is_what_the_declarations_add_up_to_and_within_the_rto(render):
    prod = render("prod")
    budgets = prod.outputs["budgets"]
    assert budgets["worstCaseFailoverSeconds"] == worst_case_from_declarations(prod) == 45
    assert budgets["worstCaseFailoverSeconds"] <= budgets["failoverRtoSeconds"] == 60


def test_an_alias_pair_is_held_60_s_and_the_budget_says_so(render, stack_input):
    relaxed = control_plane(stack_input, dns={"recordType": "alias"}, failover={"rtoSeconds": 120})
    rendering = render("prod", {"controlPlane": relaxed})
    records = api_records(rendering)
    assert {r.inputs["type"] for r in records} == {"A"}
    for record in records:
        (alias,) = record.inputs["aliases"]
        assert alias["evaluateTargetHealth"] is True
        assert record.inputs["healthCheckId"]
    assert (
        rendering.outputs["budgets"]["worstCaseFailoverSeconds"]
        == worst_case_from_declarations(rendering)
        == 90
    )


def test_slower_detection_moves_the_budget(render, stack_input):
    slower = control_plane(
        stack_input, failover={"healthCheckIntervalSeconds": 30, "failureThreshold": 2, "rtoSeconds": 90}
    )
    rendering = render("prod", {"controlPlane": slower})
    assert (
        rendering.outputs["budgets"]["worstCaseFailoverSeconds"]
        == worst_case_from_declarations(rendering)
        == 75
    )


def test_dev_serves_a_plain_record_without_health_checks_or_budget(render):
    dev = render("dev")
    assert dev.of_type(HEALTH_CHECK) == []
    (record,) = api_records(dev, "api.dev.fleet.example.com")
    assert not record.inputs.get("failoverRoutingPolicies")
    assert not record.inputs.get("healthCheckId")
    assert not record.inputs.get("setIdentifier")
    (alias,) = record.inputs["aliases"]
    assert alias["name"] == alb_of(dev, "us-east-1").outputs["dnsName"]
    assert not {"failoverRtoSeconds", "worstCaseFailoverSeconds"} & set(dev.outputs["budgets"])


# --- rejected at config time -------------------------------------------------------------------------------

RTO_CASES = [
    (
        "alias pair over a 60 s RTO",
        {"dns": {"recordType": "alias"}},
        "inference-fleet:controlPlane.failover.rtoSeconds: got 60, but failover can take 90 s (10 s x 3 failed "
        "checks to detect + 60 s an alias to an ALB is held); use dns.recordType cname with dns.ttlSeconds at most 30",
    ),
    (
        "TTL too long",
        {"dns": {"ttlSeconds": 45}},
        "inference-fleet:controlPlane.failover.rtoSeconds: got 60, but failover can take 75 s (10 s x 3 failed "
        "checks to detect + 45 s the record's TTL); lower dns.ttlSeconds to at most 30, or detect faster",
    ),
    (
        "detection alone too slow",
        {"failover": {"healthCheckIntervalSeconds": 30, "failureThreshold": 3}},
        "inference-fleet:controlPlane.failover.rtoSeconds: got 60, but failover can take 105 s (30 s x 3 failed "
        "checks to detect + 15 s the record's TTL); detection alone leaves 0 s, less than the shortest TTL (5 s): "
        "lower healthCheckIntervalSeconds or failureThreshold",
    ),
    (
        "interval Route53 does not offer",
        {"failover": {"healthCheckIntervalSeconds": 20}},
        "inference-fleet:controlPlane.failover.healthCheckIntervalSeconds: got 20; allowed: 10 or 30",
    ),
    (
        "threshold above ten",
        {"failover": {"failureThreshold": 11}},
        "inference-fleet:controlPlane.failover.failureThreshold: got 11; input should be less than or equal to 10",
    ),
    (
        "threshold below one",
        {"failover": {"failureThreshold": 0}},
        "inference-fleet:controlPlane.failover.failureThreshold: got 0; input should be greater than or equal to 1",
    ),
    (
        "too few checker regions",
        {"failover": {"checkerRegions": ["us-east-1", "us-west-2"]}},
        "inference-fleet:controlPlane.failover.checkerRegions: got 2 region(s); Route53 checks from at least 3",
    ),
    (
        "a checker region Route53 does not have",
        {"failover": {"checkerRegions": ["us-east-1", "us-west-2", "eu-central-1"]}},
        "inference-fleet:controlPlane.failover.checkerRegions[2]: got 'eu-central-1'; Route53 checks from: "
        "us-east-1, us-west-1, us-west-2, eu-west-1, ap-southeast-1, ap-southeast-2, ap-northeast-1, sa-east-1",
    ),
    (
        "a checker region twice",
        {"failover": {"checkerRegions": ["us-east-1", "us-east-1", "eu-west-1"]}},
        "inference-fleet:controlPlane.failover.checkerRegions[1]: got 'us-east-1' twice; list each once",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), [c[1:] for c in RTO_CASES], ids=[c[0] for c in RTO_CASES])
def test_a_failover_that_cannot_meet_its_rto_is_refused_in_one_line(stack_input, changes, expected):
    assert problems(stack_input, {"controlPlane": control_plane(stack_input, **changes)}) == [expected]


def test_failover_settings_in_a_one_region_stack_are_refused(stack_input):
    dev = stack_input("dev")
    config = json.loads(dev.config["inference-fleet:controlPlane"])
    config["failover"] = {"rtoSeconds": 30}
    changed = dev.with_config({"controlPlane": config})
    with pytest.raises(ConfigError) as raised:
        parse_config(changed.config, set(changed.secret_keys))
    assert raised.value.problems == [
        "inference-fleet:controlPlane.failover: set, but there is no standbyRegion to fail over to; "
        "one region serves a plain record"
    ]


# --- what `fleet plan` shows ---------------------------------------------------------------------------------


def test_fleet_plan_shows_the_two_region_failover_topology(project_dir):
    fleet = str(Path(sys.executable).with_name("fleet"))
    result = subprocess.run(
        [fleet, "plan", "--stack", "prod", "--format", "json"],
        cwd=project_dir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in plan["resources"]:
        by_type[resource["type"]].append(resource)

    east, west = "aws-us-east-1", "aws-us-west-2"
    for resource_type in (
        "aws:lb/loadBalancer:LoadBalancer",
        "aws:ecs/service:Service",
        "aws:elasticache/replicationGroup:ReplicationGroup",
        "aws:rds/cluster:Cluster",
    ):
        providers = sorted(
            r["provider"].rsplit("::", 1)[-1]
            for r in by_type[resource_type]
            if r["name"].startswith(("control-plane-", "data-"))
        )
        assert providers == [east, west], resource_type
    assert len(by_type["aws:rds/globalCluster:GlobalCluster"]) == 1
    checks = {c["name"]: c for c in by_type[HEALTH_CHECK]}
    assert len(checks) >= 2

    pair = [r for r in by_type[RECORD] if r["inputs"].get("failoverRoutingPolicies")]
    assert sorted(r["inputs"]["failoverRoutingPolicies"][0]["type"] for r in pair) == ["PRIMARY", "SECONDARY"]
    health_check_ids = set(plan["outputs"]["healthCheckIds"].values())
    assert {r["inputs"]["healthCheckId"] for r in pair} == health_check_ids
    assert len(health_check_ids) == 2

    assert 0 < plan["budgets"]["worstCaseFailoverSeconds"] <= 60
