"""The API name's failover: health checks on each region's "can serve" path, the PRIMARY/SECONDARY pair,
the status record the prober reads, and the budgets (DNS failover, region-loss RTO, RPO) computed from
what is declared and held to the stack's targets at config time."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from components.core.catalog.resource_types import (
    AWS_PROVIDER,
    ECS_SERVICE,
    ECS_TASK_DEFINITION,
    LOAD_BALANCER,
    METRIC_ALARM,
    RDS_CLUSTER,
    RDS_CLUSTER_PARAMETER_GROUP,
    RDS_GLOBAL_CLUSTER,
    REDIS_REPLICATION_GROUP,
    ROUTE53_HEALTH_CHECK,
    ROUTE53_RECORD,
)
from components.core.config import ConfigError
from components.stack import parse_stack_config as parse_config
from fleet.harness import Rendering

API = "api.fleet.example.com"
ALIAS_TTL = 60  # what resolvers may hold an alias to an ALB for
PROBE_TIMEOUT = 4 + 2  # Route53: connect within 4 s, a status within 2 s of connecting
JVM_DNS_CACHE = 30  # OpenJDK without a security manager holds an answer this long, whatever its TTL


def api_records(rendering: Rendering, name: str = API) -> list[Any]:
    return [r for r in rendering.of_type(ROUTE53_RECORD) if r.inputs["name"] == name]


def endpoint_checks(rendering: Rendering) -> list[Any]:
    return [c for c in rendering.of_type(ROUTE53_HEALTH_CHECK) if c.inputs["type"] == "HTTPS"]


def alb_of(rendering: Rendering, region: str) -> Any:
    provider = rendering.one(AWS_PROVIDER, f"aws-{region}").urn
    # The region's gateway ALB (the GPU pools' internal load balancers are no failover target).
    (alb,) = [
        r
        for r in rendering.of_type(LOAD_BALANCER)
        if r.provider == provider and r.name.startswith("control-plane-")
    ]
    return alb


def worst_case_from_declarations(rendering: Rendering) -> int:
    """Recompute the figure from the recorded resources alone, as a reviewer would: the first probe up to
    an interval late, the rest of the failed probes, the last one timing out; then the longer of the TTL
    resolvers hold and a JVM's own 30 s cache; then a pooled connection the ALB keeps open."""
    detection = max(
        c.inputs["requestInterval"] * c.inputs["failureThreshold"] + PROBE_TIMEOUT
        for c in endpoint_checks(rendering)
    )
    ttls = [ALIAS_TTL if r.inputs.get("aliases") else r.inputs["ttl"] for r in api_records(rendering)]
    keep_alive = max(
        alb_of(rendering, region).inputs["clientKeepAlive"] for region in ("us-east-1", "us-west-2")
    )
    return detection + max(*ttls, JVM_DNS_CACHE) + keep_alive


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


def test_each_region_has_an_https_health_check_on_its_can_serve_path(render):
    prod = render("prod")
    checks = {c.inputs["fqdn"]: c for c in endpoint_checks(prod)}
    assert set(checks) == {"us-east-1.api.fleet.example.com", "us-west-2.api.fleet.example.com"}
    for check in checks.values():
        assert check.inputs["port"] == 443
        # The region-health sidecar: the gateway and a model backend, never the database.
        assert check.inputs["resourcePath"] == "/fleet/region-health"
        assert check.inputs["enableSni"] is True
        assert check.inputs["requestInterval"] == 10
        assert check.inputs["failureThreshold"] == 3
        # Never from the primary's or the standby's own region: three others.
        assert check.inputs["regions"] == ["us-west-1", "eu-west-1", "ap-southeast-1"]


def test_the_checked_names_lead_to_their_own_regions_alb(render):
    prod = render("prod")
    for region in ("us-east-1", "us-west-2"):
        (record,) = api_records(prod, f"{region}.api.fleet.example.com")
        (alias,) = record.inputs["aliases"]
        assert alias["name"] == alb_of(prod, region).outputs["dnsName"]


