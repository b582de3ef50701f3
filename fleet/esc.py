"""Offline evaluation of the ESC environments in `esc/`, enough to render a stack without Pulumi Cloud.

Follows ESC's rules for what it can: imports merged in order (later wins, objects merged deeply), then the
environment's own values; `${path}` interpolation; `fn::join`, `fn::toJSON`, `fn::toString`. What only
the ESC service can produce (`fn::secret` plaintext or ciphertext, `fn::open::*` dynamic logins and
secret stores) becomes a stand-in string marked secret, so a render needs no account and never holds a
real secret. Anything derived from a secret is secret too.

A stand-in is `esc-standin-` and a digest of where the value comes from (`<environment>:<path>`): opaque,
deterministic, and shaped to pass the clouds' rules on secrets (lengths, characters), since the real
value, which the program checks at `pulumi up`, is not visible here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet import yamlfile

STANDIN_PREFIX = "esc-standin-"


def standin(origin: str) -> str:
    """The stand-in for a secret from `origin` (`<environment>:<path>`, `<stack file>:<key>`)."""
    return f"{STANDIN_PREFIX}{hashlib.sha256(origin.encode()).hexdigest()[:20]}"


_INTERPOLATION = re.compile(r"\$\{([^}]+)\}")
_PATH_PART = re.compile(r"""\.?([A-Za-z_][\w-]*)|\[(\d+)\]|\["([^"]+)"\]""")


class EscError(ValueError):
    """An environment definition that cannot be evaluated; the message names the environment and path."""


@dataclass(frozen=True)
class Secret:
    """A value ESC would mark secret."""

    value: Any


@dataclass
class _Env:
    name: str
    imports: list[str]
    values: dict[str, Any]


@dataclass
class Evaluated:
    """An opened environment: plain values with secrets marked, and its pulumiConfig flattened."""

    values: dict[str, Any]
    config: dict[str, str] = field(default_factory=dict)
    secret_config_keys: set[str] = field(default_factory=set)


def environment_file(esc_dir: Path, name: str) -> Path:
    """`inference-fleet/prod` (project/environment) is defined in `esc/prod.yaml`."""
    return esc_dir / f"{name.rsplit('/', 1)[-1]}.yaml"


def open_environments(esc_dir: Path, names: list[str], project: str) -> Evaluated:
    """Evaluate the environments a stack imports, in order, as `pulumi` would when it opens them."""
    merged: dict[str, Any] = {}
    for name in names:
        merged = _merge(merged, _resolve_imports(esc_dir, name, seen=()))
    values = _Evaluator(merged).evaluate()
    result = Evaluated(values=values)
    for key, value in (values.get("pulumiConfig") or {}).items():
        full_key = key if ":" in key else f"{project}:{key}"
        result.config[full_key] = config_string(_strip_secrets(value))
        if _has_secret(value):
            result.secret_config_keys.add(full_key)
    return result


