"""What a capability publishes: stack outputs and budgets, merged by one generic step.

Each capability's outputs object computes its own figures (a failover budget, later capacity and cost);
`publish` exports them all, refusing two capabilities that claim the same name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import pulumi


class Published(Protocol):
    def exports(self) -> Mapping[str, Any]:
        """Stack outputs this capability contributes, by name."""
        ...

    def budgets(self) -> Mapping[str, Any]:
        """Figures derived from what it declared (seconds, GPUs, dollars), by name."""
        ...


def publish(published: Iterable[Published], **stack_facts: Any) -> None:
    exports: dict[str, Any] = dict(stack_facts)
    budgets: dict[str, Any] = {}
    for item in published:
        for target, values in ((exports, item.exports()), (budgets, item.budgets())):
            for key, value in values.items():
                if key in target:
                    raise ValueError(f"two capabilities publish {key!r}; each name has one owner")
                target[key] = value
    for key, value in exports.items():
        pulumi.export(key, value)
    pulumi.export("budgets", budgets)
