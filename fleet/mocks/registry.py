"""Per resource type: how the cloud names it, ids it and answers for it, and which names it refuses.

Every custom resource type the program declares is registered by its cloud's module (`aws.py`, `gcp.py`):
a type without an entry is an error naming it, never a silent answer. A registration says where the
physical name lives (an input such as `name`, `bucket`, `clusterIdentifier`), whether the engine
generates it when the program gives none (`<logical name>-<7 random hex>`, as Pulumi auto-naming does), and
the API's limits on it, looked up in the service's API model or documentation and cited in `source`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi

# Auto-naming as the engine does it: the logical name, a hyphen, seven random lowercase hex digits.
AUTONAME_RANDOM_HEX = 7
# Terraform's prefixed names (`namePrefix`): the prefix, then a 26-character unique suffix.
PREFIXED_SUFFIX_LENGTH = 26


@dataclass(frozen=True)
class NameRule:
    """What an API accepts as a resource's name."""

    max_length: int
    source: str  # where the limit is written down (API model shape or documentation page)
    min_length: int = 1
    pattern: str | None = None  # the whole name must match
    what: str = ""  # the pattern in words, for the message
    forbidden_prefixes: tuple[str, ...] = ()

    def problem(self, name: str) -> str | None:
        if not self.min_length <= len(name) <= self.max_length:
            limits = f"{self.min_length}-{self.max_length} characters"
            return f"is {len(name)} characters; {self.source} takes {limits}"
        if self.pattern is not None and not re.fullmatch(self.pattern, name):
            return f"is not a valid name; {self.source} takes {self.what or self.pattern}"
        bad = next((p for p in self.forbidden_prefixes if name.lower().startswith(p)), None)
        if bad is not None:
            return f"starts with {bad!r}, which {self.source} reserves"
        return None


class MockContext:
    """What an outputs function sees of one registration."""

    def __init__(self, args: pulumi.runtime.MockResourceArgs, region: str, resource_id: str, physical: str):
        self.args = args
        self.inputs: dict[str, Any] = args.inputs
        self.region = region
        self.id = resource_id
        self.physical_name = physical


Outputs = Callable[[MockContext], dict[str, Any]]


HEX = "0123456789abcdef"


@dataclass(frozen=True)
class TypeSpec:
    token: str
    # The input holding the physical name (a dotted path for a nested one: `metadata.name`); None where the
    # resource has none (a route, an attachment).
    name_input: str | None = "name"
    autonamed: bool = True  # the engine generates the name when the program gives none
    # How the auto-name's random suffix is made (Pulumi's engine: 7 hex; some providers their own).
    autoname_length: int = AUTONAME_RANDOM_HEX
    autoname_alphabet: str = HEX
    lowercase: bool = False  # auto-names are lower-cased (names that end up in hostnames or URLs)
    prefix_input: str | None = None  # an input taking a name prefix instead (`namePrefix`)
    rule: NameRule | None = None
    id_prefix: str | None = None  # ids such as vpc-0abc...; None: `<logical>-<hex>`
    id_is_name: bool = False  # the cloud's id is the physical name
    outputs: Outputs | None = None


REGISTRY: dict[str, TypeSpec] = {}
# Functions (invokes) by token: the answer from the call's arguments and the provider's region.
Answer = Callable[[dict[str, Any], str], dict[str, Any]]
INVOKES: dict[str, Answer] = {}


def invoke(token: str) -> Callable[[Answer], Answer]:
    """Register the answer to a function (invoke) such as aws:index/getCallerIdentity (decorator)."""

    def decorate(fn: Answer) -> Answer:
        INVOKES[token] = fn
        return fn

    return decorate


def register(token: str, **fields: Any) -> Callable[[Outputs], Outputs]:
    """Register a type whose computed outputs `fn` answers (decorator)."""

    def decorate(fn: Outputs) -> Outputs:
        REGISTRY[token] = TypeSpec(token, outputs=fn, **fields)
        return fn

    return decorate


def declare(token: str, **fields: Any) -> None:
    """Register a type whose state is its inputs plus the common computed ones (id, arn, name)."""
    REGISTRY[token] = TypeSpec(token, **fields)


def get_path(values: dict[str, Any], dotted: str) -> Any:
    """A nested input by its dotted path (`metadata.name`), None where any step is missing."""
    current: Any = values
    for key in dotted.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current


def set_path(values: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        child = values.get(key)
        if not isinstance(child, dict):
            child = values[key] = {}
        values = child
    values[last] = value


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
