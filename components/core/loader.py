"""The loader: a stack's config, as the engine hands it to a program, validated into the root model, or
a ConfigError with every independent problem, one line each.

Values arrive the way the Pulumi engine hands them to a program (PULUMI_CONFIG: every value a string,
objects and lists as JSON). Field types are checked by pydantic; rules that span fields run after it,
registered per section with `@rule(SectionClass)` by the package that owns the section.

Every independent problem is reported in one run: the raw keys' problems (namespaces, secrets), the
model's type errors, and the rules. A value that fails its type is left out of the rules: a section whose
fields are partly wrong is still built with the fields that hold (`components.core.partial`), and a rule
that reads a wrong field (or a section, or a stack fact such as the tier, that could not be built) is
skipped, because its verdict would depend on the wrong value. The root's own rules (regions, tier) come
first: where they find a problem, only that is said of the rules. Within a section its rules run in order
and stop at the first that finds a problem or is skipped (later rules of a section may assume the earlier
ones hold).
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from components.core.config import (
    MAX_EXACT_INTEGER,
    MAX_SHOWN_CHARACTERS,
    OTHER_NAMESPACES,
    PROJECT,
    ConfigError,
    Incomplete,
    RootSection,
    SecretSpec,
    Section,
    StackFacts,
    StackShape,
    StackView,
    TopKey,
    did_you_mean,
    odd_characters,
    one_of,
    rules_of,
    shown_key,
    shown_value,
    stack_rules,
)
from components.core.partial import Loc, incomplete_kinds, partial

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
        built = partial(root, values, (), broken_locs, shape)
        view = stack_view(built, secret_object_keys, incomplete_kinds(built))
        problems += section_problems(built, view)
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
    for check in stack_rules():
        try:
            problems += [_line("", key, message) for key, message in check(view)]
        except Incomplete:
            continue  # it reads a value that failed validation, already reported
    return problems


def _run_rules(section: Section, path: str, view: StackView) -> list[str]:
    for check in rules_of(type(section)):
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
        replaced = _replaced_by(root, loc[:-1], name)
        if replaced is not None:
            return f"{path}: no longer taken; {replaced} (see CHANGELOG.md)"
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


def _replaced_by(root: type[RootSection], loc: Loc, key: str) -> str | None:
    model = _model_at(root, loc)
    if model is None or not issubclass(model, Section):
        return None
    return model.replaced_keys.get(key)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
