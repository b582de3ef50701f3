"""Read a stack the way `pulumi` assembles its config, without the CLI or Pulumi Cloud.

Order, later wins: Pulumi.yaml declared defaults, the ESC environments the stack file imports (opened
offline from `esc/`), then the stack file's own `config:`. `secure:` values, like ESC secrets, become
stand-ins marked secret.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from fleet.esc import EscError, config_string, open_environments, standin


class StackFileError(ValueError):
    """The project or stack file cannot be read; the message is one line naming the file."""


@dataclass(frozen=True)
class StackInput:
    """Everything a render needs: config as the engine hands it to a program, and which keys are secret."""

    project: str
    stack: str
    project_dir: Path
    config: dict[str, str]
    secret_keys: frozenset[str]

    def with_config(self, changes: dict[str, Any]) -> StackInput:
        """A copy with keys set (`None` removes one); keys without a namespace are the project's."""
        config = dict(self.config)
        for key, value in changes.items():
            full_key = key if ":" in key else f"{self.project}:{key}"
            if value is None:
                config.pop(full_key, None)
            else:
                config[full_key] = config_string(value)
        return replace(self, config=config)


def find_project_dir(start: Path) -> Path:
    for directory in (start, *start.parents):
        if (directory / "Pulumi.yaml").is_file():
            return directory
    raise StackFileError(f"no Pulumi.yaml in {start} or any parent directory")


# What a stack file may hold (Pulumi's stack settings); anything else is a misspelling Pulumi would ignore.
STACK_FILE_KEYS = ("config", "environment", "secretsprovider", "encryptedkey", "encryptionsalt")
# An ESC environment reference: `<project>/<environment>`, optionally `@<version>`.
_ENVIRONMENT_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(@[A-Za-z0-9_.-]+)?$")


def load_stack(project_dir: Path, stack: str) -> StackInput:
    project_doc = _read_yaml(project_dir / "Pulumi.yaml")
    project = project_doc.get("name")
    if not isinstance(project, str):
        raise StackFileError(f"{project_dir / 'Pulumi.yaml'}: no project name")
    stack_path = project_dir / f"Pulumi.{stack}.yaml"
    if not stack_path.is_file():
        known = sorted(
            p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in project_dir.glob("Pulumi.*.yaml")
        )
        raise StackFileError(f"--stack {stack}: no {stack_path.name}; stacks here: {', '.join(known)}")
    stack_doc = _read_yaml(stack_path)
    for key in stack_doc:
        if key not in STACK_FILE_KEYS:
            close = difflib.get_close_matches(str(key), STACK_FILE_KEYS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise StackFileError(
                f"{stack_path.name}: {key}: unknown key; {hint}allowed: {', '.join(STACK_FILE_KEYS)}"
            )

    config: dict[str, str] = {}
    secret_keys: set[str] = set()
    for key, declaration in (project_doc.get("config") or {}).items():
        full_key = key if ":" in key else f"{project}:{key}"
        if isinstance(declaration, dict) and "default" in declaration:
            config[full_key] = config_string(declaration["default"])
        elif not isinstance(declaration, dict):
            config[full_key] = config_string(declaration)

    environments = _environments(stack_path, stack_doc.get("environment"))
    if environments:
        try:
            opened = open_environments(project_dir / "esc", environments, project)
        except EscError as e:
            raise StackFileError(f"{stack_path.name}: {e}") from None
        config.update(opened.config)
        secret_keys |= opened.secret_config_keys

    stack_config = stack_doc.get("config") or {}
    if not isinstance(stack_config, dict):
        raise StackFileError(f"{stack_path.name}: config: expected a mapping of key: value")
    for key, value in stack_config.items():
        full_key = key if ":" in key else f"{project}:{key}"
        _refuse_ambiguous(stack_path.name, full_key, value)
        secret_keys.discard(full_key)
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[full_key] = standin(f"{stack_path.name}:{key}")
            secret_keys.add(full_key)
        else:
            config[full_key] = config_string(value)
    return StackInput(project, stack, project_dir, config, frozenset(secret_keys))


def _environments(stack_path: Path, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise StackFileError(
            f"{stack_path.name}: environment: expected a list of ESC environments such as inference-fleet/dev"
        )
    for i, name in enumerate(value):
        if not isinstance(name, str) or not _ENVIRONMENT_RE.match(name):
            raise StackFileError(
                f"{stack_path.name}: environment[{i}]: got {name!r}; expected <project>/<environment> "
                "(letters, digits, '_', '.', '-'), such as inference-fleet/dev"
            )
    return value


class _Ambiguous:
    """A plain YAML scalar whose meaning differs between YAML readers or that Pulumi cannot carry."""

    def __init__(self, text: str, reading: str) -> None:
        self.text = text
        self.reading = reading


class _StrictLoader(yaml.SafeLoader):
    """YAML 1.1 (PyYAML) reads some plain scalars differently from the YAML 1.2 reader Pulumi uses (`no`
    is false here, the string "no" there; `2025-01-01` a date here, a string there), and some values do not
    survive Pulumi's config (NaN, integers past 2^53). Such scalars load as `_Ambiguous` and are refused
    by name, asking for quotes or another value."""


def _bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(node.value)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return _Ambiguous(text, f"YAML 1.1 reads it as {loader.construct_yaml_bool(node)}, Pulumi as the string")


def _timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    return _Ambiguous(str(node.value), "a date to YAML 1.1, a string to Pulumi")


def _float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_yaml_float(node)
    if value != value or value in (float("inf"), float("-inf")):
        return _Ambiguous(str(node.value), "not a number Pulumi's config can carry")
    return value


def _int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_yaml_int(node)
    if abs(value) > 2**53:
        return _Ambiguous(str(node.value), "an integer past 2^53, which JSON does not carry exactly")
    return value


_StrictLoader.add_constructor("tag:yaml.org,2002:bool", _bool)
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _float)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _int)


def _refuse_ambiguous(file: str, path: str, value: Any) -> None:
    if isinstance(value, _Ambiguous):
        raise StackFileError(
            f"{file}: {path}: got {value.text} unquoted ({value.reading}); quote it or fix it"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_ambiguous(file, f"{path}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_ambiguous(file, f"{path}[{i}]", item)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.load(path.read_text(), Loader=_StrictLoader)
    except FileNotFoundError:
        raise StackFileError(f"{path}: not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise StackFileError(f"{path.name}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(doc, dict):
        raise StackFileError(f"{path.name}: expected a mapping at the top level")
    return doc
