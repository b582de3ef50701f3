"""The config machinery every capability's section is built on: the section base, rule registration, the
loader, and how a problem becomes one line.

Values arrive the way the Pulumi engine hands them to a program (PULUMI_CONFIG: every value a string,
objects and lists as JSON). Field types are checked by pydantic; rules that span fields run after it,
registered per section with `@rule(SectionClass)` by the package that owns the section. Every problem is
one line, `inference-fleet:<key path>: <what was given>; <what is allowed>`, raised as a ConfigError,
which Pulumi prints without a traceback (and `fleet plan` exits 2 with).

Order of checks: the namespaces and secrets of the raw keys; then the model's types; then the root's
own rules (regions, tier), and, only where those hold, every section's rules, every section reported.
Within a section its rules run in order and stop at the first that finds a problem (later rules of a
section may assume the earlier ones hold).
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, ClassVar, TypeVar

import pulumi
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

PROJECT = "inference-fleet"
# Config namespaces besides the project's: the engine's and the providers' the program uses. Anything
# else is a misspelling (`inferense-fleet:tier`) that Pulumi would silently ignore.
OTHER_NAMESPACES: tuple[str, ...] = ("pulumi", "aws", "gcp", "kubernetes", "command")
# The largest integer that JSON (and so Pulumi's config) carries exactly.
MAX_EXACT_INTEGER = 2**53


class ConfigError(pulumi.RunError):
    """The stack configuration is invalid; each line names one key and what is wrong with it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def one_of(allowed: Iterable[object]) -> str:
    return ", ".join(str(a) for a in allowed)