def test_the_api_name_is_a_primary_secondary_pair_tied_to_the_health_checks(render):
    prod = render("prod")
    checks = {c.inputs["fqdn"].split(".", 1)[0]: c for c in endpoint_checks(prod)}
    records = api_records(prod)
    assert len(records) == 2
    by_role = {r.inputs["failoverRoutingPolicies"][0]["type"]: r for r in records}
    assert set(by_role) == {"PRIMARY", "SECONDARY"}
    # The PRIMARY record's check also asks where the database writer is (the next test).
    follows_writer = prod.one(ROUTE53_HEALTH_CHECK, "dns-us-east-1-serves-with-writer")
    tied = {"PRIMARY": follows_writer.id, "SECONDARY": checks["us-west-2"].id}
    for role, region in (("PRIMARY", "us-east-1"), ("SECONDARY", "us-west-2")):
        record = by_role[role]
        assert record.inputs["healthCheckId"] == tied[role]
        assert record.inputs["type"] == "CNAME"
        assert record.inputs["records"] == [alb_of(prod, region).outputs["dnsName"]]
        assert record.inputs["ttl"] == 10
        assert record.inputs["setIdentifier"]
    assert prod.outputs["healthCheckIds"] == {region: check.id for region, check in checks.items()}


def test_dns_follows_the_database_writer(render):
    """After a failover (or a switchover) the writer is the standby's: the PRIMARY record stays unhealthy
    even when the primary's gateways serve again, so clients are not sent where every write would cross
    back to the standby; it turns healthy with the failback switchover."""
    prod = render("prod")
    primary = next(c for c in endpoint_checks(prod) if c.inputs["fqdn"].startswith("us-east-1."))
    follows = prod.one(ROUTE53_HEALTH_CHECK, "dns-us-east-1-serves-with-writer")
    holds = prod.one(ROUTE53_HEALTH_CHECK, "dns-us-east-1-holds-writer")
    assert (follows.inputs["type"], follows.inputs["childHealthThreshold"]) == ("CALCULATED", 2)
    assert follows.inputs["childHealthchecks"] == [primary.id, holds.id]
    # Healthy while the prober's writer-location alarm is OK; a prober gone quiet changes nothing.
    alarm = prod.one(METRIC_ALARM, "promotion-writer-in-standby")
    assert holds.inputs["type"] == "CLOUDWATCH_METRIC"
    assert (holds.inputs["cloudwatchAlarmName"], holds.inputs["cloudwatchAlarmRegion"]) == (
        alarm.outputs["name"],
        "us-west-2",
    )
    assert holds.inputs["insufficientDataHealthStatus"] == "LastKnownStatus"
    assert prod.get(alarm.provider).inputs["region"] == "us-west-2"
    assert (alarm.inputs["namespace"], alarm.inputs["metricName"]) == (
        "inference-fleet/failover",
        "WriterInStandby",
    )
    assert alarm.inputs["dimensions"] == {"Stack": "prod"}
    # Route53 takes standard-resolution alarms on a plain statistic, and no metric math.
    assert (alarm.inputs["period"], alarm.inputs["statistic"]) == (60, "Maximum")
    assert alarm.inputs["treatMissingData"] == "missing"
    # Where DNS points is not the prober's witness: the status record keeps the primary's own check.
    status = api_records(prod, "_status.us-east-1.api.fleet.example.com")
    assert primary.id in {r.inputs["healthCheckId"] for r in status}
    # One region: nothing to follow.
    assert not [c for c in render("dev").of_type(ROUTE53_HEALTH_CHECK)]


