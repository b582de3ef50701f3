"""The config machinery every capability's section is built on: the section base, rule registration, the
loader, and how a problem becomes one line.

Values arrive the way the Pulumi engine hands them to a program (PULUMI_CONFIG: every value a string,
objects and lists as JSON). Field types are checked by pydantic; rules that span fields run after it,
registered per section with `@rule(SectionClass)` by the package that owns the section. Every problem is
one line, `inference-fleet:<key path>: <what was given>; <what is allowed>`, raised as a ConfigError,
which Pulumi prints without a traceback (and `fleet plan` exits 2 with).

Every independent problem is reported in one run: the raw keys' problems (namespaces, secrets), the
model's type errors, and the rules. A value that fails its type is left out of the rules: a section whose
fields are partly wrong is still built with the fields that hold, and a rule that reads a wrong field
(or a section, or a stack fact such as the tier, that could not be built) is skipped, because its verdict
would depend on the wrong value. The root's own rules (regions, tier) come first: where they find a
problem, only that is said of the rules. Within a section its rules run in order and stop at the first
that finds a problem or is skipped (later rules of a section may assume the earlier ones hold).
"""

from __future__ import annotations

import difflib
import json
import types
import typing
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, TypeVar

import pulumi
from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

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


# --- loading ------------------------------------------------------------------------------------------


R = TypeVar("R", bound=RootSection)


def parse_config(
    root: type[R],
    raw: Mapping[str, str],
    secret_keys: set[str],
    secrets: Sequence[SecretSpec],
    stack: str | None = None,
) -> R:
    """Validate `namespace:key -> string` config into the root model, or raise ConfigError with every
    independent problem. `stack` names the stack file in messages that say where a key goes."""
    declared = {s.key: s for s in secrets}
    prefix = f"{PROJECT}:"
    stack_file = f"Pulumi.{stack}.yaml" if stack else "the stack file"
    values: dict[str, Any] = {}
    # Keys refused before the model sees them: the model must not call them missing too.
    refused: set[str] = set()
    # Keys given under a misspelt namespace: the model must not call them missing too.
    misnamed: set[str] = set()
    secret_object_keys: dict[str, frozenset[str]] = {}
    problems: list[str] = []
    for full_key, text in raw.items():
        namespace, sep, key = full_key.partition(":")
        if not sep:
            continue  # the engine always qualifies keys; nothing to check here
        if namespace != PROJECT:
            if namespace not in OTHER_NAMESPACES:
                known = [PROJECT, *OTHER_NAMESPACES]
                hint = did_you_mean(namespace, known)
                if hint and f"{prefix}{key}" not in raw and _is_required(root, key):
                    misnamed.add(key)  # the line below explains why the key is missing: say it once
                    hint = hint.replace("? ", f"? ({prefix}{key} is required and not set) ", 1)
                problems.append(
                    f"{shown_key(full_key)}: unknown namespace '{shown_key(namespace)}'"
                    f"{odd_characters(namespace)}; {hint}allowed: {one_of(known)}"
                )
            continue
        if key in declared:
            spec = declared[key]
            if full_key not in secret_keys:
                problems.append(
                    f"{full_key}: given in plain text; it is a secret ({spec.description}): set it with "
                    f"fn::secret in the stack's ESC environment or `pulumi config set --secret {key}`"
                )
                continue
            value = _secret_value(text)
            if isinstance(value, dict):
                secret_object_keys[key] = frozenset(value)
            problem = spec.check(value) if spec.check is not None else None
            if problem:
                problems.append(f"{full_key}: {problem} (value not shown)")
            continue
        if full_key in secret_keys:
            problems.append(
                f"{full_key}: given as a secret, but it is plain config; the stack's secrets are "
                f"{one_of(declared)}"
            )
            refused.add(key)
            continue
        try:
            values[key] = _decode(root, key, text)
        except ValueError as e:
            problems.append(f"{full_key}: {e}")
            refused.add(key)
    unset = [spec for key, spec in declared.items() if spec.required and f"{prefix}{key}" not in raw]
    shape = StackShape.from_raw(values)
    try:
        config: R | None = root.model_validate(values, context=shape.context())
        all_errors: list[ErrorDetails] = []
    except ValidationError as e:
        config = None
        all_errors = e.errors()
    # A key refused above, or given under a misspelt namespace, is not also called missing or wrong here.
    errors = [
        err
        for err in all_errors
        if not (err["loc"] and err["loc"][0] in refused)
        and not (err["type"] == "missing" and err["loc"] and err["loc"][0] in misnamed)
    ]
    problems += _type_problems(root, errors, stack_file)
    if config is None:
        broken_locs = [err["loc"] for err in all_errors] + [(key,) for key in refused]
        partial = _partial(root, values, (), broken_locs, shape)
        view = stack_view(partial, secret_object_keys, _incomplete_kinds(partial))
        problems += section_problems(partial, view)
    else:
        view = stack_view(config, secret_object_keys)
        problems += section_problems(config, view)
    problems += [
        f"{prefix}{spec.key}: required but not set ({spec.description}); set it with fn::secret in the "
        f"stack's ESC environment (values.pulumiConfig: {prefix}{spec.key})"
        for spec in unset
        if _needed(spec, view)
    ]
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def _is_required(root: type[RootSection], key: str) -> bool:
    field = _fields_by_key(root).get(key)
    return field is not None and field.is_required()