def did_you_mean(given: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(given, allowed, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


class Section(BaseModel):
    """Base of every config section: camelCase keys as in the stack files, unknown keys refused."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True)
    # In a list of sections, the field that names an item: two items with the same value are refused.
    list_key: ClassVar[str | None] = None


@dataclass(frozen=True)
class StackView:
    """What any section's rules may read of the whole stack besides their own section."""

    tier: str
    domain: str
    primary_region: str
    standby_region: str | None
    gcp_region: str
    # Every section in the config, by kind, with its key path (lists hold several of a kind).
    sections: Mapping[type[Section], list[tuple[str, Section]]]
    # For secrets whose value is an object (provider API keys): the names it holds, where visible.
    secret_object_keys: Mapping[str, frozenset[str]]
    # The stack's own tags (the program adds its defaults to them).
    tags: Mapping[str, str] = dataclass_field(default_factory=dict)

    @property
    def control_plane_regions(self) -> list[str]:
        """Primary first, then the standby where there is one."""
        return [self.primary_region, *([self.standby_region] if self.standby_region else [])]

    def section(self, kind: type[S]) -> S:
        """The one section of a kind (e.g. another section of the same capability)."""
        (_, found), *others = self.sections[kind]
        assert isinstance(found, kind) and not others
        return found

    def all(self, kind: type[S]) -> list[tuple[str, S]]:
        """Every section of a kind with its key path (`gpuPools[0]`, ...); none is an empty list."""
        return [(path, s) for path, s in self.sections.get(kind, []) if isinstance(s, kind)]


class RootSection(Section):
    """The model of every `inference-fleet:*` key: it composes the capabilities' sections."""

    def view(
        self,
        sections: Mapping[type[Section], list[tuple[str, Section]]],
        secret_object_keys: Mapping[str, frozenset[str]],
    ) -> StackView:
        raise NotImplementedError


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


# --- loading ------------------------------------------------------------------------------------------


R = TypeVar("R", bound=RootSection)


def parse_config(
    root: type[R], raw: Mapping[str, str], secret_keys: set[str], secrets: Sequence[SecretSpec]
) -> R:
    """Validate `namespace:key -> string` config into the root model, or raise ConfigError."""
    declared = {s.key: s for s in secrets}
    prefix = f"{PROJECT}:"
    values: dict[str, Any] = {}
    secret_object_keys: dict[str, frozenset[str]] = {}
    problems: list[str] = []
    for full_key, text in raw.items():
        namespace, sep, key = full_key.partition(":")
        if not sep:
            continue  # the engine always qualifies keys; nothing to check here
        if namespace != PROJECT:
            if namespace not in OTHER_NAMESPACES:
                known = [PROJECT, *OTHER_NAMESPACES]
                problems.append(
                    f"{full_key}: unknown namespace '{namespace}'; {did_you_mean(namespace, known)}"
                    f"allowed: {one_of(known)}"
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
            continue
        try:
            values[key] = _decode(root, key, text)
        except ValueError as e:
            problems.append(f"{full_key}: {e}")
    for key, spec in declared.items():
        if spec.required and f"{prefix}{key}" not in raw:
            problems.append(
                f"{prefix}{key}: required but not set ({spec.description}); set it with fn::secret in the "
                "stack's ESC environment"
            )
    if problems:
        raise ConfigError(problems)
    try:
        config = root.model_validate(values)
    except ValidationError as e:
        raise ConfigError([_describe(root, err) for err in e.errors()]) from None
    problems = section_problems(config, secret_object_keys)
    if problems:
        raise ConfigError(problems)
    return config


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
    field = root.model_fields.get(_to_snake(key))
    if field is None or not _is_structured(field.annotation):
        return text
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_exact_int)
    except (TypeError, json.JSONDecodeError):
        raise ValueError(f"got {text!r}; expected a YAML mapping or list") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"got {name}; expected a number (NaN and infinities are not values here)")


def _exact_int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_EXACT_INTEGER:
        raise ValueError(f"got {text}; integers beyond 2^53 do not survive Pulumi's config exactly")
    return value


def _to_snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _is_structured(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_structured(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_structured(a) for a in typing.get_args(annotation))
    return origin in (list, dict) or (isinstance(annotation, type) and issubclass(annotation, BaseModel))


# --- cross-field rules ----------------------------------------------------------------------------------


def section_problems(
    config: RootSection, secret_object_keys: Mapping[str, frozenset[str]] | None = None
) -> list[str]:
    """Every section's rule problems (and duplicate list items), each as a full line."""
    found = list(_walk(config, ""))
    sections: dict[type[Section], list[tuple[str, Section]]] = defaultdict(list)
    for path, section in found:
        sections[type(section)].append((path, section))
    view = config.view(dict(sections), secret_object_keys or {})
    root_problems = _run_rules(config, "", view)
    if root_problems:
        return root_problems  # the regions and tier every other rule reads are wrong: say only that
    problems = list(_duplicates(config, ""))
    for path, section in found:
        if section is not config:
            problems += _run_rules(section, path, view)
    for check in _STACK_RULES:
        problems += [_line("", key, message) for key, message in check(view)]
    return problems


def _run_rules(section: Section, path: str, view: StackView) -> list[str]:
    for check in _RULES.get(type(section), []):
        problems = [_line(path, key, message) for key, message in check(section, view)]
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
                if item_key is None:
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


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            path += f".{part}" if path else str(part)
    return f"{PROJECT}:{path}"


_EXPECTED = {
    "int_parsing": "an integer",
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


def _describe(root: type[RootSection], err: ErrorDetails) -> str:
    loc = err["loc"]
    path = _key_path(loc)
    given = err.get("input")
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"{path}: required but not set"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        return f"{path}: unknown key; {did_you_mean(str(loc[-1]), allowed)}allowed: {one_of(allowed)}"
    if kind == "value_error":
        return f"{path}: {err['msg'].removeprefix('Value error, ')}"
    if kind == "literal_error":
        return f"{path}: got {given!r}; allowed: {ctx.get('expected')}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{path}: got {given!r}; {err['msg'].lower()}"
    if kind in ("too_short", "too_long"):
        return f"{path}: {err['msg'].lower()}"
    expected = _EXPECTED.get(kind)
    if expected:
        return f"{path}: got {given!r}; expected {expected}"
    return f"{path}: got {given!r}; {err['msg']}"


def _allowed_keys(root: type[RootSection], loc: tuple[int | str, ...]) -> list[str]:
    """The camelCase keys a section at `loc` accepts, for the 'did you mean' hint."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for name, f in model.model_fields.items() if to_camel(name) == part), None)
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    names = [to_camel(name) for name in model.model_fields]
    return names + list(getattr(root, "secret_keys", ())) if model is root else names


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
