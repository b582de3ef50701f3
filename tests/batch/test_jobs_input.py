"""`fleet jobs submit` checks its input (JSON Lines in the job's schema, the parser the job reads it with)
before any API call, and a network failure names the host it could not reach."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.cli import main as fleet
from node_image.agent.tests.agent_testkit.net import free_port

PROJECT_DIR = Path(__file__).resolve().parents[2]


def submit(capsys, path: Path) -> tuple[int, str]:
    code = fleet(
        ["jobs", "submit", "--stack", "dev", "--job", "smoke", "--input", str(path), "-C", str(PROJECT_DIR)]
    )
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"prompt": "hi"}\n{"prompt": 3}\n', "line 2: 'prompt' must be a string"),
        ('{"prompt": "hi", "messages": [{"role": "user", "content": "x"}]}\n', "line 1: give exactly one of"),
        ('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n', "line 2: id 'a' appears twice"),
        ('{"prompt": "hi", "stream": true}\n', "line 1: 'stream' is not supported in a batch"),
        ("\n\n", "the input holds no item"),
    ],
    ids=["prompt-type", "both-kinds", "duplicate-id", "stream", "empty"],
)
def test_an_input_the_job_would_refuse_is_refused_before_anything_is_sent(
    capsys, tmp_path: Path, monkeypatch, text: str, problem: str
) -> None:
    # Endpoints nobody listens on: a refused input must not get as far as a request.
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("FLEET_FIRESTORE_URL", dead)
    monkeypatch.setenv("FLEET_CLOUDTASKS_URL", dead)
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.unused")
    path = tmp_path / "in.jsonl"
    path.write_text(text)
    code, err = submit(capsys, path)
    assert code == 2
    assert err.startswith(f"error: --input {path}: {problem}")


def test_a_network_error_names_the_host_it_could_not_reach(capsys, tmp_path: Path, monkeypatch) -> None:
    port = free_port()
    monkeypatch.setenv("FLEET_FIRESTORE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.unused")
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "hi"}\n')
    code, err = submit(capsys, path)
    assert code == 3
    assert err.startswith("error: cannot reach 127.0.0.1: ConnectError")
