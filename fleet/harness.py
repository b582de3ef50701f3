"""The recording harness: run the real program under Pulumi's mock runtime and keep what it registered.

One harness for three users: `fleet plan`, the tests, and the offline policy run. The program runs
exactly as `pulumi up` would start it (`__main__.py`, config in PULUMI_CONFIG), the monitor records every
registration (type, name, parent, provider, inputs with secrets still marked), and the stack's exports
are captured from the root stack's outputs.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import runpy
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from fleet.mocks import FleetMocks, NameProblem
from fleet.stackfile import StackInput

STACK_TYPE = "pulumi:pulumi:Stack"
# How a secret travels on Pulumi's wire protocol (see pulumi.runtime.rpc).
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


class EmptyRenderError(RuntimeError):
    """The program registered nothing: a render that checks nothing must not pass."""


class MissingProviderError(RuntimeError):
    """A resource used a default provider although the stack disables them (as `pulumi up` would refuse)."""


class PhysicalNameError(ValueError):
    """Names the cloud's API would refuse: one line per resource, naming it, the name and the limit."""

    def __init__(self, problems: list[NameProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class ResourceOptions:
    """The options a registration carried that change how the engine treats the resource."""

    protect: bool = False
    ignore_changes: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()  # explicit dependencies (URNs), beyond those its inputs carry
    delete_before_replace: bool = False
    retain_on_delete: bool = False
    aliases: tuple[dict[str, Any], ...] = ()
    additional_secret_outputs: tuple[str, ...] = ()
    replace_on_changes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Only what differs from the defaults, in the wire's camelCase names."""
        shown = {
            "protect": self.protect,
            "ignoreChanges": list(self.ignore_changes),
            "dependsOn": list(self.depends_on),
            "deleteBeforeReplace": self.delete_before_replace,
            "retainOnDelete": self.retain_on_delete,
            "aliases": list(self.aliases),
            "additionalSecretOutputs": list(self.additional_secret_outputs),
            "replaceOnChanges": list(self.replace_on_changes),
        }
        return {k: v for k, v in shown.items() if v}


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
    options: ResourceOptions = ResourceOptions()
    # The name the cloud knows it by (given or auto-named); None for resources without one.
    physical_name: str | None = None
    # Per input, the URNs of the resources its value was computed from.
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class Rendering:
    """What one run of the program declared, with the queries tests and reports need."""

    project: str
    stack: str
    resources: list[RecordedResource]
    outputs: dict[str, Any]
    project_dir: Path | None = None
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

    def known_as(self, resource: RecordedResource) -> frozenset[str]:
        """Every URN the engine matches this resource with in a stack's state: its own, those its aliases
        name, and, as the engine derives them for a child, its parent's former URNs with its own type and
        name (a parent's alias carries its children along)."""
        parent = self._by_urn.get(resource.parent) if resource.parent else None
        parents = self.known_as(parent) if parent else frozenset({resource.parent or ""})
        names = {(resource.name, resource.type)}
        urns = {resource.urn}
        for alias in resource.options.aliases:
            if "urn" in alias:
                urns.add(alias["urn"])
                continue
            spec = alias.get("spec", {})
            name, type_ = spec.get("name") or resource.name, spec.get("type") or resource.type
            if spec.get("noParent"):
                urns.add(qualified_urn(self.stack, self.project, "", type_, name))
            elif spec.get("parentUrn"):
                urns.add(qualified_urn(self.stack, self.project, spec["parentUrn"], type_, name))
            else:
                names.add((name, type_))
        for former_parent in parents:
            for name, type_ in names:
                # A child named after its parent follows the parent's former name too (the engine's rule).
                if parent and former_parent != parent.urn and name.startswith(parent.name):
                    name = former_parent.rsplit("::", 1)[-1] + name[len(parent.name) :]
                urns.add(qualified_urn(self.stack, self.project, former_parent, type_, name))
        return frozenset(urns)


def qualified_urn(stack: str, project: str, parent: str, type_: str, name: str) -> str:
    """A URN as the engine makes it: the parent's whole qualified type chain, then `$` and the type (none
    for a resource at the top, under the stack)."""
    if parent and f"::{STACK_TYPE}::" not in parent:
        type_ = f"{parent.split('::')[2]}${type_}"
    return "urn:pulumi:" + "::".join([stack, project, type_, name])


def engine_urn(parent: str, type_: str, name: str) -> str:
    """A URN as the engine makes it (the SDK's MockMonitor keeps only the parent's last type, wrong two
    levels down, and qualifies top-level resources with the root stack's type: the engine does not)."""
    return qualified_urn(pulumi.get_stack(), pulumi.get_project(), parent, type_, name)


class DeclarationOrder:
    """The order the program constructs its resources in: deterministic, unlike the order their
    registrations reach the monitor (which waits on each resource's inputs).

    A stack transformation (the SDK runs them synchronously in every resource's constructor) records each
    resource's URN as it is built; it changes nothing.
    """

    def __init__(self) -> None:
        self.urns: dict[str, int] = {}
        self._by_resource: dict[int, str] = {}

    def transformation(self, args: pulumi.ResourceTransformationArgs) -> None:
        parent = args.opts.parent
        parent_urn = self._by_resource.get(id(parent), "") if parent is not None else ""
        urn = engine_urn(parent_urn, args.type_, args.name)
        self._by_resource[id(args.resource)] = urn
        self.urns.setdefault(urn, len(self.urns))

    def sort(self, records: list[RecordedResource]) -> list[RecordedResource]:
        last = len(self.urns)
        return sorted(records, key=lambda r: (self.urns.get(r.urn, last), r.urn))


class RecordingMonitor(MockMonitor):
    """A mock monitor that keeps every registration and the stack's outputs."""

    def __init__(self, mocks: FleetMocks, disabled_default_providers: set[str]) -> None:
        super().__init__(mocks)
        self.fleet_mocks = mocks
        self.records: list[RecordedResource] = []
        self.stack_outputs: dict[str, Any] = {}
        self._disabled = disabled_default_providers

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return engine_urn(parent, type_, name)

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
        property_dependencies = {
            # The SDK sends dependencies as sets: sorted, so two renders agree.
            key: tuple(sorted(deps.urns))
            for key, deps in sorted(request.propertyDependencies.items())
            if deps.urns
        }
        implicit = {urn for urns in property_dependencies.values() for urn in urns}
        declared = self.fleet_mocks.declared.get((request.type, request.name)) if request.custom else None
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
                options=ResourceOptions(
                    protect=bool(request.protect),
                    ignore_changes=tuple(request.ignoreChanges),
                    # Sorted: the SDK gathers a resource's dependencies as a set, in no stable order.
                    depends_on=tuple(sorted(u for u in request.dependencies if u not in implicit)),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    retain_on_delete=bool(request.retainOnDelete),
                    aliases=tuple(json_format.MessageToDict(a) for a in request.aliases),
                    additional_secret_outputs=tuple(request.additionalSecretOutputs),
                    replace_on_changes=tuple(request.replaceOnChanges),
                ),
                physical_name=declared.physical_name if declared else None,
                property_dependencies=property_dependencies,
            )
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        if f"::{STACK_TYPE}::" in request.urn:
            self.stack_outputs = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)


