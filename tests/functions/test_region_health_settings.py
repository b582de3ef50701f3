"""The region-health sidecar's settings: what the gateway service renders, the sidecar reads back whole."""

from __future__ import annotations

from functions.region_health.region_health import backend_urls
from functions.region_health.settings import Backend, RegionHealthSettings

SETTINGS = RegionHealthSettings(
    gateway_liveness_url="http://127.0.0.1:4000/health/liveliness",
    backends=(
        Backend("llama/pool/east", "http://east.pools.fleet.example.com/v1"),
        Backend("llama/openai", "https://api.openai.com/v1", ("OPENAI_BASE_URL", "OPENAI_API_BASE")),
    ),
    port=4101,
    refresh_seconds=0.5,
    check_timeout_seconds=1.5,
)


def test_the_settings_round_trip_through_the_environment():
    env = SETTINGS.to_env()
    assert all(isinstance(value, str) for value in env.values())
    assert RegionHealthSettings.from_env(env) == SETTINGS
    assert RegionHealthSettings.from_env(env).to_env() == env


def test_defaults_render_as_a_person_would_write_them():
    env = RegionHealthSettings("http://127.0.0.1:4000/health/liveliness", ()).to_env()
    assert (env["REGION_HEALTH_PORT"], env["REFRESH_SECONDS"], env["CHECK_TIMEOUT_SECONDS"]) == (
        "4001",
        "5",
        "2",
    )
    assert env["FLEET_BACKENDS"] == "[]"


def test_a_provider_override_litellm_reads_wins_over_the_rendered_url():
    env = {**SETTINGS.to_env(), "OPENAI_API_BASE": "http://127.0.0.1:9/v1"}
    assert backend_urls(RegionHealthSettings.from_env(env).backends, env) == {
        "llama/pool/east": "http://east.pools.fleet.example.com/v1",
        "llama/openai": "http://127.0.0.1:9/v1",
    }
