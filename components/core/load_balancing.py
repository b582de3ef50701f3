"""Target-group health checks as the fleet declares them: HTTP on the target's own traffic port, a 200
wanted, by default every 10 s with 5 s to answer, healthy again after two passes. What differs is what a
check asks (its path), how many failures take a target out, and (the GPU pools') how fast it looks."""

from __future__ import annotations

import pulumi_aws as aws

HEALTH_CHECK_INTERVAL_SECONDS = 10
HEALTHY_THRESHOLD = 2


def http_health_check(
    path: str,
    *,
    unhealthy_threshold: int,
    interval: int = HEALTH_CHECK_INTERVAL_SECONDS,
    timeout: int = 5,
    healthy_threshold: int = HEALTHY_THRESHOLD,
) -> aws.lb.TargetGroupHealthCheckArgs:
    return aws.lb.TargetGroupHealthCheckArgs(
        path=path,
        protocol="HTTP",
        port="traffic-port",
        matcher="200",
        interval=interval,
        timeout=timeout,
        healthy_threshold=healthy_threshold,
        unhealthy_threshold=unhealthy_threshold,
    )
