"""YAML files as Pulumi reads them, read here with PyYAML made strict where the two readers differ.

Pulumi reads the project, the stack files and ESC definitions with a YAML 1.2 reader (go-yaml v3); PyYAML
reads YAML 1.1. Where they disagree, a file would mean one thing to `fleet plan` and another to `pulumi
up`, so such a file is refused by key here:

- a key given twice in one mapping: go-yaml refuses the file ("mapping key ... already defined"); PyYAML
  keeps the last value;
- plain scalars YAML 1.1 reads differently (`no`/`yes`/`on`/`off` are booleans there, strings in 1.2;
  `2025-01-01` a date there, a string here), and values Pulumi's config cannot carry (NaN, infinities,
  integers past 2^53, which JSON does not carry exactly): they load as `Ambiguous`, refused by whoever
  reads them, asking for quotes or another value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from components.core.config import MAX_EXACT_INTEGER

KeyPath = tuple[str | int, ...]


class YamlFileError(ValueError):
    """A YAML file Pulumi would read differently or refuse; one line per problem, naming file and key."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


class Ambiguous:
    """A plain YAML scalar whose meaning differs between YAML readers or that Pulumi cannot carry."""

    def __init__(self, text: str, reading: str) -> None:
        self.text = text
        self.reading = reading

    def problem(self) -> str:
        return f"got {self.text} unquoted ({self.reading}); quote it or fix it"


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with the scalars YAML 1.1 and 1.2 read differently loaded as `Ambiguous`."""


def _bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(node.value)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return Ambiguous(text, f"YAML 1.1 reads it as {loader.construct_yaml_bool(node)}, Pulumi as the string")


def _timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    return Ambiguous(str(node.value), "a date to YAML 1.1, a string to Pulumi")


def _float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_yaml_float(node)
    if value != value or value in (float("inf"), float("-inf")):
        return Ambiguous(str(node.value), "not a number Pulumi's config can carry")
    return value


def _int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(node.value)
    digits = len(text.lstrip("+-").replace("_", ""))
    # Counted before converting: Python refuses to convert an integer of more than 4300 digits at all.
    if digits > len(str(MAX_EXACT_INTEGER)) + 2:
        return Ambiguous(
            text if digits <= 30 else f"an integer of {digits} digits",
            "an integer past 2^53, which JSON does not carry exactly",
        )
    value = loader.construct_yaml_int(node)
    if abs(value) > MAX_EXACT_INTEGER:
        return Ambiguous(text, "an integer past 2^53, which JSON does not carry exactly")
    return value


StrictLoader.add_constructor("tag:yaml.org,2002:bool", _bool)
StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)
StrictLoader.add_constructor("tag:yaml.org,2002:float", _float)
StrictLoader.add_constructor("tag:yaml.org,2002:int", _int)


def load(path: Path) -> Any:
    """The document in `path`; YamlFileError (one line per problem) for a file Pulumi would refuse or
    that is not YAML. Ambiguous scalars come back as `Ambiguous` for the reader to refuse by key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlFileError([f"{path}: not found"]) from None
    except UnicodeDecodeError as e:
        raise YamlFileError([f"{path.name}: not UTF-8 text (byte {e.start})"]) from None
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        repeated = [
            f"{path.name} line {line}: {display_path(parts)}: given twice (first on line {first}); "
            "Pulumi's YAML reader refuses a repeated key: keep one"
            for parts, line, first in _repeated_keys(node, ())
        ]
        if repeated:
            raise YamlFileError(repeated)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise YamlFileError([f"{path.name}{where}: not valid YAML ({getattr(e, 'problem', e)})"]) from None
    finally:
        loader.dispose()


def display_path(parts: KeyPath) -> str:
    """`('config', 'inference-fleet:gpuPools', 0, 'maxSize')` -> `inference-fleet:gpuPools[0].maxSize`: a
    stack file's config keys are shown as config keys."""
    if len(parts) > 1 and parts[0] == "config":
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _repeated_keys(node: yaml.Node, at: KeyPath) -> Iterator[tuple[KeyPath, int, int]]:
    """(key path, line, line of the first) for each key given twice in one mapping, at any depth."""
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in first_line and key != "<<":
                yield (*at, key), line, first_line[key]
            first_line.setdefault(key, line)
            yield from _repeated_keys(value_node, (*at, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _repeated_keys(item, (*at, i))


def ambiguous_values(value: Any, at: KeyPath = ()) -> Iterator[tuple[KeyPath, Ambiguous]]:
    """Every `Ambiguous` scalar in a loaded document, with its key path."""
    if isinstance(value, Ambiguous):
        yield at, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from ambiguous_values(item, (*at, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from ambiguous_values(item, (*at, i))
