"""The config machinery every capability's section is built on: the section base (with its defaults for
the stack's shape), what rules may read of the whole stack, rule registration, secrets, and the one-line
error. The loader that validates a stack's config against them is `components.core.loader`.

Every problem is one line, `inference-fleet:<key path>: <what was given>; <what is allowed>`, raised as a
ConfigError, which Pulumi prints without a traceback (and `fleet plan` exits 2 with).
"""

from __future__ import annotations

import difflib
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import pulumi
from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel

PROJECT = "inference-fleet"
# Config namespaces besides the project's: the engine's and the providers' the program uses. Anything
# else is a misspelling (`inferense-fleet:tier`) that Pulumi would silently ignore.
OTHER_NAMESPACES: tuple[str, ...] = ("pulumi", "aws", "gcp", "kubernetes", "command")
# The largest integer that JSON (and so Pulumi's config) carries exactly.
MAX_EXACT_INTEGER = 2**53
# A given value longer than this is shortened where a message echoes it.
MAX_SHOWN_CHARACTERS = 60


class ConfigError(pulumi.RunError):
    """The stack configuration is invalid; each line names one key and what is wrong with it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class Incomplete(Exception):
    """A rule read a value that failed validation: its verdict would depend on it, so it is skipped."""


def one_of(allowed: Iterable[object]) -> str:
    return ", ".join(str(a) for a in allowed)


def did_you_mean(given: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(given, allowed, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def shown_key(key: str) -> str:
    """A key as a message shows it: characters a reader cannot tell apart from others (a BOM, a no-break
    space, a Cyrillic letter in a Latin word) escaped, so the line says what is really there."""
    return "".join(c if " " < c <= "~" else f"\\u{ord(c):04x}" for c in key)


def odd_characters(key: str) -> str:
    """What a key holds besides printable ASCII, named (e.g. ` (holds U+00A0 NO-BREAK SPACE)`), or ''."""
    odd = sorted({c for c in key if not " " < c <= "~"})
    if not odd:
        return ""
    names = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'an unnamed character')}" for c in odd)
    return f" (holds {names})"


def shown_value(value: object) -> str:
    """A given value as a message echoes it: its repr, shortened where it is long."""
    text = repr(value)
    if len(text) <= MAX_SHOWN_CHARACTERS:
        return text
    return f"{text[:24]}... ({len(str(value))} characters)"


@dataclass(frozen=True)
class StackShape:
    """What some defaults depend on: the stack's tier and whether it runs a standby region. A prod stack
    left to the defaults must pass prod's rules (a prod gateway runs 2 tasks, a two-region database a
    memory-optimized class): such defaults are a section's `shape_defaults`."""

    tier: str | None = None
    standby: bool = False

    @staticmethod
    def of(context: Any) -> StackShape:
        """The shape a validation was given (the loader passes it as pydantic's validation context)."""
        shape = context.get("shape") if isinstance(context, dict) else None
        return shape if isinstance(shape, StackShape) else StackShape()

    @staticmethod
    def from_raw(values: Mapping[str, Any]) -> StackShape:
        tier = values.get("tier")
        return StackShape(tier if isinstance(tier, str) else None, bool(values.get("standbyRegion")))

    def context(self) -> dict[str, Any]:
        return {"shape": self}


class Section(BaseModel):
    """Base of every config section: camelCase keys as in the stack files, unknown keys refused."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True)
    # In a list of sections, the field that names an item: two items with the same value are refused.
    list_key: ClassVar[str | None] = None
    # Keys this section no longer takes, each with where it went (a key from the top of the config): the
    # loader refuses an old key naming the new one (CHANGELOG.md lists every such migration).
    moved_keys: ClassVar[dict[str, str]] = {}
    # Keys this section no longer takes because what they set changed, each with what to set instead.
    replaced_keys: ClassVar[dict[str, str]] = {}
    # Fields that failed validation (only in a section built from partly wrong config): reading one raises
    # Incomplete, so the rule that read it is skipped.
    _broken: frozenset[str] = PrivateAttr(default=frozenset())

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            private = object.__getattribute__(self, "__pydantic_private__")
            if private and name in private.get("_broken", ()):
                raise Incomplete(f"{type(self).__name__}.{name}")
            return super().__getattr__(name)

    @property
    def broken_fields(self) -> frozenset[str]:
        return self._broken

    @classmethod
    def shape_defaults(cls, shape: StackShape) -> dict[str, Any]:
        """Defaults that depend on the stack's shape (field name -> value), for keys not given."""
        return {}

    @model_validator(mode="wrap")
    @classmethod
    def _defaults_for_the_shape(
        cls, data: Any, handler: ModelWrapValidatorHandler[Section], info: ValidationInfo
    ) -> Section:
        if not isinstance(data, dict):
            return handler(data)
        filled, added = with_shape_defaults(cls, data, StackShape.of(info.context))
        built = handler(filled)
        built.__pydantic_fields_set__.difference_update(added)  # defaults, not given
        return built


def with_shape_defaults(
    model: type[Section], data: dict[str, Any], shape: StackShape
) -> tuple[dict[str, Any], set[str]]:
    """The raw section with its shape's defaults for keys not given, and each absent sub-section given as
    {} (so it is validated with the shape too, not built by its default factory); and the fields added."""
    filled = dict(data)
    added: set[str] = set()
    for name, value in model.shape_defaults(shape).items():
        key = _alias(model, name)
        if key not in filled:
            filled[key] = value
            added.add(name)
    for name, field in model.model_fields.items():
        key = _alias(model, name)
        inner = field.annotation
        if (
            key not in filled
            and isinstance(inner, type)
            and issubclass(inner, Section)
            and field.default_factory
        ):
            filled[key] = {}
            added.add(name)
    return filled, added


