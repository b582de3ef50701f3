"""Fixtures over the one recording harness that `fleet plan` uses.

- `render("prod")` renders a shipped stack; `render("prod", {"key": value})` renders it with config keys
  changed (None removes a key).
- `declare(program, stack="prod")` renders one capability alone: `program(config, stack_context,
  secrets)` runs in place of `__main__.py`, with the stack's validated config.
- `config_problems("prod", {...})` returns the lines a bad config is refused with.

A test that asks for `render` or `declare` and ends without a rendering that recorded resources fails: a
test must not pass having checked nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from components.core.config import ConfigError, StackSecrets
from components.core.context import StackContext
from components.stack import FleetConfig, load_stack_config, parse_stack_config
from fleet.harness import Rendering
from fleet.harness import render as harness_render
from fleet.stackfile import StackInput, load_stack

PROJECT_DIR = Path(__file__).resolve().parent.parent
# `moto_url`: moto in server mode, one for the session (tests/testkit/moto_server.py).
pytest_plugins = ["testkit.moto_server"]

RenderFn = Callable[..., Rendering]
Program = Callable[[FleetConfig, StackContext, StackSecrets], object]


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


def stack_input_for(stack: str, changes: dict[str, Any] | None = None) -> StackInput:
    loaded = load_stack(PROJECT_DIR, stack)
    return loaded.with_config(changes) if changes else loaded


@pytest.fixture
def stack_input() -> Callable[..., StackInput]:
    return stack_input_for


def problems_of(stack: str | StackInput, changes: dict[str, Any] | None = None) -> list[str]:
    """The lines the config model refuses a stack (with changes) with; fails if it is accepted."""
    given = stack if isinstance(stack, StackInput) else stack_input_for(stack, changes)
    if isinstance(stack, StackInput) and changes:
        given = stack.with_config(changes)
    with pytest.raises(ConfigError) as raised:
        parse_stack_config(given.config, set(given.secret_keys))
    return raised.value.problems


@pytest.fixture
def config_problems() -> Callable[..., list[str]]:
    return problems_of


# Shipped stacks render the same every time: each is rendered once per session and shared, with what it
# looked like then (a test that changes a shared rendering changes the next test's world).
_shipped: dict[str, tuple[Rendering, str]] = {}


def _fingerprint(rendering: Rendering) -> str:
    return repr((rendering.resources, rendering.outputs))


@pytest.fixture
def render() -> Iterator[RenderFn]:
    renderings: list[Rendering] = []

    def do_render(stack: str | StackInput, changes: dict[str, Any] | None = None) -> Rendering:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if isinstance(stack, StackInput):
                rendering = harness_render(stack.with_config(changes) if changes else stack)
            elif changes:
                rendering = harness_render(stack_input_for(stack, changes))
            else:
                if stack not in _shipped:
                    fresh = harness_render(stack_input_for(stack))
                    _shipped[stack] = (fresh, _fingerprint(fresh))
                rendering = _shipped[stack][0]
        renderings.append(rendering)
        return rendering

    yield do_render
    if not any(r.resources for r in renderings):
        pytest.fail("this test asked for a render but checked no recorded resources")
    for stack, (shared, fingerprint) in list(_shipped.items()):
        if any(r is shared for r in renderings) and _fingerprint(shared) != fingerprint:
            del _shipped[stack]  # the next test gets a fresh one
            pytest.fail(f"this test changed the shared rendering of {stack}: copy what it changes first")


@pytest.fixture
def declare() -> Iterator[Callable[..., Rendering]]:
    renderings: list[Rendering] = []

    def do_declare(program: Program, stack: str = "prod", changes: dict[str, Any] | None = None) -> Rendering:
        def run() -> None:
            config, secrets = load_stack_config()
            program(config, StackContext.create(config.tier, config.tags), secrets)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            rendering = harness_render(stack_input_for(stack, changes), program=run)
        renderings.append(rendering)
        return rendering

    yield do_declare
    if not any(r.resources for r in renderings):
        pytest.fail("this test asked for a declaration but checked no recorded resources")
