"""One region's control-plane alarms, each to the region's alert topic, and the standby's scale-up.

- the load balancer answering 5xx itself (no healthy gateway, or none in time);
- gateway targets failing their (liveness) health checks;
- fewer gateway tasks running than desired (ECS Container Insights), for three minutes;
- standby only: real traffic arriving (more than one task's worth of requests a minute, far above the
  Route53 health checks' own requests) sets the standby's gateway to the primary's size at once; request
  tracking then scales it further. The same alarm tells a person that the standby is serving.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.core.alarms import alarm

ALB_5XX_PER_MINUTE = 10
# The standby's takeover alarm: one period of the ALB's RequestCount (which arrives every 60 s).
TAKEOVER_PERIOD_SECONDS = 60


@dataclass(frozen=True)
class AlarmTargets:
    name: str
    region: str
    role: str
    topic_arn: pulumi.Input[str]
    alb: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    cluster: aws.ecs.Cluster
    service: aws.ecs.Service
    scalable_target: aws.appautoscaling.Target
    primary_min_tasks: int
    requests_per_task_minute: int


def declare_alarms(t: AlarmTargets, opts: pulumi.ResourceOptions) -> None:
    alb = {"LoadBalancer": t.alb.arn_suffix}
    alarm(
        f"{t.name}-alb-5xx",
        t.topic_arn,
        opts,
        description=(
            f"The {t.region} load balancer answered more than {ALB_5XX_PER_MINUTE} 5xx a minute itself."
        ),
        namespace="AWS/ApplicationELB",
        metric_name="HTTPCode_ELB_5XX_Count",
        dimensions=alb,
        statistic="Sum",
        period=60,
        evaluation_periods=2,
        comparison_operator="GreaterThanThreshold",
        threshold=ALB_5XX_PER_MINUTE,
    )
    alarm(
        f"{t.name}-unhealthy-targets",
        t.topic_arn,
        opts,
        description=f"Gateway tasks in {t.region} fail the load balancer's liveness check.",
        namespace="AWS/ApplicationELB",
        metric_name="UnHealthyHostCount",
        dimensions={**alb, "TargetGroup": t.target_group.arn_suffix},
        statistic="Maximum",
        period=60,
        evaluation_periods=2,
        comparison_operator="GreaterThanOrEqualToThreshold",
        threshold=1,
    )
    insights = {"ClusterName": t.cluster.name, "ServiceName": t.service.name}

    def task_count(metric: str, query_id: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
        return aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id=query_id,
            metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace="ECS/ContainerInsights",
                metric_name=metric,
                dimensions=insights,
                period=60,
                stat="Average",
            ),
        )

    alarm(
        f"{t.name}-tasks-below-desired",
        t.topic_arn,
        opts,
        description=f"Fewer gateway tasks run in {t.region} than ECS wants, for three minutes.",
        metric_queries=[
            task_count("RunningTaskCount", "running"),
            task_count("DesiredTaskCount", "desired"),
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="missing", expression="desired - running", label="tasks missing", return_data=True
            ),
        ],
        evaluation_periods=3,
        comparison_operator="GreaterThanOrEqualToThreshold",
        threshold=1,
    )
    if t.role == "standby":
        _scale_to_primary_on_traffic(t, opts)


def _scale_to_primary_on_traffic(t: AlarmTargets, opts: pulumi.ResourceOptions) -> None:
    to_primary_size = aws.appautoscaling.Policy(
        f"{t.name}-gateway-takeover",
        policy_type="StepScaling",
        service_namespace=t.scalable_target.service_namespace,
        scalable_dimension=t.scalable_target.scalable_dimension,
        resource_id=t.scalable_target.resource_id,
        step_scaling_policy_configuration=aws.appautoscaling.PolicyStepScalingPolicyConfigurationArgs(
            adjustment_type="ExactCapacity",
            cooldown=60,
            metric_aggregation_type="Maximum",
            step_adjustments=[
                aws.appautoscaling.PolicyStepScalingPolicyConfigurationStepAdjustmentArgs(
                    scaling_adjustment=t.primary_min_tasks, metric_interval_lower_bound="0"
                )
            ],
        ),
        opts=opts,
    )
    alarm(
        f"{t.name}-taking-traffic",
        t.topic_arn,
        opts,
        description=(
            f"The standby in {t.region} is serving clients (over {t.requests_per_task_minute} requests a "
            f"minute): its gateway goes to the primary's size ({t.primary_min_tasks} tasks)."
        ),
        extra_actions=[to_primary_size.arn],
        namespace="AWS/ApplicationELB",
        metric_name="RequestCount",
        dimensions={"LoadBalancer": t.alb.arn_suffix},
        statistic="Sum",
        period=TAKEOVER_PERIOD_SECONDS,
        evaluation_periods=1,
        comparison_operator="GreaterThanThreshold",
        threshold=t.requests_per_task_minute,
    )
