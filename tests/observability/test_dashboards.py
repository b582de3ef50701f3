"""The dashboards and the scrape configs as the prod stack renders them, loaded by their tools' own code:
the Prometheus configs by `promtool check config` (Prometheus's own checker, from Debian's `prometheus`
package: scripts/setup.sh extracts it), the Grafana dashboard by Grafana's Foundation SDK (its JSON
model decoded and encoded again: a key Grafana's schema does not know would be lost on the way), the
CloudWatch dashboard against the limits of CloudWatch's dashboards."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from components.control_plane import gateway_metrics
from components.core.catalog.resource_types import DASHBOARD, ECS_TASK_DEFINITION
from components.gpu_pools import AGENT_PORT
from fleet.harness import Rendering
from fleet_agent import fleet_metrics

PROJECT_TOOLS = Path(__file__).resolve().parents[2] / ".tools" / "bin"
PROMTOOL = shutil.which("promtool") or shutil.which("promtool", path=str(PROJECT_TOOLS))
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found (scripts/setup.sh extracts it into .tools/bin)"
)
# CloudWatch's dashboard limits (CloudWatch User Guide, "CloudWatch service quotas").
MAX_WIDGETS, MAX_METRICS_PER_WIDGET, MAX_METRICS = 500, 500, 2500


def promtool_check(config: dict[str, Any] | str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "prometheus.yml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )


@needs_promtool
def test_the_published_scrape_config_passes_promtool(render, tmp_path: Path) -> None:
    text = render("prod").outputs["prometheusScrapeConfig"]
    checked = promtool_check(text, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (job,) = yaml.safe_load(text)["scrape_configs"]
    # Every pool region is discovered, each for its own pools, on the agent's port.
    found = {sd["region"]: sd for sd in job["ec2_sd_configs"]}
    assert set(found) == {"us-east-1", "us-west-2"}
    assert all(sd["port"] == AGENT_PORT for sd in found.values())
    pools = {f["name"]: f["values"] for f in found["us-east-1"]["filters"]}
    assert pools["tag:pool"] == ["llama-8b", "qwen-14b"] and pools["tag:stack"] == ["prod"]


@needs_promtool
def test_a_remote_write_to_an_amp_workspace_is_signed_and_passes_promtool(render, tmp_path: Path) -> None:
    url = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-0123abcd-4567-89ef-0123-456789abcdef/api/v1/remote_write"
    text = render("prod", {"monitoring": {"remoteWriteUrl": url}}).outputs["prometheusScrapeConfig"]
    assert yaml.safe_load(text)["remote_write"] == [{"url": url, "sigv4": {"region": "us-east-1"}}]
    checked = promtool_check(text, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_the_gateway_sidecars_scrape_config_passes_promtool(tmp_path: Path) -> None:
    checked = promtool_check(gateway_metrics.scrape_config("sk-test"), tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_promtool_refuses_a_broken_config(tmp_path: Path) -> None:
    """The check can fail: a scrape job without a name is refused."""
    broken = gateway_metrics.scrape_config("sk-test")
    del broken["scrape_configs"][0]["job_name"]
    assert promtool_check(broken, tmp_path).returncode != 0


def grafana_round_trip(model: dict[str, Any]) -> dict[str, Any]:
    register_default_plugins()
    return json.loads(json.dumps(Dashboard.from_json(model).to_json(), default=_encode))


def lost(original: Any, decoded: Any, path: str = "") -> list[str]:
    """Where `decoded` (the SDK's round trip) lacks or changes what `original` says. The SDK adds its
    defaults (style, transparent, ...), which is not a loss."""
    if isinstance(original, dict):
        if not isinstance(decoded, dict):
            return [path]
        return [
            found
            for key, value in original.items()
            for found in (
                [f"{path}.{key}"] if key not in decoded else lost(value, decoded[key], f"{path}.{key}")
            )
        ]
    if isinstance(original, list):
        if not isinstance(decoded, list) or len(original) != len(decoded):
            return [path]
        return [
            found
            for i, (a, b) in enumerate(zip(original, decoded, strict=True))
            for found in lost(a, b, f"{path}[{i}]")
        ]
    return [] if original == decoded else [path]


def _encode(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    if to_json is None:
        raise TypeError(f"cannot encode {type(value).__name__}")
    return to_json()


def test_the_grafana_dashboard_loads_in_grafanas_sdk_without_losing_a_key(render) -> None:
    model = json.loads(render("prod").outputs["grafanaDashboard"])
    assert lost(model, grafana_round_trip(model)) == []
    titles = [p["title"] for p in model["panels"]]
    assert any("Time to first byte" in t for t in titles) and any("us-west-2" in t for t in titles)
    expressions = [t["expr"] for p in model["panels"] for t in p.get("targets", []) if "expr" in t]
    assert any("fleet_agent_time_to_first_byte_seconds_bucket" in e for e in expressions)


def test_a_key_grafana_does_not_know_is_caught(render) -> None:
    """The round trip can fail: a misspelt panel key is lost on the way."""
    model = json.loads(render("prod").outputs["grafanaDashboard"])
    model["panels"][1]["gridPosition"] = model["panels"][1].pop("gridPos")
    assert lost(model, grafana_round_trip(model)) == [".panels[1].gridPosition"]


def cloudwatch_dashboard(rendering: Rendering) -> dict[str, Any]:
    (dashboard,) = rendering.of_type(DASHBOARD)
    return json.loads(dashboard.inputs["dashboardBody"])


def test_the_cloudwatch_dashboard_shows_every_row_within_cloudwatchs_limits(render) -> None:
    body = cloudwatch_dashboard(render("prod"))
    widgets = body["widgets"]
    rows = [w["properties"]["markdown"] for w in widgets if w["type"] == "text" and w["height"] == 1]
    assert rows == [
        "## Traffic", "## Latency", "## Errors and SLO burn", "## Capacity and scaling", "## Cost", "## Failover",
    ]  # fmt: skip
    metrics = [m for w in widgets if w["type"] == "metric" for m in w["properties"]["metrics"]]
    assert len(widgets) <= MAX_WIDGETS and len(metrics) <= MAX_METRICS
    assert all(
        len(w["properties"]["metrics"]) <= MAX_METRICS_PER_WIDGET for w in widgets if w["type"] == "metric"
    )
    assert all(w["x"] + w["width"] <= 24 for w in widgets)
    # Ready nodes per pool (the controller's), the health checks of both regions, every burn alarm.
    ready = {m[3] for m in metrics if m[1] == fleet_metrics.READY_NODES}
    assert ready == {"llama-8b", "qwen-14b", "llama-8b-west"}
    assert len([m for m in metrics if m[1] == "HealthCheckStatus"]) == 2
    (alarms,) = [w for w in widgets if w["type"] == "alarm"]
    assert len(alarms["properties"]["alarms"]) == 2 * (3 * 2 + 3)  # fast + slow, 3 per region + 1 per pool


def test_the_gateway_task_runs_the_metrics_sidecar_with_emf_declarations(render) -> None:
    rendering = render("prod")
    sidecars = [
        c
        for task in rendering.of_type(ECS_TASK_DEFINITION)
        for c in json.loads(task.inputs["containerDefinitions"])
        if c["name"] == gateway_metrics.METRICS_CONTAINER
    ]
    assert len(sidecars) == 2  # one per region's gateway task
    for sidecar in sidecars:
        assert sidecar["essential"] is False and "@sha256:" in sidecar["image"]
        (env,) = [e for e in sidecar["environment"] if e["name"] == gateway_metrics.AGENT_CONFIG_ENV]
        prometheus = json.loads(env["value"])["logs"]["metrics_collected"]["prometheus"]
        assert prometheus["prometheus_config_path"] == f"env:{gateway_metrics.PROMETHEUS_CONFIG_ENV}"
        declarations = prometheus["emf_processor"]["metric_declaration"]
        assert prometheus["emf_processor"]["metric_namespace"] == gateway_metrics.GATEWAY_METRICS_NAMESPACE
        # Failures are collected only where the gateway answered 5xx (clients' 4xx are not its errors).
        (failed,) = [
            d for d in declarations if f"^{gateway_metrics.FAILED_REQUESTS}$" in d["metric_selectors"]
        ]
        assert failed["source_labels"] == ["job", "exception_status"]
        assert failed["label_matcher"].endswith(";5[0-9][0-9]$")
