"""The layout every capability builds on: a short composition root, one package per capability, and no
capability reaching into another's internals (only what its package publishes, and `components.core`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "components"
CAPABILITIES = sorted(
    p.name for p in COMPONENTS.iterdir() if (p / "__init__.py").is_file() and p.name != "core"
)


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_main_only_composes_and_stays_short():
    """Short in statements, not lines: each capability's keyword arguments take a line each."""
    tree = ast.parse((ROOT / "__main__.py").read_text())
    assert len(tree.body) <= 40
    logic = [type(node).__name__ for node in tree.body if not isinstance(node, COMPOSING)]
    assert not logic, f"__main__.py only imports, assigns and calls; it holds {logic}"
    assert not (COMPONENTS / "config.py").exists()


COMPOSING = (ast.Import, ast.ImportFrom, ast.Assign, ast.AugAssign, ast.Expr)


def test_every_capability_declare_takes_only_the_stack_positionally():
    """`declare(stack, *, ...)`: a dozen positional arguments in an order of each capability's own would
    let two swapped arguments of one type pass unnoticed."""
    found = {}
    for capability in CAPABILITIES:
        tree = ast.parse((COMPONENTS / capability / "__init__.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "declare":
                found[capability] = node
    assert set(found) == set(CAPABILITIES), f"without a declare(): {sorted(set(CAPABILITIES) - set(found))}"
    for capability, declare in found.items():
        positional = [a.arg for a in declare.args.posonlyargs + declare.args.args]
        assert positional == ["stack"], f"{capability}.declare takes {positional} positionally"
        assert declare.args.vararg is None and declare.args.kwarg is None, capability


def test_capabilities_are_packages_with_a_config_section():
    assert {"network", "data_tier", "control_plane", "failover", "gpu_pools", "batch"} <= set(CAPABILITIES)
    for capability in CAPABILITIES:
        assert (COMPONENTS / capability / "config.py").is_file(), capability


def test_no_capability_imports_another_capabilitys_internals():
    offenders = []
    for capability in CAPABILITIES:
        for path in (COMPONENTS / capability).rglob("*.py"):
            for module in imported_modules(path):
                parts = module.split(".")
                if parts[0] != "components" or len(parts) < 3:
                    continue  # not ours, or a package's published API (components.<capability>)
                if parts[1] not in ("core", capability):
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, offenders


def test_core_depends_on_no_capability():
    for path in (COMPONENTS / "core").rglob("*.py"):
        for module in imported_modules(path):
            parts = module.split(".")
            assert parts[0] != "components" or parts[1] == "core", f"{path} imports {module}"


def test_the_catalogs_load_without_a_cloud_sdk():
    """The policy pack reads them in its own process at every preview: they must stay plain data."""
    for path in (COMPONENTS / "core" / "catalog").glob("*.py"):
        assert not any(m.startswith("pulumi") for m in imported_modules(path)), path


def component_tokens() -> dict[str, str]:
    """Each ComponentResource's type token, by `<package>.<class>` of the class that registers it."""
    found: dict[str, str] = {}
    for path in sorted(COMPONENTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "__init__"
                    and isinstance(call.func.value, ast.Call)
                    and isinstance(call.func.value.func, ast.Name)
                    and call.func.value.func.id == "super"
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                    and str(call.args[0].value).startswith("inference-fleet:")
                ):
                    found[f"{path.relative_to(COMPONENTS).parts[0]}.{node.name}"] = str(call.args[0].value)
    return found


def test_component_type_tokens_name_their_package_and_class():
    """`inference-fleet:<package>:<Class>`: a URN then says where its component lives (renames keep the
    old URNs with `aliases`, see test_golden_urns.py)."""
    tokens = component_tokens()
    assert len(tokens) >= 10, tokens
    wrong = {
        where: token
        for where, token in tokens.items()
        if token != f"inference-fleet:{where.replace('.', ':')}"
    }
    assert not wrong, wrong


MAX_LINES = 600


def test_no_module_of_the_program_or_the_code_it_deploys_is_over_600_lines():
    """A file that long holds several components (or a handler and its settings and its report): one
    thing per file keeps each readable, and two people's changes apart."""
    long = {
        str(path.relative_to(ROOT)): n
        for folder in (COMPONENTS, ROOT / "functions")
        for path in folder.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
