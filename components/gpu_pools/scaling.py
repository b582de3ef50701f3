"""PoolScaling: how one GPU pool's Auto Scaling group follows its load, on the metrics its agents publish
(fleet_agent.fleet_metrics: every 10 s, 1-second resolution, dimensions Pool and Model).

- Target tracking on Load (requests at a node: running plus waiting, the peak of each second), the pool's
  Average kept at `concurrency x targetUtilization` (a 60-s period: AWS's managed alarms then scale out
  after 3 datapoints and in after 15, gradually).
- A step policy on RequestsWaiting for a growing queue: a 10-s high-resolution alarm (3 of 3), adding
  50, 100 or 200 % as the queue per node reaches 1, half the concurrency, the concurrency (demand is then
  1.4x, 2.1x, 2.9x the target: the steps stay under it, target tracking refines).
- `minSize: 0`: from zero on the pool's load balancer answering 503 (an ALB with no registered target does:
  the gateway's request went to its fallback), one node at a time; back to zero once no node saw a request
  for `idleMinutes` (Load's Maximum is 0: the peak of every second, so no request is too short to count).
- Scale-in never takes a node with work in flight: each agent protects its instance while it has requests
  (fleet_agent/scale_in.py), and the termination hook's drain covers what protection cannot.

Every scaling policy uses the pool's instance warmup: its time to ready plus a health check's passes and
one publishing period, so nodes still booting count toward capacity and are not launched twice.

The budget (`scaling_budget`, in the plan's budgets as `gpuScaling`): seconds from a load step to added
capacity serving, worst case, each term named (the README's "Scaling" cites each).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.core.iam import Statement
from components.gpu_pools.config import GpuPoolConfig
from fleet_agent import fleet_metrics as fm

# The pools' target groups (components/core/load_balancing.py): a new node serves after this many passes of
# its readiness check, this far apart.
HEALTHY_THRESHOLD = 2
HEALTH_CHECK_INTERVAL_S = 10
# Target tracking observes Load over a minute; the queue alarm over 10 s, three in a row.
TRACKING_PERIOD_S = 60
QUEUE_PERIOD_S = 10
QUEUE_DATAPOINTS = 3
# Requests waiting per node (the pool's Average) from which the queue policy steps in.
QUEUE_THRESHOLD = 1.0
# AWS's managed high alarm of a target tracking policy: 3 datapoints of the policy's period (AWS does not
# document it; terraform-provider-aws#42553 shows it).
TRACKING_HIGH_DATAPOINTS = 3
# ALB metrics come once a minute, only when requests flow (the ELB user guide).
ALB_METRIC_PERIOD_S = 60
ALB_NAMESPACE = "AWS/ApplicationELB"
ELB_503 = "HTTPCode_ELB_503_Count"


def instance_warmup_s(pool: GpuPoolConfig) -> int:
    """From launch until the node's own figures count: ready, healthy at its load balancer, published once."""
    return pool.scaling.node_ready_seconds + HEALTHY_THRESHOLD * HEALTH_CHECK_INTERVAL_S + fm.PUBLISH_PERIOD_S


def queue_steps(pool: GpuPoolConfig) -> list[tuple[float, float | None, int]]:
    """(lower, upper, percent added) on the requests waiting per node above QUEUE_THRESHOLD."""
    half, full = pool.concurrency / 2, float(pool.concurrency)
    bounds = sorted({0.0, max(half - QUEUE_THRESHOLD, 0.0), max(full - QUEUE_THRESHOLD, 0.0)})
    percents = [50, 100, 200][-len(bounds) :]
    uppers: list[float | None] = [*bounds[1:], None]
    return list(zip(bounds, uppers, percents, strict=True))


def scales(pool: GpuPoolConfig) -> bool:
    """A pool whose size is fixed (minSize equals maxSize) has nothing to scale."""
    return pool.min_size < pool.max_size


@dataclass(frozen=True)
class PoolScalingArgs:
    pool: GpuPoolConfig
    group_name: pulumi.Input[str]  # the group's name as an output of the group: the policies follow it
    load_balancer_arn_suffix: pulumi.Input[str]


@dataclass(frozen=True)
class PoolScalingOutputs:
    policy_names: dict[str, pulumi.Output[str]]