def test_the_status_record_answers_with_route53s_verdict_on_the_primary(render):
    prod = render("prod")
    primary = next(c for c in endpoint_checks(prod) if c.inputs["fqdn"].startswith("us-east-1."))
    (inverse,) = [c for c in prod.of_type(ROUTE53_HEALTH_CHECK) if c.inputs.get("invertHealthcheck")]
    # Healthy exactly when the primary's check is not.
    assert inverse.inputs["childHealthchecks"] == [primary.id]
    assert (inverse.inputs["childHealthThreshold"], inverse.inputs["invertHealthcheck"]) == (1, True)
    records = api_records(prod, "_status.us-east-1.api.fleet.example.com")
    answers = {r.inputs["failoverRoutingPolicies"][0]["type"]: r for r in records}
    assert set(answers) == {"PRIMARY", "SECONDARY"}
    assert (answers["PRIMARY"].inputs["records"], answers["PRIMARY"].inputs["healthCheckId"]) == (
        ["healthy"],
        primary.id,
    )
    assert (answers["SECONDARY"].inputs["records"], answers["SECONDARY"].inputs["healthCheckId"]) == (
        ["failing"],
        inverse.id,
    )
    assert {r.inputs["type"] for r in records} == {"TXT"}
    assert prod.outputs["failover"]["statusRecord"] == "_status.us-east-1.api.fleet.example.com"


def test_the_dns_budget_is_what_the_declarations_add_up_to_and_within_the_target(render):
    prod = render("prod")
    budgets = prod.outputs["budgets"]
    assert budgets["dnsFailoverWorstCaseSeconds"] == worst_case_from_declarations(prod) == 126
    assert budgets["dnsFailoverWorstCaseSeconds"] <= budgets["dnsFailoverRtoTargetSeconds"] == 130
    dns = budgets["failover"]["gatewayFailureInference"]
    assert [(t["term"], t["best"], t["typical"], t["worst"]) for t in dns["terms"]] == [
        ("firstProbeOffset", 0, 9, 10),  # checkers unsynchronized; over 82% of them must fail it
        ("probeIntervals", 20, 20, 20),
        ("probeTimeout", 0, 0, 6),  # the sidecar answers 503 at once; a blackholed one times out
        ("dnsTtl", 0, 5, 10),
        ("ttlIgnoringResolver", 0, 0, 20),  # a JVM's 30 s, past the 10 s TTL
        ("keepAliveHeld", 0, 30, 60),  # the ALB's client keep-alive
    ]
    assert (dns["bestSeconds"], dns["typicalSeconds"], dns["worstSeconds"]) == (20, 64, 126)
    assert all(t["source"] for t in dns["terms"])
    # Compared with the planning documents' 60 s, as every failover budget is.
    assert budgets["failover"]["planningTargetSeconds"] == 60


def test_the_region_loss_budgets_report_inference_and_writes_apart(render):
    prod = render("prod")
    budgets = prod.outputs["budgets"]
    loss = budgets["failover"]
    inference = {t["term"]: t for t in loss["regionLossInference"]["terms"]}
    # A lost region holds no connection open: DNS and the resolvers only.
    assert list(inference) == [
        "firstProbeOffset",
        "probeIntervals",
        "probeTimeout",
        "dnsTtl",
        "ttlIgnoringResolver",
    ]
    assert loss["regionLossInference"]["worstSeconds"] == 10 + 20 + 6 + 10 + 20 == 66
    capacity = {t["term"]: t["worst"] for t in loss["regionLossCapacity"]["terms"]}
    assert set(capacity) - set(inference) == {"takeoverAlarm", "taskStart", "targetRegistration"}
    writes = {t["term"]: t for t in loss["regionLossWrites"]["terms"]}
    assert (
        budgets["regionLossRtoSeconds"]
        == loss["regionLossWrites"]["worstSeconds"]
        == sum(t["worst"] for t in writes.values())
    )
    assert writes["agreement"]["worst"] == 60  # promoteAfterSeconds
    # A run every minute, observing for 55 s (the last observation at 50 s), that EventBridge may start
    # anywhere within its minute: up to 70 s without an observation, and a cold start's 10 s INIT.
    assert writes["firstObservation"]["worst"] == writes["closingObservation"]["worst"] == 60 + 60 - 50 + 10
    # Aurora's promotion: AWS's "under a minute" typically, our allowance in the worst case.
    assert (writes["auroraFailover"]["typical"], writes["auroraFailover"]["worst"]) == (60, 180)
    # The gateways' database watchdog, as their task definition sets it: interval + probe + reconnect.
    env = {
        e["name"]: e["value"]
        for c in json.loads(next(t for t in prod.of_type(ECS_TASK_DEFINITION)).inputs["containerDefinitions"])
        if c["name"] == "gateway"
        for e in c["environment"]
    }
    watchdog = [
        "PRISMA_HEALTH_WATCHDOG_INTERVAL_SECONDS",
        "PRISMA_HEALTH_WATCHDOG_PROBE_TIMEOUT_SECONDS",
        "PRISMA_WATCHDOG_RECONNECT_TIMEOUT_SECONDS",
    ]
    assert writes["gatewayReconnect"]["worst"] == sum(int(env[k]) for k in watchdog)
    assert budgets["regionLossRtoSeconds"] == 494 <= budgets["regionLossRtoTargetSeconds"] == 500
    # The RPO is the bound the parameter groups set (rds.global_db_rpo), within the target.
    bounds = {
        p["value"]
        for group in prod.of_type(RDS_CLUSTER_PARAMETER_GROUP)
        for p in group.inputs["parameters"]
        if p["name"] == "rds.global_db_rpo"
    }
    assert bounds == {str(int(budgets["rpoSeconds"]))} == {"30"}
    assert budgets["rpoSeconds"] <= budgets["rpoTargetSeconds"] == 60


