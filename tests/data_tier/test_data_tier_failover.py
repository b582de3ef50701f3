"""The data tier as failover needs it: stateful resources protected in prod, the global members declared so
that a role swap never makes `pulumi up` fight Aurora, an RPO bound, maintenance never in both regions at
once, replication lag watched, and the gateway's own database role created inside the VPC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.core.catalog.resource_types import (
    KMS_KEY,
    LAMBDA_FUNCTION,
    LAMBDA_INVOCATION,
    METRIC_ALARM,
    RDS_CLUSTER,
    RDS_CLUSTER_PARAMETER_GROUP,
    RDS_GLOBAL_CLUSTER,
    REDIS_REPLICATION_GROUP,
    SECRET_VERSION,
)
from fleet.harness import RecordedResource, Rendering, is_secret
from functions.db_bootstrap.settings import BootstrapRequest

BOOTSTRAP = Path(__file__).resolve().parents[2] / "functions" / "db_bootstrap"


def region_of(rendering: Rendering, resource: RecordedResource) -> str:
    assert resource.provider
    return rendering.get(resource.provider).inputs["region"]


def test_prod_protects_keys_global_cluster_and_clusters_and_dev_does_not(render):
    for stack, protected in (("prod", True), ("dev", False)):
        rendering = render(stack)
        stateful = [
            *rendering.of_type(KMS_KEY),
            *rendering.of_type(RDS_GLOBAL_CLUSTER),
            *rendering.of_type(RDS_CLUSTER),
        ]
        assert stateful
        assert {r.options.protect for r in stateful} == {protected}, stack


def test_both_global_members_ignore_what_aurora_changes_on_a_role_swap(render):
    prod = render("prod")
    for cluster in prod.of_type(RDS_CLUSTER):
        assert set(cluster.options.ignore_changes) == {"replicationSourceIdentifier", "engineVersion"}
    (dev_cluster,) = render("dev").of_type(RDS_CLUSTER)
    assert dev_cluster.options.ignore_changes == ()


def test_maintenance_never_hits_both_regions_at_once(render):
    prod = render("prod")
    for resource_type, key in (
        (RDS_CLUSTER, "preferredMaintenanceWindow"),
        (REDIS_REPLICATION_GROUP, "maintenanceWindow"),
    ):
        # The gateway's Redis (the model store's metadata Redis has windows of its own: tests/model_store).
        resources = [r for r in prod.of_type(resource_type) if not r.name.startswith("models-")]
        windows = {region_of(prod, r): r.inputs[key] for r in resources}
        days = {region: window.split(":", 1)[0] for region, window in windows.items()}
        assert len(set(days.values())) == 2, windows


def test_the_rpo_bound_is_set_in_both_regions_and_only_for_a_global_database(render):
    prod = render("prod")
    for group in prod.of_type(RDS_CLUSTER_PARAMETER_GROUP):
        params = {p["name"]: p["value"] for p in group.inputs["parameters"]}
        assert params == {"rds.force_ssl": "1", "rds.global_db_rpo": "30"}
    (dev_group,) = render("dev").of_type(RDS_CLUSTER_PARAMETER_GROUP)
    assert [p["name"] for p in dev_group.inputs["parameters"]] == ["rds.force_ssl"]


def test_replication_lag_alarms_in_the_standby_at_half_the_rpo_bound(render):
    prod = render("prod")
    (lag,) = [a for a in prod.of_type(METRIC_ALARM) if a.name.endswith("replication-lag")]
    assert region_of(prod, lag) == "us-west-2"
    standby = next(c for c in prod.of_type(RDS_CLUSTER) if region_of(prod, c) == "us-west-2")
    assert lag.inputs["metricName"] == "AuroraGlobalDBReplicationLag"
    assert lag.inputs["dimensions"] == {"DBClusterIdentifier": standby.outputs["clusterIdentifier"]}
    assert lag.inputs["threshold"] == 15_000  # milliseconds
    assert lag.inputs["alarmActions"] == [prod.outputs["alertTopics"]["us-west-2"]]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_gateway_role_is_created_inside_the_vpc_as_the_master_user_never_used_by_the_gateway(
    render, stack
):
    rendering = render(stack)
    function = rendering.one(LAMBDA_FUNCTION, "data-gateway-role-function")
    assert region_of(rendering, function) == "us-east-1"
    assert (
        function.inputs["vpcConfig"]["subnetIds"]
        == rendering.outputs["networks"]["us-east-1"]["privateSubnetIds"]
    )
    assert function.inputs["handler"] == "db_bootstrap.handler.handle"
    assets = getattr(function.inputs["code"], "assets", None) or {}
    assert set(assets) == {f"db_bootstrap/{p.name}" for p in BOOTSTRAP.glob("*.py")}

    invocation = rendering.one(LAMBDA_INVOCATION, "data-gateway-role-run")
    assert invocation.inputs["functionName"] == function.outputs["name"]
    assert is_secret(invocation.inputs["input"])  # it carries both passwords
    request = BootstrapRequest.from_event(json.loads(invocation.inputs["input"]["value"]))
    assert (request.master_user, request.gateway_user) == ("litellm", "litellm_gateway")
    assert request.host == rendering.outputs["database"]["writerEndpoint"]
    assert request.master_password != request.gateway_password

    # The gateway's secret names that role, and so waits for the invocation.
    version = rendering.one(SECRET_VERSION, "control-plane-us-east-1-gateway-secret")
    assert invocation.urn in version.property_dependencies["secretString"]
