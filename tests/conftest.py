"""Fixtures over the one recording harness that `fleet plan` uses.

`render("prod")` renders a shipped stack; `render("prod", {"key": value})` renders it with config keys
changed (None removes a key). A test that asks for `render` and ends without a rendering that recorded
resources fails: a test must not pass having checked nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.harness import Rendering
from fleet.harness import render as harness_render
from fleet.stackfile import StackInput, load_stack

PROJECT_DIR = Path(__file__).resolve().parent.parent

RenderFn = Callable[..., Rendering]


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture
def stack_input() -> Callable[..., StackInput]:
    def make(stack: str, changes: dict[str, Any] | None = None) -> StackInput:
        loaded = load_stack(PROJECT_DIR, stack)
        return loaded.with_config(changes) if changes else loaded

    return make


_shipped: dict[str, Rendering] = {}


@pytest.fixture
def render() -> Iterator[RenderFn]:
    renderings: list[Rendering] = []

    def do_render(stack: str | StackInput, changes: dict[str, Any] | None = None) -> Rendering:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if isinstance(stack, StackInput):
                rendering = harness_render(stack.with_config(changes) if changes else stack)
            elif changes:
                rendering = harness_render(load_stack(PROJECT_DIR, stack).with_config(changes))
            else:
                # Shipped stacks render the same every time: render each once per session.
                if stack not in _shipped:
                    _shipped[stack] = harness_render(load_stack(PROJECT_DIR, stack))
                rendering = _shipped[stack]
        renderings.append(rendering)
        return rendering

    yield do_render
    if not any(r.resources for r in renderings):
        pytest.fail("this test asked for a render but checked no recorded resources")