class PoolScaling(pulumi.ComponentResource):
    outputs: PoolScalingOutputs

    def __init__(self, name: str, args: PoolScalingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inference-fleet:gpu_pools:PoolScaling", name, None, opts)
        self._name, self._args = name, args
        pool = args.pool
        policies = {"load": self._tracking(), "queue": self._queue()}
        if pool.min_size == 0:
            policies["wake"] = self._wake()
            policies["idle"] = self._idle()
        self.outputs = PoolScalingOutputs({k: p.name for k, p in policies.items()})
        self.register_outputs({f"{k}Policy": v for k, v in self.outputs.policy_names.items()})

    def _dimensions(self) -> dict[str, str]:
        return {fm.POOL_DIMENSION: self._args.pool.name, fm.MODEL_DIMENSION: self._args.pool.model}

    def _tracking(self) -> aws.autoscaling.Policy:
        pool = self._args.pool
        Spec = aws.autoscaling.PolicyTargetTrackingConfigurationCustomizedMetricSpecificationArgs
        Dimension = (
            aws.autoscaling.PolicyTargetTrackingConfigurationCustomizedMetricSpecificationMetricDimensionArgs
        )
        return aws.autoscaling.Policy(
            f"{self._name}-load",
            autoscaling_group_name=self._args.group_name,
            policy_type="TargetTrackingScaling",
            estimated_instance_warmup=instance_warmup_s(pool),
            target_tracking_configuration=aws.autoscaling.PolicyTargetTrackingConfigurationArgs(
                target_value=pool.target_load,
                customized_metric_specification=Spec(
                    namespace=fm.NODE_NAMESPACE,
                    metric_name=fm.LOAD,
                    metric_dimensions=[Dimension(name=k, value=v) for k, v in self._dimensions().items()],
                    statistic="Average",
                    unit=fm.UNITS[fm.LOAD],
                    period=TRACKING_PERIOD_S,
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _step_policy(
        self,
        suffix: str,
        adjustment_type: str,
        steps: list[tuple[float | None, float | None, int]],
        **extra: Any,
    ) -> aws.autoscaling.Policy:
        return aws.autoscaling.Policy(
            f"{self._name}-{suffix}",
            autoscaling_group_name=self._args.group_name,
            policy_type="StepScaling",
            adjustment_type=adjustment_type,
            estimated_instance_warmup=instance_warmup_s(self._args.pool),
            step_adjustments=[
                aws.autoscaling.PolicyStepAdjustmentArgs(
                    metric_interval_lower_bound=None if lower is None else str(lower),
                    metric_interval_upper_bound=None if upper is None else str(upper),
                    scaling_adjustment=adjustment,
                )
                for lower, upper, adjustment in steps
            ],
            opts=pulumi.ResourceOptions(parent=self),
            **extra,
        )

    def _alarm(
        self, suffix: str, policy: aws.autoscaling.Policy, description: str, **settings: Any
    ) -> aws.cloudwatch.MetricAlarm:
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{suffix}",
            alarm_description=f"GPU pool {self._args.pool.name}: {description}",
            alarm_actions=[policy.arn],
            # No data is no evidence either way: nodes still booting publish nothing.
            treat_missing_data="notBreaching",
            opts=pulumi.ResourceOptions(parent=self),
            **settings,
        )

    def _queue(self) -> aws.autoscaling.Policy:
        pool = self._args.pool
        policy = self._step_policy(
            "queue",
            "PercentChangeInCapacity",
            [(lower, upper, percent) for lower, upper, percent in queue_steps(pool)],
            metric_aggregation_type="Average",
            min_adjustment_magnitude=1,
        )
        self._alarm(
            "queue",
            policy,
            f"requests wait at its nodes' engines (at least {QUEUE_THRESHOLD:g} a node for "
            f"{QUEUE_DATAPOINTS * QUEUE_PERIOD_S} s): add nodes ahead of target tracking",
            namespace=fm.NODE_NAMESPACE,
            metric_name=fm.REQUESTS_WAITING,
            dimensions=self._dimensions(),
            unit=fm.UNITS[fm.REQUESTS_WAITING],
            statistic="Average",
            period=QUEUE_PERIOD_S,
            evaluation_periods=QUEUE_DATAPOINTS,
            datapoints_to_alarm=QUEUE_DATAPOINTS,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=QUEUE_THRESHOLD,
        )
        return policy

    def _wake(self) -> aws.autoscaling.Policy:
        # One node: while it warms, the same step adds nothing more (step scaling counts warming capacity).
        policy = self._step_policy("wake", "ChangeInCapacity", [(0.0, None, 1)])
        self._alarm(
            "wake",
            policy,
            "its load balancer answered 503 (no node registered): start one from zero",
            namespace=ALB_NAMESPACE,
            metric_name=ELB_503,
            dimensions={"LoadBalancer": self._args.load_balancer_arn_suffix},
            statistic="Sum",
            period=ALB_METRIC_PERIOD_S,
            evaluation_periods=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
        )
        return policy

    def _idle(self) -> aws.autoscaling.Policy:
        minutes = self._args.pool.scaling.idle_minutes
        policy = self._step_policy("idle", "ExactCapacity", [(None, 0.0, 0)])
        self._alarm(
            "idle",
            policy,
            f"no node saw a request for {minutes} min: back to zero",
            namespace=fm.NODE_NAMESPACE,
            metric_name=fm.LOAD,
            dimensions=self._dimensions(),
            unit=fm.UNITS[fm.LOAD],
            statistic="Maximum",
            period=60,
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
            comparison_operator="LessThanOrEqualToThreshold",
            threshold=0,
        )
        return policy


def node_statements(group_arn: pulumi.Input[str]) -> list[Statement]:
    """What a node needs for the scaling: publish the fleet's node metrics (that namespace only), set
    scale-in protection in its own group, and read the groups (its own's desired size)."""
    return [
        {
            "Sid": "PublishNodeMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",  # PutMetricData has no resource type; the namespace condition scopes it
            "Condition": {"StringEquals": {"cloudwatch:namespace": fm.NODE_NAMESPACE}},
        },
        {
            "Sid": "ProtectOwnGroupsInstances",
            "Effect": "Allow",
            "Action": "autoscaling:SetInstanceProtection",
            "Resource": group_arn,
        },
        {
            # How long its group has waited above its desired size (protection yields after a while).
            "Sid": "ReadGroups",
            "Effect": "Allow",
            "Action": "autoscaling:DescribeAutoScalingGroups",
            "Resource": "*",  # Describe actions take no resource-level permission
        },
    ]


def agent_settings(pool: GpuPoolConfig, group_name: str) -> dict[str, Any]:
    """The agent config's tables for the scaling: its metrics to CloudWatch, protection in its group."""
    return {
        "cloudwatch": {"enabled": True, "model": pool.model},
        "scale_in_protection": {"group_name": group_name},
    }


# --- the budget ------------------------------------------------------------------------------------------


def budget_terms(pool: GpuPoolConfig) -> dict[str, int]:
    """Every term of the load-step budgets, in seconds (README, "Scaling", cites each)."""
    terms = {
        "sample": fm.SAMPLE_PERIOD_S,
        "publish": fm.PUBLISH_PERIOD_S,
        "cloudWatchDelay": fm.PUBLISH_PERIOD_S,  # AWS publishes no figure: an allowance of one period
        "queueAlarm": QUEUE_DATAPOINTS * QUEUE_PERIOD_S,
        "trackingAlarm": TRACKING_HIGH_DATAPOINTS * TRACKING_PERIOD_S,
        "nodeReady": pool.scaling.node_ready_seconds,
        "targetHealthy": HEALTHY_THRESHOLD * HEALTH_CHECK_INTERVAL_S,
    }
    if pool.min_size == 0:
        terms |= {"elb503Metric": ALB_METRIC_PERIOD_S, "albDelay": ALB_METRIC_PERIOD_S, "wakeAlarm": 60}
    return terms


def pool_scaling_budget(pool: GpuPoolConfig) -> dict[str, Any]:
    """Seconds from a load step to added capacity serving, worst case: the queue's path (the step policy),
    the tracking path (a step too small to queue), and from zero (minSize 0)."""
    t = budget_terms(pool)
    seen = t["sample"] + t["publish"] + t["cloudWatchDelay"]
    serving = t["nodeReady"] + t["targetHealthy"]
    paths = {
        "queuePath": seen + t["queueAlarm"] + serving,
        "trackingPath": seen + t["trackingAlarm"] + serving,
    }
    if pool.min_size == 0:
        paths["fromZero"] = t["elb503Metric"] + t["albDelay"] + t["wakeAlarm"] + serving
    budget: dict[str, Any] = {
        "concurrency": pool.concurrency,
        "targetLoadPerNode": pool.target_load,
        "instanceWarmupSeconds": instance_warmup_s(pool),
        "loadStepToServingSeconds": paths,
        "termsSeconds": t,
    }
    if pool.min_size == 0:
        budget["idleToZeroSeconds"] = pool.scaling.idle_minutes * 60
    return budget


def scaling_budget(pools: Sequence[GpuPoolConfig]) -> dict[str, Any]:
    """Per pool that scales: its target, instance warmup, and the load-step budgets."""
    return {pool.name: pool_scaling_budget(pool) for pool in pools if scales(pool)}
