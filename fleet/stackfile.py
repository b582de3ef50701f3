"""Read a stack the way `pulumi` assembles its config, without the CLI or Pulumi Cloud.

Order, later wins: Pulumi.yaml declared defaults, the ESC environments the stack file imports (opened
offline from `esc/`), then the stack file's own `config:`. `secure:` values, like ESC secrets, become
stand-ins marked secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from components.core.config import did_you_mean, odd_characters, shown_key
from fleet import yamlfile
from fleet.esc import EscError, config_string, open_environments, standin


class StackFileError(ValueError):
    """The project or stack file cannot be read; the message is one line per problem, naming the file."""


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
ENVIRONMENT_PATTERN = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(@[A-Za-z0-9_.-]+)?$"
_ENVIRONMENT_RE = re.compile(ENVIRONMENT_PATTERN)


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
    unknown = [
        f"{stack_path.name}: {shown_key(str(key))}: unknown key{odd_characters(str(key))}; "
        f"{did_you_mean(str(key), STACK_FILE_KEYS)}"
        f"allowed: {', '.join(STACK_FILE_KEYS)}"
        for key in stack_doc
        if key not in STACK_FILE_KEYS
    ]
    if unknown:
        raise StackFileError("\n".join(unknown))

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
            lines = [f"{stack_path.name}: {line}" for line in str(e).splitlines()]
            raise StackFileError("\n".join(lines)) from None
        config.update(opened.config)
        secret_keys |= opened.secret_config_keys

    stack_config = stack_doc.get("config") or {}
    if not isinstance(stack_config, dict):
        raise StackFileError(f"{stack_path.name}: config: expected a mapping of key: value")
    ambiguous = [
        f"{stack_path.name}: {yamlfile.display_path((_full_key(project, str(key)), *at))}: {scalar.problem()}"
        for key, value in stack_config.items()
        for at, scalar in yamlfile.ambiguous_values(value)
    ]
    if ambiguous:
        raise StackFileError("\n".join(ambiguous))
    for key, value in stack_config.items():
        full_key = _full_key(project, key)
        secret_keys.discard(full_key)
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[full_key] = standin(f"{stack_path.name}:{key}")
            secret_keys.add(full_key)
        else:
            config[full_key] = config_string(value)
    return StackInput(project, stack, project_dir, config, frozenset(secret_keys))


def _full_key(project: str, key: str) -> str:
    return key if ":" in key else f"{project}:{key}"


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


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yamlfile.load(path)
    except yamlfile.YamlFileError as e:
        raise StackFileError(str(e)) from None
    if not isinstance(doc, dict):
        raise StackFileError(f"{path.name}: expected a mapping at the top level")
    return doc
