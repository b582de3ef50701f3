"""Alerts: one SNS topic per control-plane region, with the stack's subscriptions.

CloudWatch alarms notify only a topic in their own region, so each region has its topic, named alike
(`fleet-<stack>-<region code>-alerts`) and subscribed alike: a person hears about the primary's alarms
from the primary's topic, and about the standby's (and the prober's decisions) from the standby's, which
keeps working when the primary region is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.alerts.config import AlertsConfig
from components.core.context import RegionContext, StackContext


@dataclass(frozen=True)
class AlertsOutputs:
    """Each region's alert topic: where alarms and the prober report."""

    topic_arns: dict[str, pulumi.Output[str]]

    def exports(self) -> dict[str, Any]:
        return {"alertTopics": self.topic_arns}

    def budgets(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class AlertsArgs:
    config: AlertsConfig
    stack: StackContext
    regions: Sequence[RegionContext]


class Alerts(pulumi.ComponentResource):
    outputs: AlertsOutputs

    def __init__(self, name: str, args: AlertsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inference-fleet:alerts:Alerts", name, None, opts)
        topics: dict[str, pulumi.Output[str]] = {}
        for region in args.regions:
            topic = aws.sns.Topic(
                f"{name}-{region.region}",
                name=args.stack.physical_name("alerts", region),
                opts=region.options(self),
            )
            for i, sub in enumerate(args.config.subscriptions):
                aws.sns.TopicSubscription(
                    f"{name}-{region.region}-{i}",
                    topic=topic.arn,
                    protocol=sub.protocol,
                    endpoint=sub.endpoint,
                    opts=region.options(self),
                )
            topics[region.region] = topic.arn
        self.outputs = AlertsOutputs(topics)
        self.register_outputs({"topicArns": topics})
