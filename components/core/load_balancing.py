"""Target-group health checks as the fleet declares them: HTTP on the target's own traffic port, a 200
wanted, every 10 s with 5 s to answer, healthy again after two passes. What differs is what a check
asks (its path) and how many failures take a target out."""

from __future__ import annotations

import pulumi_aws as aws

HEALTH_CHECK_INTERVAL_SECONDS = 10
HEALTHY_THRESHOLD = 2


def http_health_check(path: str, *, unhealthy_threshold: int) -> aws.lb.TargetGroupHealthCheckArgs:
    return aws.lb.TargetGroupHealthCheckArgs(
        path=path,
        protocol="HTTP",
        port="traffic-port",
        matcher="200",
        interval=HEALTH_CHECK_INTERVAL_SECONDS,
        timeout=5,
        healthy_threshold=HEALTHY_THRESHOLD,
        unhealthy_threshold=unhealthy_threshold,
    )
