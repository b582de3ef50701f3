"""`pytest --random-order[=SEED]`: the suite in a shuffled order, to find tests that pass only in the order
they are written. Modules are shuffled, then the tests inside each module; a module's tests stay together,
so its module-scoped fixtures (a LiteLLM proxy, a llama.cpp server) still start once. The seed is printed
first and last; `--random-order=SEED` repeats an order.

Here, at the root, so that it applies to both test trees (tests/ and node_image/agent/tests/). Also the
one setting every in-process import of LiteLLM needs here: its packaged model cost map, as the gateway's
task definition sets it (components/control_plane/gateway_service.py). Without it LiteLLM's import fetches
the map from GitHub, and on this offline machine the warning it logs imports more of LiteLLM from inside
its logging filter: under load that import met another thread's (a `_DeadlockError` at collection).
"""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

SEED = pytest.StashKey[int]()


def seed(text: str) -> int:
    return random.randrange(10**6) if text == "random" else int(text)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--random-order",
        nargs="?",
        type=seed,
        const="random",
        default=None,
        metavar="SEED",
        help="run modules, and the tests in each, in a shuffled order (a new seed, or SEED to repeat one)",
    )


def pytest_configure(config: pytest.Config) -> None:
    given = config.getoption("--random-order")
    if given is not None:
        config.stash[SEED] = seed(given) if isinstance(given, str) else given


def _seed_line(config: pytest.Config) -> str | None:
    chosen = config.stash.get(SEED, None)
    return None if chosen is None else f"random order: seed {chosen} (repeat it with --random-order={chosen})"


def pytest_report_header(config: pytest.Config) -> str | None:
    return _seed_line(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = config.stash.get(SEED, None)
    if chosen is None:
        return
    shuffle = random.Random(chosen).shuffle
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    groups = list(modules.values())
    shuffle(groups)
    for group in groups:
        shuffle(group)
    items[:] = [item for group in groups for item in group]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if line := _seed_line(config):
        terminalreporter.write_line(line)