def _alias(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].alias or to_camel(name)


class StackFacts(Protocol):
    """What the root model holds that every section's rules may read."""

    @property
    def tier(self) -> str: ...
    @property
    def domain(self) -> str: ...
    @property
    def primary_region(self) -> str: ...
    @property
    def standby_region(self) -> str | None: ...
    @property
    def gcp_project_id(self) -> str | None: ...
    @property
    def gcp_region(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def store_regions(self) -> list[str]: ...


class StackView:
    """What any section's rules may read of the whole stack besides their own section.

    Reading a fact or a kind of section that failed validation raises Incomplete (the rule is skipped).
    """

    def __init__(
        self,
        root: StackFacts,
        sections: Mapping[type[Section], list[tuple[str, Section]]],
        secret_object_keys: Mapping[str, frozenset[str]],
        incomplete: frozenset[type[Section]] = frozenset(),
    ) -> None:
        self._root = root
        # Every section in the config, by kind, with its key path (lists hold several of a kind).
        self.sections = sections
        # For secrets whose value is an object (provider API keys): the names it holds, where visible.
        self.secret_object_keys = secret_object_keys
        # Kinds of section of which some could not be built at all: a rule over all of a kind is skipped.
        self._incomplete = incomplete

    @property
    def tier(self) -> str:
        return self._root.tier

    @property
    def domain(self) -> str:
        return self._root.domain

    @property
    def primary_region(self) -> str:
        return self._root.primary_region

    @property
    def standby_region(self) -> str | None:
        return self._root.standby_region

    @property
    def gcp_project(self) -> str | None:
        return self._root.gcp_project_id

    @property
    def gcp_region(self) -> str:
        return self._root.gcp_region

    @property
    def tags(self) -> Mapping[str, str]:
        """The stack's own tags (the program adds its defaults to them)."""
        return self._root.tags

    @property
    def control_plane_regions(self) -> list[str]:
        """Primary first, then the standby where there is one."""
        return [self.primary_region, *([self.standby_region] if self.standby_region else [])]

    @property
    def store_regions(self) -> list[str]:
        """The regions with a model store (something mounts it there: GPU pools, Kubernetes clusters)."""
        return self._root.store_regions

    def section(self, kind: type[S]) -> S:
        """The one section of a kind (e.g. another section of the same capability)."""
        self._check(kind)
        (_, found), *others = self.sections[kind]
        assert isinstance(found, kind) and not others
        return found

    def all(self, kind: type[S]) -> list[tuple[str, S]]:
        """Every section of a kind with its key path (`gpuPools[0]`, ...); none is an empty list."""
        self._check(kind)
        return [(path, s) for path, s in self.sections.get(kind, []) if isinstance(s, kind)]

    def _check(self, kind: type[Section]) -> None:
        if kind in self._incomplete:
            raise Incomplete(kind.__name__)


class RootSection(Section):
    """The model of every `inference-fleet:*` key: it composes the capabilities' sections."""


class TopKey(str):
    """A problem's key given from the top of the config, not relative to the section that found it."""


S = TypeVar("S", bound=Section)
# A problem: the key it is about, relative to the section ("" for the section itself) unless a TopKey,
# and the message.
Problem = tuple[str, str]
Rule = Callable[[S, StackView], Iterable[Problem]]
_RULES: dict[type[Section], list[Callable[[Any, StackView], Iterable[Problem]]]] = defaultdict(list)


def rule(section: type[S]) -> Callable[[Rule[S]], Rule[S]]:
    """Register a cross-field rule of a section; it yields (relative key, message) per problem."""

    def register(fn: Rule[S]) -> Rule[S]:
        _RULES[section].append(fn)
        return fn

    return register


StackRule = Callable[[StackView], Iterable[Problem]]
_STACK_RULES: list[StackRule] = []


def stack_rule(fn: StackRule) -> StackRule:
    """Register a rule over several sections at once (e.g. GPUs summed over every pool); its keys are
    TopKeys, given from the top of the config."""
    _STACK_RULES.append(fn)
    return fn


def rules_of(section: type[Section]) -> list[Callable[[Any, StackView], Iterable[Problem]]]:
    """A section's registered rules, in the order they run."""
    return list(_RULES.get(section, []))


def stack_rules() -> list[StackRule]:
    return list(_STACK_RULES)


@dataclass(frozen=True)
class SecretSpec:
    """A secret the stack needs: read only with the secret getters, checked where its value is visible."""

    key: str
    description: str
    # Problems of a value the cloud would refuse (None: any value), e.g. a password's length.
    check: Callable[[Any], str | None] | None = None
    required: bool = True
    # Where only some stacks use it (e.g. only stacks with GPU pools): whether this one does (None: all).
    needed: Callable[[StackView], bool] | None = None


class StackSecrets:
    """The stack's declared secrets as secret Outputs, read only when a capability needs one."""

    def __init__(self, secrets: Sequence[SecretSpec]) -> None:
        self._declared = {s.key: s for s in secrets}
        self._config = pulumi.Config(PROJECT)

    def require(self, key: str) -> pulumi.Output[str]:
        self._check(key)
        return self._config.require_secret(key)

    def require_object(self, key: str) -> pulumi.Output[Any]:
        self._check(key)
        return self._config.require_secret_object(key)

    def _check(self, key: str) -> None:
        if key not in self._declared:
            raise KeyError(f"{key} is not a declared secret; declared: {one_of(self._declared)}")