def test_an_alias_pair_is_held_60_s_and_the_budget_says_so(render, stack_input):
    relaxed = control_plane(stack_input, dns={"recordType": "alias"}, failover={"rtoSeconds": 160})
    rendering = render("prod", {"controlPlane": relaxed})
    records = api_records(rendering)
    assert {r.inputs["type"] for r in records} == {"A"}
    for record in records:
        (alias,) = record.inputs["aliases"]
        assert alias["evaluateTargetHealth"] is True
        assert record.inputs["healthCheckId"]
    assert (
        rendering.outputs["budgets"]["dnsFailoverWorstCaseSeconds"]
        == worst_case_from_declarations(rendering)
        == 156
    )


def test_slower_detection_moves_the_budget(render, stack_input):
    slower = control_plane(
        stack_input,
        failover={
            "healthCheckIntervalSeconds": 30,
            "failureThreshold": 2,
            "rtoSeconds": 160,
            "regionLossRtoSeconds": 600,
        },
    )
    rendering = render("prod", {"controlPlane": slower})
    assert (
        rendering.outputs["budgets"]["dnsFailoverWorstCaseSeconds"]
        == worst_case_from_declarations(rendering)
        == 156
    )
    # Detection 30 s slower: 30 s first-probe offset, one 30 s interval instead of two 10 s ones.
    assert rendering.outputs["budgets"]["regionLossRtoSeconds"] == 494 + 30