def _secret_value(text: str) -> Any:
    """A secret object (provider keys) arrives as JSON; a scalar secret as the string itself."""
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def _decode(root: type[RootSection], key: str, text: str) -> Any:
    """Objects and lists come JSON-encoded; scalars stay strings for pydantic to coerce and check."""
    field = _fields_by_key(root).get(key)
    if field is None or not _is_structured(field.annotation):
        return text
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_exact_int)
    except (TypeError, json.JSONDecodeError):
        raise ValueError(f"got {shown_value(text)}; expected a YAML mapping or list") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"got {name}; expected a number (NaN and infinities are not values here)")


def _exact_int(text: str) -> int:
    # Counted before converting: Python refuses to convert an integer of more than 4300 digits at all.
    digits = len(text.lstrip("-"))
    if digits > len(str(MAX_EXACT_INTEGER)) or abs(int(text)) > MAX_EXACT_INTEGER:
        shown = text if digits <= MAX_SHOWN_CHARACTERS // 2 else f"an integer of {digits} digits"
        raise ValueError(f"got {shown}; integers beyond 2^53 do not survive Pulumi's config exactly")
    return int(text)


@cache
def _fields_by_key(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by the key the stack file uses (its alias)."""
    return {field.alias or to_camel(name): field for name, field in model.model_fields.items()}


def _is_structured(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_structured(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_structured(a) for a in typing.get_args(annotation))
    return origin in (list, dict) or (isinstance(annotation, type) and issubclass(annotation, BaseModel))


# --- a section built from partly wrong config -------------------------------------------------------------

Loc = tuple[int | str, ...]


def _under(locs: Iterable[Loc], at: Loc) -> list[Loc]:
    return [loc for loc in locs if loc[: len(at)] == at]


def _partial(model: type[S], raw: Any, at: Loc, broken: list[Loc], shape: StackShape) -> S:
    """The section at `at` from its raw value: valid where no error lies under it; otherwise built with
    the fields that hold, the others broken (reading one raises Incomplete)."""
    inside = _under(broken, at)
    if not inside:
        return model.model_validate({} if raw is None else raw, context=shape.context())
    if not isinstance(raw, dict) or any(len(loc) == len(at) for loc in inside):
        return _all_broken(model)
    filled, _ = with_shape_defaults(model, raw, shape)
    values: dict[str, Any] = {}
    failed: set[str] = set()
    for name, field in model.model_fields.items():
        key = _alias(model, name)
        here = (*at, key)
        if not _under(inside, here):
            values[name] = (
                _adapter(model, name).validate_python(filled[key], context=shape.context())
                if key in filled
                else field.get_default(call_default_factory=True)
            )
            continue
        value = _partial_value(field.annotation, filled.get(key), here, inside, shape)
        if value is _BROKEN:
            failed.add(name)
        else:
            values[name] = value
    given = {name for name in model.model_fields if _alias(model, name) in raw}
    return _constructed(model, values, failed, given)


_BROKEN = object()


def _partial_value(annotation: Any, raw: Any, at: Loc, broken: list[Loc], shape: StackShape) -> Any:
    """A field's value with errors under it: a section (or list of sections) built partly, else broken."""
    if any(len(loc) == len(at) for loc in _under(broken, at)):
        return _BROKEN
    section = _section_in(annotation)
    if section is None:
        return _BROKEN
    if typing.get_origin(_unwrap(annotation)) in (list, tuple):
        if not isinstance(raw, list):
            return _BROKEN
        return [_partial(section, item, (*at, i), broken, shape) for i, item in enumerate(raw)]
    return _partial(section, raw, at, broken, shape)


def _all_broken(model: type[S]) -> S:
    return _constructed(model, {}, set(model.model_fields), set())


def _constructed(model: type[S], values: dict[str, Any], failed: set[str], given: set[str]) -> S:
    built = model.model_construct(_fields_set=given, **values)
    for name in failed:
        vars(built).pop(name, None)  # read through __getattr__, which raises Incomplete
    built._broken = frozenset(failed)
    return built


@cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """One field's validation alone: its type with the constraints and validators declared on it."""
    field = model.model_fields[name]
    annotation: Any = field.annotation
    if field.metadata:
        annotation = Annotated.__class_getitem__((annotation, *field.metadata))  # pyright: ignore[reportAttributeAccessIssue]
    return TypeAdapter(annotation)


def _unwrap(annotation: Any) -> Any:
    """The annotation without Annotated and Optional wrappers."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _section_in(annotation: Any) -> type[Section] | None:
    """The section a field holds: itself, optional, or as the items of a list."""
    inner = _unwrap(annotation)
    if typing.get_origin(inner) in (list, tuple):
        args = typing.get_args(inner)
        inner = _unwrap(args[0]) if args else None
    return inner if isinstance(inner, type) and issubclass(inner, Section) else None


def section_kinds(annotation: Any) -> set[type[Section]]:
    """Every kind of section a field of this annotation may hold, at any depth."""
    found: set[type[Section]] = set()
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, Section):
            if arg not in found:
                found.add(arg)
                for field in arg.model_fields.values():
                    found |= section_kinds(field.annotation)
        elif arg is not annotation:
            found |= section_kinds(arg)
    return found


def _incomplete_kinds(section: Section) -> frozenset[type[Section]]:
    """Kinds of section some of which may be missing from a partly built config: those under a broken
    field, and a broken item's own kind."""
    found: set[type[Section]] = set()
    fields = type(section).model_fields
    if section.broken_fields == frozenset(fields):
        found.add(type(section))
    for name, field in fields.items():
        if name in section.broken_fields:
            found |= section_kinds(field.annotation)
            continue
        for child in _children(getattr(section, name)):
            found |= _incomplete_kinds(child)
    return frozenset(found)


def _children(value: Any) -> list[Section]:
    if isinstance(value, Section):
        return [value]
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, Section)]
    return []


