"""Read a stack the way `pulumi` assembles its config, without the CLI or Pulumi Cloud.

Order, later wins: Pulumi.yaml declared defaults, the ESC environments the stack file imports (opened
offline from `esc/`), then the stack file's own `config:`. `secure:` values, like ESC secrets, become
stand-ins marked secret.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from fleet.esc import STANDIN_PREFIX, EscError, config_string, open_environments


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

    config: dict[str, str] = {}
    secret_keys: set[str] = set()
    for key, declaration in (project_doc.get("config") or {}).items():
        full_key = key if ":" in key else f"{project}:{key}"
        if isinstance(declaration, dict) and "default" in declaration:
            config[full_key] = config_string(declaration["default"])
        elif not isinstance(declaration, dict):
            config[full_key] = config_string(declaration)

    environments = stack_doc.get("environment") or []
    if not isinstance(environments, list):
        raise StackFileError(f"{stack_path.name}: environment: is a list of ESC environment names")
    if environments:
        try:
            opened = open_environments(project_dir / "esc", environments, project)
        except EscError as e:
            raise StackFileError(f"{stack_path.name}: {e}") from None
        config.update(opened.config)
        secret_keys |= opened.secret_config_keys

    for key, value in (stack_doc.get("config") or {}).items():
        full_key = key if ":" in key else f"{project}:{key}"
        secret_keys.discard(full_key)
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[full_key] = f"{STANDIN_PREFIX}{stack_path.name}:{key}"
            secret_keys.add(full_key)
        else:
            config[full_key] = config_string(value)
    return StackInput(project, stack, project_dir, config, frozenset(secret_keys))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise StackFileError(f"{path}: not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise StackFileError(f"{path.name}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(doc, dict):
        raise StackFileError(f"{path.name}: expected a mapping at the top level")
    return doc
