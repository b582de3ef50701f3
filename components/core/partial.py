"""A section built from partly wrong config, so that the rules that do not depend on the wrong values can
still run (`components.core.loader`).

Where no validation error lies under a section, it is validated whole. Otherwise it is built with the
fields that hold, each validated alone with the same type, constraints and validators; a wrong field is
left out, and reading it raises Incomplete (the rule that read it is skipped). A kind of section some of
whose instances could not be built at all is "incomplete": a rule over every section of that kind is
skipped too.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter
from pydantic.alias_generators import to_camel

from components.core.config import S, Section, StackShape, with_shape_defaults

Loc = tuple[int | str, ...]


def _under(locs: Iterable[Loc], at: Loc) -> list[Loc]:
    return [loc for loc in locs if loc[: len(at)] == at]


def partial(model: type[S], raw: Any, at: Loc, broken: list[Loc], shape: StackShape) -> S:
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
        key = _key(model, name)
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
    given = {name for name in model.model_fields if _key(model, name) in raw}
    return _constructed(model, values, failed, given)


_BROKEN = object()


def _key(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].alias or to_camel(name)


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
        return [partial(section, item, (*at, i), broken, shape) for i, item in enumerate(raw)]
    return partial(section, raw, at, broken, shape)


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


def incomplete_kinds(section: Section) -> frozenset[type[Section]]:
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
            found |= incomplete_kinds(child)
    return frozenset(found)


def _children(value: Any) -> list[Section]:
    if isinstance(value, Section):
        return [value]
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, Section)]
    return []