def config_string(value: Any) -> str:
    """Pulumi hands a program every config value as a string: objects, lists, numbers as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _load(esc_dir: Path, name: str) -> _Env:
    path = environment_file(esc_dir, name)
    if not path.is_file():
        raise EscError(f"environment {name}: no definition at {path}")
    try:
        doc = yamlfile.load(path) or {}
    except yamlfile.YamlFileError as e:
        raise EscError("\n".join(f"environment {name}: {line}" for line in e.lines)) from None
    ambiguous = [
        f"environment {name} ({path.name}): {yamlfile.display_path(at)}: {scalar.problem()}"
        for at, scalar in yamlfile.ambiguous_values(doc)
    ]
    if ambiguous:
        raise EscError("\n".join(ambiguous))
    if not isinstance(doc, dict) or set(doc) - {"imports", "values"}:
        raise EscError(f"environment {name} ({path}): top-level keys are imports and values")
    return _Env(name, list(doc.get("imports") or []), dict(doc.get("values") or {}))


def _resolve_imports(esc_dir: Path, name: str, seen: tuple[str, ...]) -> dict[str, Any]:
    if name in seen:
        raise EscError(f"environment {name}: import cycle {' -> '.join((*seen, name))}")
    env = _load(esc_dir, name)
    merged: dict[str, Any] = {}
    for imported in env.imports:
        merged = _merge(merged, _resolve_imports(esc_dir, imported, (*seen, name)))
    # Tag dynamic values with their environment so stand-ins say where they came from.
    return _merge(merged, _tag_origin(env.values, env.name))


def _tag_origin(node: Any, env_name: str) -> Any:
    if isinstance(node, dict):
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "fn::secret" or key.startswith("fn::open::"):
                return {key: arg, "__env__": env_name}
        return {k: _tag_origin(v, env_name) for k, v in node.items()}
    if isinstance(node, list):
        return [_tag_origin(v, env_name) for v in node]
    return node


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not _is_function(value):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _is_function(node: Any) -> bool:
    return isinstance(node, dict) and any(k.startswith("fn::") for k in node)


class _Evaluator:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.done: dict[str, Any] = {}
        self.active: set[str] = set()

    def evaluate(self) -> dict[str, Any]:
        return {key: self.top(key, key) for key in self.root}

    def top(self, key: str, at: str) -> Any:
        """A top-level value, evaluated once; references may reach it before its turn."""
        if key not in self.done:
            if key in self.active:
                raise EscError(f"{at}: {key} refers to itself")
            self.active.add(key)
            self.done[key] = self.node(self.root[key], key)
            self.active.discard(key)
        return self.done[key]

    def node(self, node: Any, path: str) -> Any:
        if isinstance(node, dict):
            if _is_function(node):
                return self.function(node, path)
            return {k: self.node(v, f"{path}.{k}") for k, v in node.items()}
        if isinstance(node, list):
            return [self.node(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, str):
            return self.interpolate(node, path)
        return node

    def function(self, node: dict[str, Any], path: str) -> Any:
        env = node.get("__env__", "?")
        name = next(k for k in node if k.startswith("fn::"))
        arg = node[name]
        if name == "fn::secret":
            return Secret(standin(f"{env}:{path}"))
        if name.startswith("fn::open::"):
            return _OpenedStandIn(f"{env}:{path}")
        if name == "fn::join":
            sep, items = self.node(arg, path)
            parts = [_strip_secrets(i) for i in items]
            joined = _strip_secrets(sep).join(str(p) for p in parts)
            return Secret(joined) if _has_secret([sep, items]) else joined
        if name == "fn::toJSON":
            value = self.node(arg, path)
            text = json.dumps(_strip_secrets(value), separators=(",", ":"))
            return Secret(text) if _has_secret(value) else text
        if name == "fn::toString":
            value = self.node(arg, path)
            text = _strip_secrets(value)
            text = text if isinstance(text, str) else json.dumps(text)
            return Secret(text) if _has_secret(value) else text
        raise EscError(
            f"{path}: {name} cannot be evaluated offline; supported: fn::secret, fn::open::*, "
            "fn::join, fn::toJSON, fn::toString"
        )

    def interpolate(self, text: str, path: str) -> Any:
        matches = list(_INTERPOLATION.finditer(text))
        if not matches:
            return text
        if len(matches) == 1 and matches[0].group(0) == text:
            return self.reference(matches[0].group(1), path)
        secret = False
        out = text
        for m in matches:
            value = self.reference(m.group(1), path)
            secret = secret or _has_secret(value)
            plain = _strip_secrets(value)
            out = out.replace(m.group(0), plain if isinstance(plain, str) else json.dumps(plain), 1)
        return Secret(out) if secret else out

    def reference(self, ref: str, at: str) -> Any:
        parts = _parse_path(ref, at)
        key = str(parts[0])
        if key not in self.root:
            raise EscError(f"{at}: ${{{ref}}} refers to {key!r}, which no imported environment defines")
        value = self.top(key, at)
        walked = key
        for part in parts[1:]:
            walked += f"[{part}]" if isinstance(part, int) else f".{part}"
            if isinstance(value, _OpenedStandIn):
                value = value.child(part)
                continue
            secret = isinstance(value, Secret)
            inner = value.value if isinstance(value, Secret) else value
            try:
                value = inner[part]
            except (KeyError, IndexError, TypeError):
                raise EscError(f"{at}: ${{{ref}}}: nothing at {walked}") from None
            if secret and not isinstance(value, Secret):
                value = Secret(value)
        return value.resolve() if isinstance(value, _OpenedStandIn) else value


@dataclass(frozen=True)
class _OpenedStandIn:
    """The output of an `fn::open::*` provider: any property read from it is a secret stand-in."""

    origin: str

    def child(self, part: str | int) -> _OpenedStandIn:
        return _OpenedStandIn(f"{self.origin}.{part}")

    def resolve(self) -> Secret:
        return Secret(standin(self.origin))


def _parse_path(ref: str, at: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    while pos < len(ref):
        m = _PATH_PART.match(ref, pos)
        if m is None or (pos == 0 and m.group(0).startswith(".")):
            raise EscError(f"{at}: cannot read the path in ${{{ref}}}")
        name, index, quoted = m.groups()
        parts.append(int(index) if index is not None else (name or quoted))
        pos = m.end()
    if not parts:
        raise EscError(f"{at}: empty interpolation ${{}}")
    return parts


def _has_secret(value: Any) -> bool:
    if isinstance(value, Secret | _OpenedStandIn):
        return True
    if isinstance(value, dict):
        return any(_has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secret(v) for v in value)
    return False


def _strip_secrets(value: Any) -> Any:
    if isinstance(value, Secret):
        return _strip_secrets(value.value)
    if isinstance(value, _OpenedStandIn):
        return standin(value.origin)
    if isinstance(value, dict):
        return {k: _strip_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_secrets(v) for v in value]
    return value
