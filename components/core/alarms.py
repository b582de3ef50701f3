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
