"""The recording harness: run the real program under Pulumi's mock runtime and keep what it registered.

One harness for three users: `fleet plan`, the tests, and the offline policy run. The program runs
exactly as `pulumi up` would start it (`__main__.py`, config in PULUMI_CONFIG), the monitor records every
registration (type, name, parent, provider, inputs with secrets still marked), and the stack's exports
are captured from the root stack's outputs.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import runpy
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from fleet.mocks import FleetMocks
from fleet.stackfile import StackInput

STACK_TYPE = "pulumi:pulumi:Stack"
# How a secret travels on Pulumi's wire protocol (see pulumi.runtime.rpc).
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


class EmptyRenderError(RuntimeError):
    """The program registered nothing: a render that checks nothing must not pass."""


class MissingProviderError(RuntimeError):
    """A resource used a default provider although the stack disables them (as `pulumi up` would refuse)."""


@dataclass(frozen=True)
class RecordedResource:
    urn: str
    id: str | None
    type: str
    name: str
    parent: str | None
    provider: str | None
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any]  # the state the mocks answered with: inputs plus computed ids, ARNs, endpoints


@dataclass
class Rendering:
    """What one run of the program declared, with the queries tests and reports need."""

    project: str
    stack: str
    resources: list[RecordedResource]
    outputs: dict[str, Any]
    _by_urn: dict[str, RecordedResource] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_urn = {r.urn: r for r in self.resources}

    def of_type(self, resource_type: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == resource_type]

    def one(self, resource_type: str, name: str | None = None) -> RecordedResource:
        """The single resource of a type (and name); anything else fails naming what was there."""
        found = [r for r in self.of_type(resource_type) if name is None or r.name == name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(resource_type)]
            raise AssertionError(
                f"expected one {resource_type} named {name!r}, found {len(found)} among {names}"
            )
        return found[0]

    def get(self, urn: str) -> RecordedResource:
        return self._by_urn[urn]

    def by_id(self, resource_id: str) -> RecordedResource:
        """The resource a recorded input refers to by the id the mocks gave it."""
        found = [r for r in self.resources if r.id == resource_id]
        if len(found) != 1:
            raise AssertionError(f"expected one resource with id {resource_id!r}, found {len(found)}")
        return found[0]

    def children(self, parent: RecordedResource) -> list[RecordedResource]:
        return [r for r in self.resources if r.parent == parent.urn]

    def descendants(self, parent: RecordedResource) -> list[RecordedResource]:
        found: list[RecordedResource] = []
        for child in self.children(parent):
            found += [child, *self.descendants(child)]
        return found

    def top_component(self, resource: RecordedResource) -> RecordedResource | None:
        """The outermost component a resource sits in (None for one declared at the top level)."""
        top = None
        current = resource
        while current.parent and current.parent in self._by_urn:
            current = self._by_urn[current.parent]
            top = current
        return top


class RecordingMonitor(MockMonitor):
    """A mock monitor that keeps every registration and the stack's outputs."""

    def __init__(self, mocks: FleetMocks, disabled_default_providers: set[str]) -> None:
        super().__init__(mocks)
        self.records: list[RecordedResource] = []
        self.stack_outputs: dict[str, Any] = {}
        self._disabled = disabled_default_providers

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # The engine does not qualify a type with the root stack's: top-level URNs carry no `Stack$` prefix.
        if f"::{STACK_TYPE}::" in parent:
            parent = ""
        return super().make_urn(parent, type_, name)

    def RegisterResource(self, request: Any) -> Any:
        if request.type == STACK_TYPE:
            return super().RegisterResource(request)
        package = request.type.split(":", 1)[0]
        is_provider = request.type.startswith("pulumi:providers:")
        if request.custom and not is_provider and not request.provider and ({"*", package} & self._disabled):
            raise MissingProviderError(
                f"{request.type} {request.name!r} has no explicit provider, and the stack sets "
                "pulumi:disable-default-providers: pass the region's provider"
            )
        response = super().RegisterResource(request)
        self.records.append(
            RecordedResource(
                urn=response.urn,
                id=response.id or None,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                provider=request.provider.rsplit("::", 1)[0] if request.provider else None,
                custom=bool(request.custom),
                inputs=rpc.deserialize_properties(request.object),
                outputs=self.resources[response.urn].state,
            )
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        if f"::{STACK_TYPE}::" in request.urn:
            self.stack_outputs = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)


def render(stack: StackInput) -> Rendering:
    """Run the stack's program under mocks and return what it declared.

    Raises the program's own errors (a ConfigError for bad config) and EmptyRenderError when nothing
    was registered.
    """
    disabled = _disabled_default_providers(stack.config)
    monitor = RecordingMonitor(FleetMocks(), disabled)
    program = stack.project_dir / "__main__.py"
    with (
        _engine_environment(stack),
        _program_on_path(str(stack.project_dir)),
        _fresh_event_loop(),
        _cyclic_gc_paused(),
    ):
        pulumi.runtime.set_mocks(
            monitor.mocks, project=stack.project, stack=stack.stack, preview=False, monitor=monitor
        )
        # set_mocks leaves a root stack with its outputs already sealed; start from none, as `pulumi up` does.
        settings.ROOT.set(None)
        # Output tasks are tracked process-wide; a render that failed must not leave any for the next.
        settings.SETTINGS.outputs.clear()  # pyright: ignore[reportAttributeAccessIssue] (a contextvar-backed field)

        def run_program() -> None:
            runpy.run_path(str(program), run_name="__main__")

        _sync_await(run_in_stack(run_program))
    if not monitor.records:
        raise EmptyRenderError(f"{stack.project}/{stack.stack}: the program registered no resources")
    return Rendering(stack.project, stack.stack, list(monitor.records), monitor.stack_outputs)


def _disabled_default_providers(config: dict[str, str]) -> set[str]:

    raw = config.get("pulumi:disable-default-providers")
    return set(json.loads(raw)) if raw else set()


@contextmanager
def _engine_environment(stack: StackInput) -> Iterator[None]:
    """Config as the engine passes it to a program: PULUMI_CONFIG and PULUMI_CONFIG_SECRET_KEYS."""

    saved = {k: os.environ.get(k) for k in ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS")}
    os.environ["PULUMI_CONFIG"] = json.dumps(stack.config)
    os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(sorted(stack.secret_keys))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A render allocates SDK classes and resources in one burst that lives until it ends: the cyclic
    collector finds nothing to free there, and costs a fifth of the time. Reference counting still runs."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _fresh_event_loop() -> Iterator[None]:
    """Each render on its own loop: a failed render's stray tasks die with it instead of reaching the next."""
    loop = asyncio.new_event_loop()
    # The SDK hands each monitor call to the loop's executor. The mock monitor's calls are pure Python, so
    # more threads only contend for the GIL: prod renders in ~2.7 s with one worker, ~3.3 s with six.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1, thread_name_prefix="mock-monitor"))
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)


@contextmanager
def _program_on_path(directory: str) -> Iterator[None]:
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        sys.path.remove(directory)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def redact(value: Any) -> Any:
    """A JSON-ready copy with every secret shown as "[secret]" and every unknown as "[unknown]"."""
    if is_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire protocol carries every number as a float: 45 s, not 45.0 s
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, pulumi.output.Unknown):
        return "[unknown]"
    if isinstance(value, pulumi.Resource):
        return f"[resource {type(value).__name__}]"
    return str(value)
