"""Alerts: one SNS topic per control-plane region, with the stack's subscriptions.

CloudWatch alarms notify only a topic in their own region, so each region has its topic, named alike
(`fleet-<stack>-<region code>-alerts`) and subscribed alike: a person hears about the primary's alarms
from the primary's topic, and about the standby's (and the prober's decisions) from the standby's, which
keeps working when the primary region is lost.

Each topic's policy is the one SNS gives a new topic (the account's own principals and the services
acting for it, such as CloudWatch alarms) plus AWS Budgets, which may publish only where the policy names
it (AWS Cost Management User Guide, "Creating an Amazon SNS topic for budget notifications"; without it
a budget's notification fails with "Invalid SNS topic").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.alerts.config import AlertsConfig
from components.core.context import RegionContext, StackContext

# SNS's default topic policy grants these to the owning account (and services acting for it).
OWNER_ACTIONS = [
    "SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission", "SNS:RemovePermission",
    "SNS:DeleteTopic", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic", "SNS:Publish",
]  # fmt: skip
BUDGETS_PRINCIPAL = "budgets.amazonaws.com"


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
            account = aws.get_caller_identity_output(
                opts=pulumi.InvokeOutputOptions(parent=self, provider=region.provider)
            ).account_id
            aws.sns.TopicPolicy(
                f"{name}-{region.region}-policy",
                arn=topic.arn,
                policy=pulumi.Output.json_dumps(topic_policy(topic.arn, account)),
                opts=region.options(self),
            )
            topics[region.region] = topic.arn
        self.outputs = AlertsOutputs(topics)
        self.register_outputs({"topicArns": topics})


def topic_policy(topic_arn: pulumi.Input[str], account: pulumi.Input[str]) -> dict[str, Any]:
    """SNS's default policy for the owning account, and AWS Budgets' right to publish for this account."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnerAccount",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": OWNER_ACTIONS,
                "Resource": topic_arn,
                "Condition": {"StringEquals": {"AWS:SourceOwner": account}},
            },
            {
                "Sid": "BudgetNotifications",
                "Effect": "Allow",
                "Principal": {"Service": BUDGETS_PRINCIPAL},
                "Action": "SNS:Publish",
                "Resource": topic_arn,
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            },
        ],
    }
