"""No silent truncation: an answer the engine breaks off reaches every client as an error, never as a
clean end. Clients: the OpenAI SDK straight to the agent, and the OpenAI SDK through the real LiteLLM
proxy (the gateway), which turns a stream that ends cleanly but early into `finish_reason: "stop"`.

Engines: real llama.cpp SIGKILLed mid-stream (the process exits, as on an OOM kill), and an engine on raw
sockets that breaks its answer off at a chosen point (connection closed, reset, half an event, silence,
a clean end without `[DONE]`), which a real engine cannot be made to do on cue. Each fault is repeated;
the count that matters is streams that ended without an error: it must be 0.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from testkit.litellm_proxy import running_litellm  # pyright: ignore[reportMissingImports]  (pytest pythonpath)

from .agent_testkit.breaking_engine import BreakingEngine, fault_prompt
from .agent_testkit.harness import API_KEY, FAST_PROBES, RunningAgent, llama_config, write_config
from .agent_testkit.net import free_port, wait_for
from .agent_testkit.sdk import Read, read_stream, start_stream

MASTER_KEY = "sk-test-master-truncation-0123"
REPEAT = 2
STALL_S = 1.0  # the agents' stream stall timeout here
STREAM_FAULTS = [("close", 3), ("reset", 3), ("partial", 3), ("stall", 3), ("clean", 3), ("close", 0)]
# Non-streaming: before the head (after 0) or mid-body (after 1).
WHOLE_FAULTS = [("close", 0), ("reset", 0), ("close", 1), ("reset", 1), ("stall", 1)]


@dataclass
class Fleet:
    breaking: RunningAgent  # in front of the breaking engine
    llama: RunningAgent  # in front of real llama.cpp
    gateway_url: str


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Fleet]:
    directory = tmp_path_factory.mktemp("truncation")
    with BreakingEngine("broken").running() as engine:
        attached = {
            "node": {"id": "node-broken", "accelerator": "cpu"},
            "engine": {"kind": "vllm", "mode": "attach", "models": ["broken"], "port": engine.port},
            "server": {"stream_stall_timeout_s": STALL_S},
            # Stalls are the proxy's to end here, not the wedge detector's.
            "probes": {**FAST_PROBES, "progress_window_s": 60.0},
        }
        (directory / "a").mkdir()
        (directory / "b").mkdir()
        llama = llama_config(tiny_model, server={"stream_stall_timeout_s": STALL_S})
        with (
            RunningAgent(write_config(directory / "a", attached)) as breaking,
            RunningAgent(write_config(directory / "b", llama)) as real,
        ):
            deployments = [
                {
                    "model_name": name,
                    "litellm_params": {
                        "model": f"openai/{name}",
                        "api_base": f"{agent.url}/v1",
                        "api_key": API_KEY,
                    },
                }
                for name, agent in (("broken", breaking), ("tiny", real))
            ]
            config = {
                "model_list": deployments,
                "router_settings": {"num_retries": 0},
                "litellm_settings": {"num_retries": 0, "request_timeout": 60},
                "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
            }
            with running_litellm(config, env={"LITELLM_MASTER_KEY": MASTER_KEY}) as proxy:
                breaking.wait_state("ready")
                real.wait_state("ready")
                yield Fleet(breaking, real, proxy.base_url)


def client_for(fleet: Fleet, path: str, agent: RunningAgent) -> openai.OpenAI:
    if path == "direct":
        return openai.OpenAI(base_url=f"{agent.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    return openai.OpenAI(base_url=f"{fleet.gateway_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)


def broken_count(agent: RunningAgent) -> float:
    text = agent.http.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fleet_agent_responses_broken_total{")
    )


@pytest.mark.parametrize("path", ["direct", "litellm"])
def test_an_intact_stream_ends_with_its_finish_reason(fleet: Fleet, path: str) -> None:
    """The yardstick: without a fault the same reader sees a whole answer."""
    client = client_for(fleet, path, fleet.breaking)
    for chat in (False, True):
        read = read_stream(start_stream(client, "broken", "hello", chat))
        assert read.error is None and read.finish_reasons == ["length"] and read.content_chunks == 8


@pytest.mark.parametrize("path", ["direct", "litellm"])
def test_every_broken_stream_raises_in_the_client(fleet: Fleet, path: str) -> None:
    client = client_for(fleet, path, fleet.breaking)
    before = broken_count(fleet.breaking)
    silent: list[str] = []
    for how, after in STREAM_FAULTS:
        for attempt in range(REPEAT):
            chat = attempt % 2 == 1
            try:
                read = read_stream(start_stream(client, "broken", fault_prompt(how, after), chat))
            except openai.APIError as exc:  # the gateway answers an error before the first chunk as HTTP 500
                read = Read(exc, [], 0)
            label = f"{how} after {after} ({'chat' if chat else 'completion'})"
            if read.error is None:
                silent.append(label)
            assert read.finish_reasons == [], f"{label}: a finish_reason the engine never sent"
            sent = min(after, 8)  # every whole event the engine sent reaches a direct client, and no more
            # (LiteLLM answers HTTP 500 instead of a stream when the break reaches it before its first read.)
            assert read.content_chunks == sent if path == "direct" else read.content_chunks <= sent, label
    assert silent == [], f"silent truncations: {silent}"
    assert broken_count(fleet.breaking) - before == len(STREAM_FAULTS) * REPEAT
    assert fleet.breaking.readyz() == 200  # broken answers are the engine's, not a reason to leave


def test_the_error_event_is_openais_streaming_error_shape(fleet: Fleet) -> None:
    client = client_for(fleet, "direct", fleet.breaking)
    read = read_stream(start_stream(client, "broken", fault_prompt("reset", 2), chat=False))
    assert isinstance(read.error, openai.APIError)
    assert read.error.body == {
        "message": read.error.message,
        "type": "server_error",
        "code": "engine_stream_broken",
    }
    assert "the answer is incomplete (node node-broken)" in read.error.message
    # And on the wire: the event, then the connection dropped before the chunked body's last chunk.
    body = {"model": "broken", "prompt": fault_prompt("close", 2), "stream": True}
    with (
        pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"),
        fleet.breaking.http.stream(
            "POST", "/v1/completions", json=body, headers=fleet.breaking.headers()
        ) as response,
    ):
        assert response.headers["transfer-encoding"] == "chunked"
        seen = b""
        try:
            for piece in response.iter_raw():
                seen += piece
        finally:
            assert seen.count(b"\n\n") == 3 and b'"code":"engine_stream_broken"' in seen
            assert b"[DONE]" not in seen and b'"finish_reason":"length"' not in seen


@pytest.mark.parametrize("path", ["direct", "litellm"])
def test_a_broken_whole_answer_is_a_502(fleet: Fleet, path: str) -> None:
    client = client_for(fleet, path, fleet.breaking)
    for how, after in WHOLE_FAULTS:
        for attempt in range(REPEAT):
            with pytest.raises(openai.APIStatusError) as refused:
                if attempt % 2:
                    client.chat.completions.create(
                        model="broken", messages=[{"role": "user", "content": fault_prompt(how, after)}]
                    )
                else:
                    client.completions.create(model="broken", prompt=fault_prompt(how, after))
            assert refused.value.status_code == 502, f"{how} after {after}: {refused.value}"
            if path == "direct":
                assert refused.value.body == {
                    "message": "engine unreachable",
                    "type": "server_error",
                    "code": "engine_unreachable",
                }


@pytest.mark.parametrize("path", ["direct", "litellm"])
def test_an_engine_killed_mid_stream_is_an_error_in_the_client(fleet: Fleet, path: str) -> None:
    """Real llama.cpp, SIGKILLed (what the OOM killer sends) once the answer has begun."""
    agent = fleet.llama
    client = client_for(fleet, path, agent)
    silent = 0
    for attempt in range(2):
        pid = agent.wait_state("ready", timeout=60)["engine"]["pid"]
        stream = start_stream(client, "tiny", "hello", chat=attempt == 1, max_tokens=3000)
        read = read_stream(stream, on_first_content=lambda pid=pid: os.kill(pid, signal.SIGKILL))
        assert read.content_chunks >= 1 and read.finish_reasons == []
        silent += read.error is None
        wait_for(lambda pid=pid: agent.status()["engine"]["pid"] not in (None, pid), 30, "a new engine")
    assert silent == 0


def test_a_stalled_whole_answer_is_a_502_once_the_wedge_restarts_the_engine(tmp_path: Path) -> None:
    """Non-streaming answers may be silent until done, so silence alone proves nothing: the engine-wide
    wedge check (requests waiting, no token anywhere) restarts the engine, and the request gets its 502."""
    from .agent_testkit.harness import FAKE_VLLM, FAST_SUPERVISOR

    model = "meta-llama/Llama-3.1-8B-Instruct"
    config = {
        "node": {"id": "vllm-node", "accelerator": "cpu"},
        "engine": {"kind": "vllm", "models": [model], "port": free_port(), "executable": FAKE_VLLM},
        "probes": FAST_PROBES,
        "supervisor": FAST_SUPERVISOR,
    }
    with RunningAgent(write_config(tmp_path, config)) as agent:
        agent.wait_state("ready")
        engine = f"http://127.0.0.1:{agent.config.engine.bind_port}"
        httpx.post(engine + "/fake/stall")
        client = openai.OpenAI(base_url=f"{agent.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
        with pytest.raises(openai.APIStatusError) as refused:
            client.completions.create(model=model, prompt="hello", max_tokens=4)
        assert refused.value.status_code == 502
        assert refused.value.body["code"] == "engine_unreachable"  # type: ignore[index]
        assert 'fleet_agent_engine_restarts_total{cause="wedged"} 1' in agent.http.get("/metrics").text