# --- cross-field rules ----------------------------------------------------------------------------------


def stack_view(
    config: RootSection,
    secret_object_keys: Mapping[str, frozenset[str]] | None = None,
    incomplete: frozenset[type[Section]] = frozenset(),
) -> StackView:
    sections: dict[type[Section], list[tuple[str, Section]]] = defaultdict(list)
    for path, section in _walk(config, ""):
        sections[type(section)].append((path, section))
    return StackView(typing.cast(StackFacts, config), dict(sections), secret_object_keys or {}, incomplete)


def _needed(spec: SecretSpec, view: StackView) -> bool:
    if spec.needed is None:
        return True
    try:
        return spec.needed(view)
    except Incomplete:
        return False  # whether it is depends on a value already reported wrong


def section_problems(config: RootSection, view: StackView) -> list[str]:
    """Every section's rule problems (and duplicate list items), each as a full line."""
    found = list(_walk(config, ""))
    root_problems = _run_rules(config, "", view)
    if root_problems:
        return root_problems  # the regions and tier every other rule reads are wrong: say only that
    problems = list(_duplicates(config, ""))
    for path, section in found:
        if section is not config:
            problems += _run_rules(section, path, view)
    for check in _STACK_RULES:
        try:
            problems += [_line("", key, message) for key, message in check(view)]
        except Incomplete:
            continue  # it reads a value that failed validation, already reported
    return problems


def _run_rules(section: Section, path: str, view: StackView) -> list[str]:
    for check in _RULES.get(type(section), []):
        try:
            problems = [_line(path, key, message) for key, message in check(section, view)]
        except Incomplete:
            return []  # the later rules may assume this one held
        if problems:
            return problems
    return []


def _line(path: str, key: str, message: str) -> str:
    full = key if isinstance(key, TopKey) else ".".join(p for p in (path, key) if p).replace(".[", "[")
    return f"{PROJECT}:{full}: {message}"


def _walk(section: Section, path: str) -> Iterator[tuple[str, Section]]:
    """Every section in the tree, with its key path, parents before children."""
    yield path, section
    for name, field in type(section).model_fields.items():
        if name in section.broken_fields:
            continue
        value = getattr(section, name)
        key = _join(path, field.alias or to_camel(name))
        if isinstance(value, Section):
            yield from _walk(value, key)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, Section):
                    yield from _walk(item, f"{key}[{i}]")


def _duplicates(section: Section, path: str) -> Iterator[str]:
    """Any list that names one thing twice: a repeated value, or two sections with the same key."""
    for name, field in type(section).model_fields.items():
        if name in section.broken_fields:
            continue
        value = getattr(section, name)
        key = _join(path, field.alias or to_camel(name))
        if isinstance(value, Section):
            yield from _duplicates(value, key)
            continue
        if not isinstance(value, list | tuple):
            continue
        seen: set[Any] = set()
        for i, item in enumerate(value):
            if isinstance(item, Section):
                yield from _duplicates(item, f"{key}[{i}]")
                item_key = type(item).list_key
                if item_key is None or item_key in item.broken_fields:
                    continue
                named = getattr(item, item_key)
                if named in seen:
                    where = f"{PROJECT}:{key}[{i}].{to_camel(item_key)}"
                    yield f"{where}: got {named!r} twice; each is named once"
                seen.add(named)
            elif isinstance(item, str | int):
                if item in seen:
                    yield f"{PROJECT}:{key}[{i}]: got {item!r} twice; list each once"
                seen.add(item)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- pydantic's errors as one line each -------------------------------------------------------------------


