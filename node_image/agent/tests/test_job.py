"""Job mode's pieces that need no engine: reading a batch's input, and its settings from the environment.
The whole path (Firestore, Cloud Storage, real llama.cpp, Cloud Run's retries) runs in tests/batch."""

from __future__ import annotations

import asyncio

import pytest

from fleet_agent.config import load_config
from fleet_agent.job import EXIT_BAD_CONFIG, BadInput, JobSettings, parse_items, run_job

ENV = {
    "FLEET_JOB_ID": "abc",
    "FLEET_JOB_NAME": "smoke",
    "FLEET_JOB_PROJECT": "acme",
    "FLEET_JOB_DATABASE": "fleet-dev-batch",
    "FLEET_JOB_BUCKET": "acme-dev-smoke",
    "FLEET_JOB_MAX_RETRIES": "2",
    "CLOUD_RUN_TASK_ATTEMPT": "2",
    "CLOUD_RUN_EXECUTION": "fleet-dev-smoke-x1y2z",
}


def test_items_become_engine_requests_for_the_served_model() -> None:
    text = (
        '{"id": "a", "prompt": "hi", "max_tokens": 3}\n'
        "\n"
        '{"messages": [{"role": "user", "content": "yo"}], "model": "other"}\n'
    )
    first, second = parse_items(text, "tiny")
    assert (first.id, first.path, first.body) == (
        "a",
        "/v1/completions",
        {"prompt": "hi", "max_tokens": 3, "model": "tiny"},
    )
    assert (second.id, second.path) == ("3", "/v1/chat/completions")  # the line number names it
    assert second.body["model"] == "tiny"  # the job serves one model, whatever a line asks for


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json\n", "line 1: not JSON (Expecting value)"),
        ("[1, 2]\n", "line 1: expected a JSON object"),
        ('{"max_tokens": 3}\n', "line 1: give exactly one of 'prompt' (completion) or 'messages' (chat)"),
        (
            '{"prompt": "a", "messages": []}\n',
            "line 1: give exactly one of 'prompt' (completion) or 'messages' (chat)",
        ),
        ('{"prompt": 3}\n', "line 1: 'prompt' must be a string"),
        ('{"prompt": "a", "stream": true}\n', "line 1: 'stream' is not supported in a batch"),
        ('{"id": "x", "prompt": "a"}\n{"id": "x", "prompt": "b"}\n', "line 2: id 'x' appears twice"),
        ("\n\n", "the input holds no item"),
    ],
)
def test_bad_input_is_named_by_line(text: str, problem: str) -> None:
    with pytest.raises(BadInput) as raised:
        parse_items(text, "tiny")
    assert str(raised.value) == problem


def test_settings_come_from_the_job_definition_and_cloud_runs_task_variables() -> None:
    settings = JobSettings.from_environ({**ENV, "UNRELATED": "x"})
    assert settings.attempt == 3 and settings.last_attempt  # attempt index 2 of maxRetries 2
    assert settings.document == "jobs/abc"
    assert settings.firestore_url == "https://firestore.googleapis.com"
    assert settings.metadata_host == "metadata.google.internal"
    assert not JobSettings.from_environ({**ENV, "CLOUD_RUN_TASK_ATTEMPT": "0"}).last_attempt


def test_missing_job_settings_exit_2_naming_them(tmp_path, capsys) -> None:
    config = load_config(
        None,
        {"FLEET_AGENT__ENGINE__KIND": "vllm", "FLEET_AGENT__ENGINE__MODELS": '["m"]'},
        load_keys=False,  # job mode runs no proxy: no API key needed
    )
    assert asyncio.run(run_job(config, {"FLEET_JOB_NAME": "smoke"})) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "fleet-agent: job: FLEET_JOB_ID: Field required" in err
    assert "fleet-agent: job: FLEET_JOB_BUCKET: Field required" in err
