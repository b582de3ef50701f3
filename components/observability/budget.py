"""The stack's AWS Budgets budget: its monthly cost (tagged `stack=<stack>`), with alerts at 80 % and 100 %
of the limit to the primary region's alert topic (whose policy lets AWS Budgets publish: components/alerts).

The limit defaults to the plan's estimate at full scale (cost.py), rounded up: spend beyond it is spend
the plan does not know about (usage-priced terms, something outside the declared capacity).
- The filter is the cost allocation tag `stack`, which every resource of the stack carries (the
  providers' default tags); AWS Budgets sees a tag only once it is activated as a cost allocation tag in
  the Billing console, once per account (README: Cost).
- Budgets data is refreshed up to three times a day (AWS Cost Management User Guide, "Managing your costs
  with AWS Budgets"): a guard against a month's overrun, not an alarm for a burst; CloudWatch alarms are.
- The GCP batch side is not in it (AWS Budgets sees AWS costs only).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.core.context import RegionContext, StackContext

ALERT_THRESHOLDS_PERCENT = (80.0, 100.0)
STACK_TAG = "stack"


def declare_budget(
    name: str,
    stack: StackContext,
    region: RegionContext,
    limit_usd: float,
    topic_arn: pulumi.Input[str],
    parent: pulumi.Resource,
) -> aws.budgets.Budget:
    return aws.budgets.Budget(
        name,
        name=stack.physical_name("monthly-cost"),
        budget_type="COST",
        time_unit="MONTHLY",
        limit_amount=f"{limit_usd:.2f}",
        limit_unit="USD",
        cost_filters=[
            # A cost allocation tag as Budgets names it: user:<key>$<value>.
            aws.budgets.BudgetCostFilterArgs(name="TagKeyValue", values=[f"user:{STACK_TAG}${stack.stack}"])
        ],
        notifications=[
            aws.budgets.BudgetNotificationArgs(
                comparison_operator="GREATER_THAN",
                notification_type="ACTUAL",
                threshold=threshold,
                threshold_type="PERCENTAGE",
                subscriber_sns_topic_arns=[topic_arn],
            )
            for threshold in ALERT_THRESHOLDS_PERCENT
        ],
        opts=region.options(parent),
    )
