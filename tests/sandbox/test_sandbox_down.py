"""`fleet sandbox down` leaves no process and no mount behind, and says so when run again. A sandbox of its
own (one node): `down` ends it, so it cannot share the drills' sandbox in a shuffled order."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from fleet.sandbox.juicefs import mounts_under
from fleet.sandbox.state import marked_processes

from .conftest import Sandbox, running_sandbox


@pytest.fixture(scope="module")
def one_node_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from running_sandbox(tmp_path_factory, "dev", "--nodes", "1")


def test_down_leaves_no_process_and_no_mount(one_node_sandbox: Sandbox) -> None:
    sandbox = one_node_sandbox
    assert marked_processes(sandbox.dir), "the sandbox's processes carry its marker"
    assert mounts_under(sandbox.dir), "each node mounts the model store"
    done = sandbox.fleet("down", timeout=180)
    assert done.returncode == 0, done.stderr
    assert marked_processes(sandbox.dir) == []
    assert mounts_under(sandbox.dir) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(sandbox.base_url + "/models", timeout=5)
    assert "nothing runs" in sandbox.fleet("down", timeout=60).stdout
