"""placeholder"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(client: Any, args: argparse.Namespace) -> int:
    return 0
