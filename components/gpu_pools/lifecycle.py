"""A pool's nodes in and out of service: its group's lifecycle hooks, health checks, instance refresh and
ReadyNodes alarm. Timings and their sources: timings.py.

- In service means ready: a launch hook (`fleet-ready`) the agent completes (CONTINUE) once its node is
  ready; past the pool's launch-to-ready budget the node is abandoned (terminated, replaced).
- Out of service means drained: a termination hook (`fleet-drain`) the agent completes once drained, kept
  open by its heartbeats while it drains as long as a request may last.
- A rollout (a new launch template version: new AMI, new agent config) replaces one node first, lets it
  serve for REFRESH_BAKE_S, then the rest, and rolls back by itself when the refresh fails or the pool's
  ReadyNodes alarm fires (Auto Scaling User Guide, instance-refresh-rollback; rollback needs the numbered
  template version the group is given, never $Latest).

Health: the group keeps EC2 health checks, and a node that is not ready is the fleet controller's to
replace (SetInstanceHealth), not the load balancer's (health check type ELB). With ELB health the group
would terminate every node the readiness check fails for 10 s: an engine restart, a model reload, every
node at once when the model store or the GPUs' driver misbehave, with no disruption limit and no grace;
the controller replaces a not-ready node only past its grace (sized by the model), needs its signals to
agree, and never repairs more than its share of a pool at once. A new node is already held out of service
until ready by the launch hook.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.core.alarms import alarm
from components.gpu_pools.config import GpuPoolConfig
from components.gpu_pools.timings import PoolTimings
from fleet_agent import fleet_metrics

DRAIN_HOOK_NAME = "fleet-drain"
LAUNCH_HOOK_NAME = "fleet-ready"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
HEALTH_CHECK_TYPE = "EC2"
# A node is in service once ready (the launch hook): EC2's checks need no grace (ASG User Guide,
# health-check-grace-period: "If you use lifecycle hooks for instance launch, you can set the health check
# grace period to 0"), and its metrics count after one CloudWatch period (the agent's Load, 60 s).
HEALTH_CHECK_GRACE_S = 0
METRICS_WARMUP_S = 60
# Instance refresh: the first checkpoint is the first new node (1 % of any group up to 100 nodes), which
# serves this long, watched by the ReadyNodes alarm, before the rest follow; each new node then counts
# after one alarm window (the refresh moves on only once the alarm could have seen it).
REFRESH_FIRST_CHECKPOINT_PERCENT = 1
REFRESH_BAKE_S = 600
# ReadyNodes below the pool's minimum for this many one-minute periods (each the best of the controller's
# ticks in it): the alarm, and the refresh's rollback.
READY_ALARM_MINUTES = 3
READY_ALARM_PERIOD_S = 60


def launch_hook(timings: PoolTimings) -> aws.autoscaling.GroupInitialLifecycleHookArgs:
    """Launch to ready within the pool's budget, or the node is abandoned (terminated, replaced)."""
    return aws.autoscaling.GroupInitialLifecycleHookArgs(
        name=LAUNCH_HOOK_NAME,
        lifecycle_transition=LAUNCHING,
        heartbeat_timeout=timings.readiness.launch_hook_timeout_s,
        default_result="ABANDON",
    )


def declare_lifecycle_hooks(
    name: str, group_name: pulumi.Input[str], timings: PoolTimings, opts: pulumi.ResourceOptions
) -> None:
    """The termination hook, and the launch hook on a group that exists. The group declares the launch hook
    for its first nodes; this resource keeps it on groups created before it and carries its changes
    (PutLifecycleHook creates or updates the hook of that name)."""
    aws.autoscaling.LifecycleHook(
        f"{name}-drain",
        name=DRAIN_HOOK_NAME,
        autoscaling_group_name=group_name,
        lifecycle_transition=TERMINATING,
        heartbeat_timeout=timings.drain.hook_heartbeat_s,
        default_result="CONTINUE",
        opts=opts,
    )
    launch = launch_hook(timings)
    aws.autoscaling.LifecycleHook(
        f"{name}-ready",
        name=launch.name,
        autoscaling_group_name=group_name,
        lifecycle_transition=launch.lifecycle_transition,
        heartbeat_timeout=launch.heartbeat_timeout,
        default_result=launch.default_result,
        opts=opts,
    )


def ready_nodes_alarm(
    name: str, pool: GpuPoolConfig, topic_arn: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> aws.cloudwatch.MetricAlarm | None:
    """ReadyNodes (the fleet controller's count, fleet_agent.fleet_metrics) below minSize for
    READY_ALARM_MINUTES: none for a pool that may scale to zero."""
    if pool.min_size < 1:
        return None
    return alarm(
        name,
        topic_arn,
        opts,
        description=f"GPU pool {pool.name}: fewer nodes ready than its minimum ({pool.min_size}) for "
        f"{READY_ALARM_MINUTES} minutes. A running instance refresh rolls back on it.",
        namespace=fleet_metrics.CONTROLLER_NAMESPACE,
        metric_name=fleet_metrics.READY_NODES,
        dimensions={fleet_metrics.POOL_DIMENSION: pool.name},
        # The best tick of each minute: a flicker between two ticks is not a shortfall.
        statistic="Maximum",
        period=READY_ALARM_PERIOD_S,
        evaluation_periods=READY_ALARM_MINUTES,
        datapoints_to_alarm=READY_ALARM_MINUTES,
        comparison_operator="LessThanThreshold",
        threshold=pool.min_size,
        # No data is the controller not looking (its own alarms say so), not a pool without ready nodes.
        treat_missing_data="notBreaching",
    )


def instance_refresh(
    ready_alarm: aws.cloudwatch.MetricAlarm | None,
) -> aws.autoscaling.GroupInstanceRefreshArgs:
    """New nodes before old ones leave, one first, rolled back on failure or on the ReadyNodes alarm."""
    alarms = (
        None
        if ready_alarm is None
        else aws.autoscaling.GroupInstanceRefreshPreferencesAlarmSpecificationArgs(alarms=[ready_alarm.name])
    )
    return aws.autoscaling.GroupInstanceRefreshArgs(
        strategy="Rolling",
        preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
            min_healthy_percentage=100,
            max_healthy_percentage=200,
            instance_warmup=str(READY_ALARM_MINUTES * READY_ALARM_PERIOD_S),
            checkpoint_percentages=[REFRESH_FIRST_CHECKPOINT_PERCENT, 100],
            checkpoint_delay=str(REFRESH_BAKE_S),
            skip_matching=True,
            auto_rollback=True,
            alarm_specification=alarms,
            # Set, not left to a default (the API's is Wait, which fails the refresh after an hour; the
            # provider documents Ignore): a node the agent protects while busy is refreshed too (its
            # terminate hook drains it); one an operator put in standby is theirs.
            scale_in_protected_instances="Refresh",
            standby_instances="Ignore",
        ),
    )
