"""The `alerts` section: who hears about the stack's alarms and failover decisions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from components.core.config import Problem, Section, StackView, rule

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class SubscriptionConfig(Section):
    """One SNS subscription to the stack's alert topics (email and sms are confirmed by the recipient)."""

    list_key = "endpoint"

    protocol: Literal["email", "email-json", "https", "sms"]
    endpoint: str = Field(min_length=3, max_length=512)


class AlertsConfig(Section):
    subscriptions: list[SubscriptionConfig] = Field(default_factory=list, max_length=20)


@rule(AlertsConfig)
def _subscriptions(alerts: AlertsConfig, view: StackView) -> Iterator[Problem]:
    for i, sub in enumerate(alerts.subscriptions):
        ok = {
            "email": _EMAIL.match(sub.endpoint),
            "email-json": _EMAIL.match(sub.endpoint),
            "https": sub.endpoint.startswith("https://"),
            "sms": _E164.match(sub.endpoint),
        }[sub.protocol]
        if not ok:
            expected = {"https": "an https:// URL", "sms": "a phone number in E.164 form (+15551234567)"}
            yield (
                f"subscriptions[{i}].endpoint",
                f"got {sub.endpoint!r}; {sub.protocol} takes "
                f"{expected.get(sub.protocol, 'an email address')}",
            )
    if view.tier == "prod" and not alerts.subscriptions:
        yield (
            "subscriptions",
            "empty; prod names at least one: failover decisions and alarms must reach a person",
        )