def test_dev_serves_a_plain_record_without_health_checks_or_budget(render):
    dev = render("dev")
    assert dev.of_type(ROUTE53_HEALTH_CHECK) == []
    assert dev.of_type("inference-fleet:failover:FailoverProber") == []
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
        "alias pair over its RTO",
        {"dns": {"recordType": "alias"}},
        "inference-fleet:controlPlane.failover.rtoSeconds: got 130, but a gateway-level failover can take 156 "
        "s (10 s firstProbeOffset + 20 s probeIntervals + 6 s probeTimeout + 60 s dnsTtl + 0 s "
        "ttlIgnoringResolver + 60 s keepAliveHeld); detect faster (healthCheckIntervalSeconds 10, a lower "
        "failureThreshold), use a cname with a shorter dns.ttlSeconds, or raise rtoSeconds to at least 156",
    ),
    (
        "TTL too long",
        {"dns": {"ttlSeconds": 45}},
        "inference-fleet:controlPlane.failover.rtoSeconds: got 130, but a gateway-level failover can take 141 "
        "s (10 s firstProbeOffset + 20 s probeIntervals + 6 s probeTimeout + 45 s dnsTtl + 0 s "
        "ttlIgnoringResolver + 60 s keepAliveHeld); detect faster (healthCheckIntervalSeconds 10, a lower "
        "failureThreshold), use a cname with a shorter dns.ttlSeconds, or raise rtoSeconds to at least 141",
    ),
    (
        "detection too slow",
        {"failover": {"healthCheckIntervalSeconds": 30, "failureThreshold": 3}},
        "inference-fleet:controlPlane.failover.rtoSeconds: got 130, but a gateway-level failover can take 186 "
        "s (30 s firstProbeOffset + 60 s probeIntervals + 6 s probeTimeout + 10 s dnsTtl + 20 s "
        "ttlIgnoringResolver + 60 s keepAliveHeld); detect faster (healthCheckIntervalSeconds 10, a lower "
        "failureThreshold), use a cname with a shorter dns.ttlSeconds, or raise rtoSeconds to at least 186",
    ),
    (
        "a target no setting can meet",
        {"failover": {"rtoSeconds": 60}},
        "inference-fleet:controlPlane.failover.rtoSeconds: got 60, but a gateway-level failover can take 126 "
        "s (10 s firstProbeOffset + 20 s probeIntervals + 6 s probeTimeout + 10 s dnsTtl + 20 s "
        "ttlIgnoringResolver + 60 s keepAliveHeld); no setting fails every client over faster than 106 s: "
        "raise rtoSeconds to at least 126 as declared, or to 106 with 10 s checks, threshold 1 and a 5 s cname",
    ),
    (
        "region loss slower than its target",
        {"failover": {"regionLossRtoSeconds": 480}},
        "inference-fleet:controlPlane.failover.regionLossRtoSeconds: got 480, but writes can take 494 s to "
        "resume after a region loss (10 s firstProbeOffset + 20 s probeIntervals + 6 s probeTimeout + 10 s "
        "statusRecordTtl + 80 s firstObservation + 60 s agreement + 80 s closingObservation + 3 s recheck + "
        "180 s auroraFailover + 45 s gatewayReconnect); lower promoteAfterSeconds to at most 40",
    ),
    (
        "a region-loss target no setting can meet",
        {"failover": {"regionLossRtoSeconds": 300}},
        "inference-fleet:controlPlane.failover.regionLossRtoSeconds: got 300, but writes can take 494 s to "
        "resume after a region loss (10 s firstProbeOffset + 20 s probeIntervals + 6 s probeTimeout + 10 s "
        "statusRecordTtl + 80 s firstObservation + 60 s agreement + 80 s closingObservation + 3 s recheck + "
        "180 s auroraFailover + 45 s gatewayReconnect); even the fastest detection and promoteAfterSeconds 30 "
        "take 444 s: raise regionLossRtoSeconds to at least 444",
    ),
    (
        "an RPO target Aurora cannot bound",
        {"failover": {"rpoSeconds": 10}},
        "inference-fleet:controlPlane.failover.rpoSeconds: got 10; Aurora bounds a global database's RPO at 20 s at "
        "the least (rds.global_db_rpo): raise rpoSeconds to at least 20",
    ),
    (
        "an RPO target under the database's bound",
        {"failover": {"rpoSeconds": 25}},
        "inference-fleet:controlPlane.failover.rpoSeconds: got 25, but the database bounds its RPO at 30 s "
        "(database.globalRpoSeconds, Aurora's rds.global_db_rpo): lower database.globalRpoSeconds to at most 25",
    ),
    (
        "an agreement window the prober cannot count",
        {"failover": {"promoteAfterSeconds": 65}},
        "inference-fleet:controlPlane.failover.promoteAfterSeconds: got 65; the prober observes every 10 s: give a "
        "multiple of 10",
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
        {"failover": {"checkerRegions": ["us-west-1", "eu-west-1"]}},
        "inference-fleet:controlPlane.failover.checkerRegions: got 2 region(s); Route53 checks from at least "
        "3",
    ),
    (
        "a checker region Route53 does not have",
        {"failover": {"checkerRegions": ["us-west-1", "eu-west-1", "eu-central-1"]}},
        "inference-fleet:controlPlane.failover.checkerRegions[2]: got 'eu-central-1'; Route53 checks from: "
        "us-east-1, us-west-1, us-west-2, eu-west-1, ap-southeast-1, ap-southeast-2, ap-northeast-1, sa-east-1",
    ),
    (
        "a checker region twice",
        {"failover": {"checkerRegions": ["us-west-1", "us-west-1", "eu-west-1"]}},
        "inference-fleet:controlPlane.failover.checkerRegions[1]: got 'us-west-1' twice; list each once",
    ),
    (
        "checkers in the primary's own region",
        {"failover": {"checkerRegions": ["us-east-1", "eu-west-1", "sa-east-1"]}},
        "inference-fleet:controlPlane.failover.checkerRegions[0]: got 'us-east-1', the primary region: its "
        "own checkers keep it healthy while the rest of the internet cannot reach it (Route53 counts over 18% "
        "healthy as healthy); check from outside both, e.g. us-west-1, eu-west-1, ap-southeast-1",
    ),
    (
        "checkers in the standby's own region",
        {"failover": {"checkerRegions": ["eu-west-1", "sa-east-1", "us-west-2"]}},
        "inference-fleet:controlPlane.failover.checkerRegions[2]: got 'us-west-2', the standby region: its "
        "own checkers keep it healthy while the rest of the internet cannot reach it (Route53 counts over 18% "
        "healthy as healthy); check from outside both, e.g. us-west-1, eu-west-1, ap-southeast-1",
    ),
    (
        "a serverless-only verdict that is neither",
        {"failover": {"serverlessOnly": "sometimes"}},
        "inference-fleet:controlPlane.failover.serverlessOnly: got 'sometimes'; allowed: 'healthy' or "
        "'failing'",
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
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in plan["resources"]:
        by_type[resource["type"]].append(resource)

    east, west = "aws-us-east-1", "aws-us-west-2"
    for resource_type in (
        LOAD_BALANCER,
        ECS_SERVICE,
        REDIS_REPLICATION_GROUP,
        RDS_CLUSTER,
    ):
        providers = sorted(
            r["provider"].rsplit("::", 1)[-1]
            for r in by_type[resource_type]
            if r["name"].startswith(("control-plane-", "data-"))
        )
        assert providers == [east, west], resource_type
    assert len(by_type[RDS_GLOBAL_CLUSTER]) == 1
    checks = {c["name"]: c for c in by_type[ROUTE53_HEALTH_CHECK]}
    assert len(checks) >= 2

    pair = [
        r
        for r in by_type[ROUTE53_RECORD]
        if r["inputs"].get("failoverRoutingPolicies") and r["inputs"]["name"] == API
    ]
    assert sorted(r["inputs"]["failoverRoutingPolicies"][0]["type"] for r in pair) == ["PRIMARY", "SECONDARY"]
    health_check_ids = plan["outputs"]["healthCheckIds"]
    assert len(set(health_check_ids.values())) == 2
    tied = {r["inputs"]["failoverRoutingPolicies"][0]["type"]: r["inputs"]["healthCheckId"] for r in pair}
    assert tied["SECONDARY"] == health_check_ids["us-west-2"]
    # The PRIMARY's is the calculated check that also follows the writer, over the primary's own check.
    (follows,) = [c for c in checks.values() if c["name"] == "dns-us-east-1-serves-with-writer"]
    assert tied["PRIMARY"] != health_check_ids["us-east-1"]
    assert health_check_ids["us-east-1"] in follows["inputs"]["childHealthchecks"]

    assert (
        0 < plan["budgets"]["dnsFailoverWorstCaseSeconds"] <= plan["budgets"]["dnsFailoverRtoTargetSeconds"]
    )
    # Each failover budget term by term, in the order the terms happen.
    breakdown = plan["budgets"]["failover"]
    assert [t["term"] for t in breakdown["regionLossWrites"]["terms"]][-2:] == [
        "auroraFailover",
        "gatewayReconnect",
    ]
    assert plan["budgets"]["regionLossRtoSeconds"] <= plan["budgets"]["regionLossRtoTargetSeconds"]
    assert plan["budgets"]["rpoSeconds"] <= plan["budgets"]["rpoTargetSeconds"]
