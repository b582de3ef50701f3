"""CloudWatch alarms that always tell someone: every alarm notifies its region's alert topic when it
fires and when it clears (the policy pack refuses an alarm without an action)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws


def alarm(
    name: str,
    topic_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    *,
    description: str,
    extra_actions: list[pulumi.Input[str]] | None = None,
    **settings: Any,
) -> aws.cloudwatch.MetricAlarm:
    """A metric alarm whose ALARM and OK transitions go to `topic_arn` (and `extra_actions` on ALARM)."""
    settings.setdefault("treat_missing_data", "notBreaching")
    return aws.cloudwatch.MetricAlarm(
        name,
        alarm_description=description,
        alarm_actions=[topic_arn, *(extra_actions or [])],
        ok_actions=[topic_arn],
        opts=opts,
        **settings,
    )


def function_errors_alarm(
    name: str,
    topic_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    function: aws.lambda_.Function,
    *,
    description: str,
    evaluation_periods: int = 1,
    datapoints_to_alarm: int | None = None,
) -> aws.cloudwatch.MetricAlarm:
    """Failed runs of `function`: at least one error in `datapoints_to_alarm` (default: every one) of the
    last `evaluation_periods` minutes."""
    return alarm(
        name,
        topic_arn,
        opts,
        description=description,
        namespace="AWS/Lambda",
        metric_name="Errors",
        dimensions={"FunctionName": function.name},
        statistic="Sum",
        period=60,
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=datapoints_to_alarm,
        comparison_operator="GreaterThanOrEqualToThreshold",
        threshold=1,
    )