def _key_path(loc: Loc) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            part = shown_key(part)
            path += f".{part}" if path else part
    return f"{PROJECT}:{path}"


_EXPECTED = {
    "int_parsing": "an integer",
    "int_parsing_size": "an integer",
    "int_type": "an integer",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping of keys to values",
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
    "list_type": "a list",
}


def _type_problems(root: type[RootSection], errors: list[ErrorDetails], stack_file: str) -> list[str]:
    """pydantic's errors, one line each. An unknown key that is a near miss of a required key that is
    missing says so, instead of a second line calling the required key missing."""
    unknown = {err["loc"] for err in errors if err["type"] == "extra_forbidden"}
    near_misses: dict[Loc, str] = {}
    for loc in unknown:
        allowed = _allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if close and (*loc[:-1], close[0]) in {e["loc"] for e in errors if e["type"] == "missing"}:
            near_misses[(*loc[:-1], close[0])] = str(loc[-1])
    lines = []
    for err in errors:
        if err["type"] == "missing" and err["loc"] in near_misses:
            continue
        lines.append(_describe(root, err, stack_file, near_misses))
    return lines


def _describe(
    root: type[RootSection], err: ErrorDetails, stack_file: str, near_misses: Mapping[Loc, str]
) -> str:
    loc = err["loc"]
    path = _key_path(loc)
    given = err.get("input")
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"{path}: required but not set; {_where_it_goes(loc, stack_file)}"
    if kind == "extra_forbidden":
        name = str(loc[-1])
        moved = _moved_to(root, loc[:-1], name)
        if moved is not None:
            return f"{path}: moved to {PROJECT}:{moved}; set it there (see CHANGELOG.md)"
        allowed = _allowed_keys(root, loc[:-1])
        hint = did_you_mean(name, allowed)
        if hint and (*loc[:-1], difflib.get_close_matches(name, allowed, n=1)[0]) in near_misses:
            hint = hint.replace("? ", "? (it is required and not set) ", 1)
        return f"{path}: unknown key{odd_characters(name)}; {hint}allowed: {one_of(allowed)}"
    if kind == "value_error":
        return f"{path}: {err['msg'].removeprefix('Value error, ')}"
    if kind == "literal_error":
        return f"{path}: got {shown_value(given)}; allowed: {ctx.get('expected')}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{path}: got {shown_value(given)}; {err['msg'].lower()}"
    if kind in ("too_short", "too_long"):
        return f"{path}: {err['msg'].lower()}"
    if kind == "string_type" and isinstance(given, int | float) and not isinstance(given, bool):
        # An unquoted 1.30 in YAML is the number 1.3: the string meant is lost unless quoted.
        return (
            f"{path}: got {shown_value(given)}, a number; expected a string: quote it in the stack file "
            f'(an unquoted 1.30 is read as the number 1.3; write "1.30")'
        )
    expected = _EXPECTED.get(kind)
    if expected:
        return f"{path}: got {shown_value(given)}; expected {expected}"
    return f"{path}: got {shown_value(given)}; {err['msg']}"


def _where_it_goes(loc: Loc, stack_file: str) -> str:
    if len(loc) == 1:
        return (
            f"set it in {stack_file} (config: {PROJECT}:{loc[0]}) or in an ESC environment the stack "
            f"imports (values.pulumiConfig: {PROJECT}:{loc[0]})"
        )
    parent = _key_path(loc[:-1])
    return f"add {shown_key(str(loc[-1]))} under {parent} in {stack_file}"


def _model_at(root: type[RootSection], loc: Loc) -> type[BaseModel] | None:
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = _fields_by_key(model).get(str(part))
        if field is None:
            return None
        model = _model_in(field.annotation)
        if model is None:
            return None
    return model


def _allowed_keys(root: type[RootSection], loc: Loc) -> list[str]:
    """The camelCase keys a section at `loc` accepts, for the 'did you mean' hint."""
    model = _model_at(root, loc)
    if model is None:
        return []
    names = list(_fields_by_key(model))
    return names + list(getattr(root, "secret_keys", ())) if model is root else names


def _moved_to(root: type[RootSection], loc: Loc, key: str) -> str | None:
    model = _model_at(root, loc)
    if model is None or not issubclass(model, Section):
        return None
    return model.moved_keys.get(key)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


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
