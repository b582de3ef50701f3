"""The alerts capability: where alarms and failover decisions go.

Published: `AlertsConfig`, `AlertsOutputs`, `declare`.
"""

from __future__ import annotations

from collections.abc import Sequence

from components.alerts.alerts import Alerts, AlertsArgs, AlertsOutputs
from components.alerts.config import AlertsConfig
from components.core.context import StackContext

__all__ = ["AlertsConfig", "AlertsOutputs", "declare"]


def declare(stack: StackContext, *, config: AlertsConfig, regions: Sequence[str]) -> AlertsOutputs:
    """A topic per control-plane region (`alerts-<region>`), each with the configured subscriptions."""
    return Alerts(
        "alerts", AlertsArgs(config=config, stack=stack, regions=[stack.region(r) for r in regions])
    ).outputs
