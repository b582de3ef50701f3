"""A Prometheus scrape configuration for the GPU nodes' agents, for teams on Amazon Managed Prometheus:
run by a collector in the stack's VPCs (a Prometheus in agent mode, or the ADOT collector's Prometheus
receiver), which finds the nodes through EC2 service discovery (their `stack` and `pool` tags) and
remote-writes to the workspace with SigV4 when `monitoring.remoteWriteUrl` names one.

The collector reaches the agents through the region's `metrics-collector` security group (stack output
`metricsCollectorSecurityGroups`): attach it to the collector; the pools' nodes admit it on the agent's port.
The agent's /metrics carries no credential, so that group is its only gate. The gateway's metrics do not
need this path: its sidecar writes them to CloudWatch (gateway_metrics.py), where the Grafana dashboard
reads them. Published as the stack output `prometheusScrapeConfig` (README: Dashboards).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from components.observability.dashboard import PoolView

SCRAPE_INTERVAL_SECONDS = 30
JOB = "fleet-gpu-nodes"
# The tags every pool node carries (gpu_pools: the stack's default tags and the pool's name).
STACK_TAG, POOL_TAG = "stack", "pool"
_AMP_URL = re.compile(
    r"^https://aps-workspaces\.([a-z0-9-]+)\.amazonaws\.com/workspaces/ws-[0-9a-f-]+/api/v1/remote_write$"
)


def amp_region(url: str) -> str | None:
    """The region of an Amazon Managed Prometheus remote-write URL, or None for another endpoint."""
    match = _AMP_URL.match(url)
    return match.group(1) if match else None


def scrape_config(
    stack: str, pools: Sequence[PoolView], agent_port: int, remote_write_url: str | None = None
) -> dict[str, Any]:
    regions = list(dict.fromkeys(p.region for p in pools))
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_SECONDS}s",
            "scrape_timeout": "10s",
            "external_labels": {"stack": stack},
        },
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/metrics",
                "ec2_sd_configs": [
                    {
                        "region": region,
                        "port": agent_port,
                        "refresh_interval": "60s",
                        "filters": [
                            {"name": f"tag:{STACK_TAG}", "values": [stack]},
                            {
                                "name": f"tag:{POOL_TAG}",
                                "values": [p.name for p in pools if p.region == region],
                            },
                            {"name": "instance-state-name", "values": ["running"]},
                        ],
                    }
                    for region in regions
                ],
                "relabel_configs": [
                    {"source_labels": [f"__meta_ec2_tag_{POOL_TAG}"], "target_label": "pool"},
                    {"source_labels": ["__meta_ec2_region"], "target_label": "region"},
                    {"source_labels": ["__meta_ec2_instance_id"], "target_label": "instance"},
                    {"source_labels": ["__meta_ec2_instance_lifecycle"], "target_label": "lifecycle"},
                ],
            }
        ]
        if regions
        else [],
    }
    if remote_write_url:
        target: dict[str, Any] = {"url": remote_write_url}
        region = amp_region(remote_write_url)
        if region:
            target["sigv4"] = {"region": region}
        config["remote_write"] = [target]
    return config


def scrape_config_yaml(
    stack: str, pools: Sequence[PoolView], agent_port: int, remote_write_url: str | None = None
) -> str:
    return yaml.safe_dump(scrape_config(stack, pools, agent_port, remote_write_url), sort_keys=False)
