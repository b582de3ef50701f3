"""Python code the program deploys to Lambda, from `functions/<package>/`: the package's modules, shipped
under the package's name so the handler is `<package>.handler.handle` and relative imports work."""

from __future__ import annotations

from pathlib import Path

import pulumi

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
LAMBDA_RUNTIME = "python3.12"


def function_code(package: str) -> pulumi.AssetArchive:
    """The package's `.py` files (nothing else: no caches, no tests) as a Lambda deployment archive."""
    directory = FUNCTIONS_DIR / package
    modules = sorted(directory.glob("*.py"))
    if not modules:
        raise FileNotFoundError(f"no Python modules in {directory}")
    return pulumi.AssetArchive({f"{package}/{m.name}": pulumi.FileAsset(str(m)) for m in modules})


def handler(package: str) -> str:
    return f"{package}.handler.handle"
