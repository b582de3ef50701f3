"""Each deployed function's archive carries every module its code imports from its own package (the
settings contracts included): a module left out would fail the function at its first import, which no
render and no local test would show (locally the whole repository is importable)."""

from __future__ import annotations

import ast
from pathlib import Path

import pulumi

from components.core.catalog.resource_types import LAMBDA_FUNCTION
from fleet.harness import Rendering


def archives(rendering: Rendering) -> dict[str, dict[str, str]]:
    """Per function package, its archive's members (name in the archive -> file)."""
    found: dict[str, dict[str, str]] = {}
    for function in rendering.of_type(LAMBDA_FUNCTION):
        code = function.inputs["code"]
        assert isinstance(code, pulumi.AssetArchive), function.name
        members = {name: str(asset.path) for name, asset in code.assets.items()}
        package = function.inputs["handler"].split(".")[0]
        found.setdefault(package, members)
    return found


def imports(source: str) -> tuple[set[str], set[str]]:
    """The modules a module imports from its own package (relative: the package ships alone), and the
    top-level packages it imports absolutely."""
    own: set[str] = set()
    absolute: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            own |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            absolute.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            absolute |= {alias.name.split(".")[0] for alias in node.names}
    return own, absolute


def test_every_archive_carries_what_its_modules_import(render) -> None:
    found = archives(render("prod"))
    assert {"failover_prober", "fleet_controller", "store_format", "db_bootstrap"} <= set(found)
    for package, members in found.items():
        modules = {name.removeprefix(f"{package}/").removesuffix(".py") for name in members}
        assert "handler" in modules and "settings" in modules, package
        for name, path in members.items():
            own, absolute = imports(Path(path).read_text())
            assert not own - modules, f"{name} imports {sorted(own - modules)}, which its archive lacks"
            # Nothing of this repository outside the package: the Lambda has only the archive.
            assert not absolute & {"functions", "components", "fleet", package}, (name, absolute)
