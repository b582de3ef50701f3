"""The pack's contents: every rule, by theme. Building the `PolicyPack` (which starts the analyzer server)
is `__main__.py`'s job alone; `fleet plan` and the tests read the rules from here."""

from __future__ import annotations

from pulumi_policy import Policy

from policies import cost, reliability, security, validity

PACK_NAME = "inference-fleet"
DESCRIPTION = (
    "Guardrails for the inference-fleet platform: security, reliability, cloud validity and cost rules "
    "over what the program declares, run by `pulumi preview --policy-pack policies` and offline by "
    "`fleet plan`."
)

THEMES: dict[str, list[Policy]] = {
    "security": list(security.POLICIES),
    "reliability": list(reliability.POLICIES),
    "cloud validity": list(validity.POLICIES),
    "cost": list(cost.POLICIES),
}

POLICIES: list[Policy] = [policy for policies in THEMES.values() for policy in policies]