def render(stack: StackInput, program: Callable[[], object] | None = None) -> Rendering:
    """Run the stack's program (or `program`, e.g. one component alone) under mocks; return what it declared.

    Raises the program's own errors (a ConfigError for bad config), PhysicalNameError for names the cloud
    would refuse, and EmptyRenderError when nothing was registered.
    """
    disabled = _disabled_default_providers(stack.config)
    monitor = RecordingMonitor(FleetMocks(), disabled)
    main = stack.project_dir / "__main__.py"
    order = DeclarationOrder()
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
            pulumi.runtime.register_stack_transformation(order.transformation)
            if program is None:
                runpy.run_path(str(main), run_name="__main__")
            else:
                program()

        _sync_await(run_in_stack(run_program))
    if monitor.fleet_mocks.name_problems:
        raise PhysicalNameError(monitor.fleet_mocks.name_problems)
    if not monitor.records:
        raise EmptyRenderError(f"{stack.project}/{stack.stack}: the program registered no resources")
    return Rendering(
        stack.project, stack.stack, order.sort(monitor.records), monitor.stack_outputs, stack.project_dir
    )


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
    loop.set_exception_handler(_quiet_about_unretrieved)
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


def _quiet_about_unretrieved(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A failed registration's error reaches the render (the SDK re-raises it when the program ends); the
    copies its futures still hold would be printed again when collected, long after, as noise."""
    if "never retrieved" in str(context.get("message", "")):
        return
    loop.default_exception_handler(context)


@contextmanager
def _program_on_path(directory: str) -> Iterator[None]:
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        sys.path.remove(directory)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def redact(value: Any, root: Path | None = None) -> Any:
    """A JSON-ready copy with every secret shown as "[secret]", every unknown as "[unknown]", and assets
    and archives as their path (relative to `root`) and content digest, never an object's repr."""
    if is_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        return {k: redact(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, root) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire protocol carries every number as a float: 45 s, not 45.0 s
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, pulumi.output.Unknown):
        return "[unknown]"
    if isinstance(value, pulumi.Asset | pulumi.Archive):
        return describe_asset(value, root)
    if isinstance(value, pulumi.Resource):
        return f"[resource {type(value).__name__}]"
    raise TypeError(f"cannot show a {type(value).__name__} in a plan deterministically")


def describe_asset(value: pulumi.Asset | pulumi.Archive, root: Path | None) -> dict[str, Any]:
    """An asset or archive as what it holds: a file's path and sha256, a text's sha256, an archive's
    members."""
    if isinstance(value, pulumi.FileAsset | pulumi.FileArchive):
        path = Path(str(value.path))
        shown = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path)
        kind = "asset" if isinstance(value, pulumi.FileAsset) else "archive"
        return {kind: {"path": shown, "sha256": _content_digest(path)}}
    if isinstance(value, pulumi.StringAsset):
        return {"asset": {"sha256": hashlib.sha256(str(value.text).encode()).hexdigest()}}
    if isinstance(value, pulumi.RemoteAsset | pulumi.RemoteArchive):
        kind = "asset" if isinstance(value, pulumi.RemoteAsset) else "archive"
        return {kind: {"uri": str(value.uri)}}
    if isinstance(value, pulumi.AssetArchive):
        members = dict(sorted(value.assets.items()))
        return {"archive": {name: describe_asset(member, root) for name, member in members.items()}}
    raise TypeError(f"cannot show a {type(value).__name__} in a plan deterministically")


def _content_digest(path: Path) -> str:
    """A file's sha256; a directory's over its files' relative paths and contents, in sorted order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()
