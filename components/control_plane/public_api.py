"""What the internet may reach on a region's load balancer: the inference API and the region's health,
nothing else. LiteLLM's admin UI and management API (`/ui`, `/key/*`, `/team/*`, `/model/*`, `/v1/agents`,
...) are answered by the load balancer itself with a 404; operators reach them from inside the VPC.

An allow-list, not a deny-list: a route a new LiteLLM version adds stays private until listed here.
ALB rules take at most five path values each, so the list is cut into rules of five.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

# The OpenAI-compatible (and Anthropic-compatible) inference routes LiteLLM serves, as clients call them.
PUBLIC_API_PATHS: tuple[str, ...] = (
    "/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/v1/responses",
    "/v1/embeddings", "/embeddings", "/v1/models", "/models", "/v1/models/*",
    "/v1/messages", "/responses",
)  # fmt: skip
# ALB quota: condition values per rule.
MAX_VALUES_PER_RULE = 5
API_RULE_PRIORITY = 10
HEALTH_RULE_PRIORITY = 100
NOT_FOUND = aws.lb.ListenerDefaultActionFixedResponseArgs(
    content_type="application/json", message_body='{"error": "not found"}', status_code="404"
)


def declare_public_rules(
    name: str,
    listener: aws.lb.Listener,
    api_target_group: aws.lb.TargetGroup,
    health_target_group: aws.lb.TargetGroup,
    health_path: str,
    opts: pulumi.ResourceOptions,
) -> list[aws.lb.ListenerRule]:
    """The listener's rules: the API paths to the gateway, the health path to the region-health sidecar."""
    rules = []
    chunks = [
        PUBLIC_API_PATHS[i : i + MAX_VALUES_PER_RULE]
        for i in range(0, len(PUBLIC_API_PATHS), MAX_VALUES_PER_RULE)
    ]
    for i, paths in enumerate(chunks):
        rules.append(
            _forward(f"{name}-api-{i}", listener, API_RULE_PRIORITY + i, paths, api_target_group, opts)
        )
    rules.append(
        _forward(
            f"{name}-region-health", listener, HEALTH_RULE_PRIORITY, (health_path,), health_target_group, opts
        )
    )
    return rules


def _forward(
    name: str,
    listener: aws.lb.Listener,
    priority: int,
    paths: tuple[str, ...],
    target_group: aws.lb.TargetGroup,
    opts: pulumi.ResourceOptions,
) -> aws.lb.ListenerRule:
    return aws.lb.ListenerRule(
        name,
        listener_arn=listener.arn,
        priority=priority,
        conditions=[
            aws.lb.ListenerRuleConditionArgs(
                path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=list(paths))
            )
        ],
        actions=[aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=target_group.arn)],
        opts=opts,
    )
