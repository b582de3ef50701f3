"""The gateway's own metrics: LiteLLM's Prometheus endpoint, scraped inside the task and written to
CloudWatch, the same way the nodes' metrics reach it.

    gateway container (LiteLLM, callback "prometheus": /metrics, authenticated)
        <- 127.0.0.1:4000 every SCRAPE_INTERVAL -- metrics sidecar (CloudWatch agent, Prometheus mode)
        -> its log group as embedded metric format -> CloudWatch metrics in GATEWAY_METRICS_NAMESPACE

- LiteLLM requires a key on /metrics by default (proxy/middleware/prometheus_auth_middleware.py; an
  unauthenticated scrape is a 401 that LiteLLM counts as a failed request), and redirects /metrics to
  /metrics/ (307): the sidecar scrapes /metrics/ with the master key as its bearer credentials. That
  scrape config therefore holds a secret: it reaches the sidecar as PROMETHEUS_CONFIG_CONTENT through the
  task definition's `secrets` (the gateway's Secrets Manager secret), never in plain text.
- The CloudWatch agent converts counters to the delta since its last scrape and drops histograms
  (CloudWatch User Guide, "Prometheus metric type conversion by the CloudWatch agent"): the counters
  (requests, failures, fallbacks, tokens, spend) reach CloudWatch, summable over tasks; latency comes from
  the load balancer's TargetResponseTime instead.
- One dimension, Service=gateway (a label the scrape adds): the region's total across its tasks.
  LiteLLM's own labels (keys, users, models) stay in the log events, not in metric dimensions.
- The image carries prometheus_client: LiteLLM's Docker build (docker/Dockerfile.database) installs its
  requirements.txt, which pins prometheus_client "for /metrics endpoint on proxy"; PyPI's litellm[proxy]
  does not (the proxy exits 3 at start with the callback and without it).
"""

from __future__ import annotations

from typing import Any

import pulumi
import yaml

from components.control_plane.gateway_config import GATEWAY_PORT

METRICS_CONTAINER = "metrics"
# The CloudWatch agent (public ECR), pinned by digest: 1.247360.0b252689.
METRICS_AGENT_IMAGE = (
    "public.ecr.aws/cloudwatch-agent/cloudwatch-agent"
    "@sha256:888fed6f7fb12948ec015ee4bdbbb759f044a569f5d2d49fb4dd0e49e747df31"
)
PROMETHEUS_CONFIG_ENV = "PROMETHEUS_CONFIG_CONTENT"
AGENT_CONFIG_ENV = "CW_CONFIG_CONTENT"
METRICS_PATH = "/metrics/"
SCRAPE_INTERVAL_SECONDS = 60
SCRAPE_JOB = "fleet-gateway"

GATEWAY_METRICS_NAMESPACE = "inference-fleet/gateway"
SERVICE_DIMENSION = "Service"
SERVICE = "gateway"
# LiteLLM 1.104's counters (integrations/prometheus.py) as prometheus_client exposes them (`_total`).
REQUESTS = "litellm_proxy_total_requests_metric_total"
FAILED_REQUESTS = "litellm_proxy_failed_requests_metric_total"
FALLBACKS_SUCCEEDED = "litellm_deployment_successful_fallbacks_total"
FALLBACKS_FAILED = "litellm_deployment_failed_fallbacks_total"
DEPLOYMENT_FAILURES = "litellm_deployment_failure_responses_total"
TOKENS = "litellm_total_tokens_metric_total"
SPEND = "litellm_spend_metric_total"
# Collected with the Service dimension whatever their labels (FAILED_REQUESTS only where it was a 5xx).
COLLECTED = (
    REQUESTS,
    FALLBACKS_SUCCEEDED,
    FALLBACKS_FAILED,
    DEPLOYMENT_FAILURES,
    TOKENS,
    SPEND,
)
# The sidecar is small beside the gateway (the agent's own figure: tens of MiB); not essential, so a
# failing agent never stops the gateway.
METRICS_MEMORY_RESERVATION_MIB = 64


def scrape_config(bearer: str) -> dict[str, Any]:
    """The Prometheus scrape configuration of the task's own gateway (`bearer`: the key /metrics takes)."""
    return {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_SECONDS}s", "scrape_timeout": "10s"},
        "scrape_configs": [
            {
                "job_name": SCRAPE_JOB,
                "metrics_path": METRICS_PATH,
                "authorization": {"type": "Bearer", "credentials": bearer},
                "static_configs": [
                    {"targets": [f"127.0.0.1:{GATEWAY_PORT}"], "labels": {SERVICE_DIMENSION: SERVICE}}
                ],
            }
        ],
    }


def scrape_config_yaml(bearer: str) -> str:
    return yaml.safe_dump(scrape_config(bearer), sort_keys=False)


def agent_config(
    region: str, cluster_name: pulumi.Input[str], log_group: pulumi.Input[str]
) -> pulumi.Output[str]:
    """The CloudWatch agent's configuration: Prometheus mode reading its scrape config from the
    environment, the chosen counters as EMF in the gateway's namespace."""
    return pulumi.Output.json_dumps(
        {
            "agent": {"region": region},
            "logs": {
                "metrics_collected": {
                    "prometheus": {
                        "cluster_name": cluster_name,
                        "log_group_name": log_group,
                        "prometheus_config_path": f"env:{PROMETHEUS_CONFIG_ENV}",
                        "emf_processor": {
                            "metric_namespace": GATEWAY_METRICS_NAMESPACE,
                            "metric_declaration": [
                                {
                                    "source_labels": ["job"],
                                    "label_matcher": f"^{SCRAPE_JOB}$",
                                    "dimensions": [[SERVICE_DIMENSION]],
                                    "metric_selectors": [f"^{name}$" for name in COLLECTED],
                                },
                                # Failures the gateway answered with a 5xx: its own errors, not the
                                # clients' (a bad key, an unknown model, a spent budget are 4xx).
                                {
                                    "source_labels": ["job", "exception_status"],
                                    "label_matcher": f"^{SCRAPE_JOB};5[0-9][0-9]$",
                                    "dimensions": [[SERVICE_DIMENSION]],
                                    "metric_selectors": [f"^{FAILED_REQUESTS}$"],
                                },
                            ],
                        },
                    }
                },
                "force_flush_interval": 5,
            },
        }
    )


def sidecar(
    region: str,
    cluster_name: pulumi.Input[str],
    log_group: pulumi.Input[str],
    secret_arn: pulumi.Input[str],
    log_options: dict[str, Any],
) -> dict[str, Any]:
    """The metrics sidecar's container definition."""
    return {
        "name": METRICS_CONTAINER,
        "image": METRICS_AGENT_IMAGE,
        "essential": False,
        "memoryReservation": METRICS_MEMORY_RESERVATION_MIB,
        "environment": [{"name": AGENT_CONFIG_ENV, "value": agent_config(region, cluster_name, log_group)}],
        "secrets": [
            {
                "name": PROMETHEUS_CONFIG_ENV,
                "valueFrom": pulumi.Output.concat(secret_arn, f":{PROMETHEUS_CONFIG_ENV}::"),
            }
        ],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {**log_options, "awslogs-stream-prefix": METRICS_CONTAINER},
        },
    }
