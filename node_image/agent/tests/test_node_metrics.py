"""The node's fleet metrics (fleet_agent.fleet_metrics): what a window holds and how it is put to CloudWatch
(shape and API limits, on a given clock), and end to end: a real agent over real llama.cpp, with a queue
at the engine, publishes to CloudWatch (moto in server mode, through botocore with the instance role's
credentials from the fake IMDS) in the declared namespace, names, dimensions and units, and the same
series are on its /metrics."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet_agent import fleet_metrics as fm
from fleet_agent.engines.base import EngineLoad
from fleet_agent.node_metrics import (
    MAX_DATUMS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    MAX_VALUES_PER_DATUM,
    NodeMetrics,
    batches,
)

from .agent_testkit.fake_autoscaling import moto_client
from .agent_testkit.fake_gpu import A10G_MEMORY, FakeGpuBackend
from .agent_testkit.fake_metadata import FakeImds
from .agent_testkit.harness import API_KEY, RunningAgent, completion, llama_config, write_config
from .agent_testkit.net import serving, wait_for

T0 = 1_800_000_000.0  # a multiple of 10 and 60: windows start on it


def node(**overrides: Any) -> NodeMetrics:
    return NodeMetrics(pool="llama-8b", model="meta-llama/Llama-3.1-8B-Instruct", concurrency=4, **overrides)


def by_name(datums: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for datum in datums:
        found.setdefault(datum["MetricName"], []).append(datum)
    return found


def counted(datums: list[dict[str, Any]]) -> dict[float, float]:
    return {v: c for d in datums for v, c in zip(d["Values"], d["Counts"], strict=True)}


def test_a_window_is_put_as_the_contract_declares() -> None:
    metrics = node()
    for second in range(10):
        engine = EngineLoad(
            running=3, waiting=second % 2, generated_tokens=100 + 50 * second, kv_cache_usage=0.5
        )
        metrics.sample(T0 + second, ready=True, peak=3 + second % 2, engine=engine, gpu=(37.0, 8e9))
    metrics.request_finished(
        T0 + 3.5, route="/v1/chat/completions", status=200, latency_s=1.2345, first_token_s=0.2
    )
    metrics.request_finished(T0 + 4.5, route="/v1/completions", status=200, latency_s=0.5, first_token_s=None)
    metrics.request_finished(T0 + 5.5, route="/v1/models", status=200, latency_s=0.01, first_token_s=None)
    metrics.request_finished(
        T0 + 6.5, route="/v1/completions", status=503, latency_s=0.01, first_token_s=None
    )
    metrics.node_ready(T0 + 7, 181.44)

    assert metrics.take_finished(T0 + 9.9) == []  # the window is still open
    (window,) = metrics.take_finished(T0 + 10)
    datums = metrics.datums(window)
    for datum in datums:
        assert datum["Dimensions"] == [
            {"Name": "Pool", "Value": "llama-8b"},
            {"Name": "Model", "Value": "meta-llama/Llama-3.1-8B-Instruct"},
        ]
        assert datum["Timestamp"] == datetime.fromtimestamp(T0, UTC)
        assert datum["StorageResolution"] == 1
        assert datum["Unit"] == fm.UNITS[datum["MetricName"]]
    found = by_name(datums)
    assert set(found) == set(fm.UNITS)
    assert counted(found[fm.LOAD]) == {3.0: 5, 4.0: 5}
    assert counted(found[fm.REQUESTS_WAITING]) == {0.0: 5, 1.0: 5}
    assert counted(found[fm.REQUESTS_IN_FLIGHT]) == {3.0: 10}
    assert counted(found[fm.KV_CACHE_USAGE]) == {50.0: 10}
    # Only inference answered 2xx; the time to first token only where the answer streamed.
    assert counted(found[fm.REQUEST_LATENCY]) == {0.5: 1, 1.234: 1}
    assert counted(found[fm.TIME_TO_FIRST_TOKEN]) == {0.2: 1}
    # 450 tokens over nine readings after the first, in a 10 s window.
    assert counted(found[fm.TOKENS_PER_SECOND]) == {45.0: 1}
    assert counted(found[fm.GPU_UTILIZATION]) == {37.0: 10}
    assert counted(found[fm.NODE_READY_SECONDS]) == {181.4: 1}


def test_a_node_that_takes_no_request_publishes_no_load() -> None:
    metrics = node()
    metrics.sample(T0, ready=False, peak=0, engine=None, gpu=(0.0, 1e9))
    metrics.sample(T0 + 1, ready=True, peak=0, engine=None, gpu=(0.0, 1e9))
    found = by_name(metrics.datums(metrics.take_finished(T0 + 10)[0]))
    assert counted(found[fm.LOAD]) == {0.0: 1}  # the ready second only: a booting node is not idle capacity
    assert counted(found[fm.GPU_MEMORY_USED]) == {1e9: 2}
    assert fm.TOKENS_PER_SECOND not in found and fm.KV_CACHE_USAGE not in found  # the engine said nothing


def test_without_an_engine_queue_what_exceeds_the_concurrency_waits() -> None:
    """Ollama reports no queue: it queues what exceeds OLLAMA_NUM_PARALLEL (the node's concurrency)."""
    metrics = node()
    metrics.sample(T0, ready=True, peak=7, engine=EngineLoad())
    metrics.sample(T0 + 1, ready=True, peak=2, engine=None)
    found = by_name(metrics.datums(metrics.take_finished(T0 + 10)[0]))
    assert counted(found[fm.REQUESTS_IN_FLIGHT]) == {4.0: 1, 2.0: 1}
    assert counted(found[fm.REQUESTS_WAITING]) == {3.0: 1, 0.0: 1}


def test_an_engine_restart_is_not_a_burst_of_tokens() -> None:
    metrics = node()
    for second, tokens in enumerate([1000, 1200, 5, 25]):  # the counter starts again after a restart
        metrics.sample(T0 + second, ready=True, peak=1, engine=EngineLoad(generated_tokens=tokens))
    found = by_name(metrics.datums(metrics.take_finished(T0 + 10)[0]))
    assert counted(found[fm.TOKENS_PER_SECOND]) == {22.0: 1}  # (200 + 20) / 10 s


def test_many_distinct_values_stay_within_the_api_limits() -> None:
    metrics = node()
    for i in range(400):
        metrics.request_finished(
            T0 + 1, route="/v1/completions", status=200, latency_s=0.1 + i / 1000, first_token_s=None
        )
    datums = by_name(metrics.datums(metrics.take_finished(T0 + 10)[0]))[fm.REQUEST_LATENCY]
    assert [len(d["Values"]) for d in datums] == [MAX_VALUES_PER_DATUM, MAX_VALUES_PER_DATUM, 100]
    assert sum(sum(d["Counts"]) for d in datums) == 400
    # Small datums: the 1,000-datum cap binds; full ones: the 1 MB cap does.
    small = [dict(datums[0], Values=[1.0], Counts=[1.0])] * (MAX_DATUMS_PER_REQUEST + 1)
    assert [len(b) for b in batches(small)] == [MAX_DATUMS_PER_REQUEST, 1]
    full = [datums[0]] * 400
    sent = list(batches(full))
    assert sum(len(b) for b in sent) == 400 and len(sent) > 1
    assert all(len(json.dumps(b, default=str)) < MAX_REQUEST_BYTES for b in sent)


# --- end to end -------------------------------------------------------------------------------------------


# llama.cpp shifting its context instead of ending a full one: a stream without max_tokens never ends.
ENDLESS = {"args": ["--context-shift"]}


class HeldStream:
    """A streaming completion that runs until `release()` hangs up (the agent then stops the engine's work
    for it), whatever the machine's speed: the engine must run with ENDLESS."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.first_chunk = threading.Event()
        self.done = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        body = completion(max_tokens=-1, stream=True)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        try:
            with httpx.stream(
                "POST", self.url + "/v1/completions", json=body, headers=headers, timeout=60
            ) as answer:
                for _ in answer.iter_raw():
                    self.first_chunk.set()
                    if self._release.is_set():
                        return
        finally:
            self.done.set()

    def release(self) -> None:
        self._release.set()
        self._thread.join(30)


def ask(url: str, *, stream: bool, results: list[int]) -> threading.Thread:
    def run() -> None:
        with httpx.stream(
            "POST",
            url + "/v1/completions",
            json=completion(max_tokens=8, stream=stream),
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=120,
        ) as answer:
            answer.read()
            results.append(answer.status_code)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def scraped(text: str, name: str) -> float:
    """A sample's value from the agent's /metrics (the one series of `name`)."""
    (line,) = [
        line for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")
    ]
    return float(line.rsplit(" ", 1)[1])


@pytest.fixture
def cloudwatch(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", moto_url)
    yield moto_client("cloudwatch", moto_url)


@pytest.mark.usefixtures("instance_role_only")
def test_the_agents_metrics_reach_cloudwatch_in_the_declared_shape(
    tmp_path: Path, tiny_model: Path, cloudwatch: Any
) -> None:
    pool = "metrics-test"  # a pool of its own in the shared moto
    imds = FakeImds(region="us-east-1")
    with serving(imds) as metadata:
        config = llama_config(
            tiny_model,
            node={"accelerator": "gpu", "pool": pool},
            engine={"parallel": 1, **ENDLESS},  # one slot: a second request waits in llama.cpp's queue
            preemption={"aws_imds_url": metadata.url},
            cloudwatch={"enabled": True},
        )
        gpu = FakeGpuBackend()
        with RunningAgent(write_config(tmp_path, config), gpu_backend=gpu) as agent:
            # Ready only with the model on the GPU: NVML lists the engine's process holding its weights.
            warming = agent.wait_detail("model", "hold memory on 0 GPU(s)")
            gpu.hold(warming["engine"]["pid"], tiny_model.stat().st_size + 300 * 2**20)
            agent.wait_state("ready")
            held = HeldStream(agent.url)
            assert held.first_chunk.wait(60), "the held stream never started"
            results: list[int] = []
            waiting = [
                ask(agent.url, stream=True, results=results),
                ask(agent.url, stream=False, results=results),
            ]
            # The sampler saw the queue (llama.cpp's requests_deferred) while the slot was held.
            wait_for(
                lambda: scraped(agent.http.get("/metrics").text, "fleet_node_requests_waiting") >= 1,
                60,
                "a second with requests waiting at the engine",
            )
            held.release()
            for thread in waiting:
                thread.join(120)
            assert results == [200, 200]
            # The held stream, the short stream, the short completion (the held one ends as it is cut).
            wait_for(
                lambda: (
                    scraped(agent.http.get("/metrics").text, "fleet_node_request_latency_seconds_count") == 3
                ),
                30,
                "three inference requests observed",
            )
            text = agent.http.get("/metrics").text
            latencies = scraped(text, "fleet_node_request_latency_seconds_count")
            first_tokens = scraped(text, "fleet_node_time_to_first_token_seconds_count")
        # Leaving the agent flushes its last window.

    assert first_tokens == 2  # the two that streamed
    listed = cloudwatch.list_metrics(Namespace=fm.NODE_NAMESPACE)["Metrics"]
    ours = [m for m in listed if {"Name": "Pool", "Value": pool} in m["Dimensions"]]
    names = {m["MetricName"] for m in ours}
    # llama.cpp has no KV-cache figure; its token counter is a rate once two readings fall in one window
    # (the unit tests above hold the rate's arithmetic).
    assert (
        set(fm.UNITS) - {fm.KV_CACHE_USAGE, fm.TOKENS_PER_SECOND}
        <= names
        <= set(fm.UNITS) - {fm.KV_CACHE_USAGE}
    )
    assert all(
        m["Dimensions"] == [{"Name": "Pool", "Value": pool}, {"Name": "Model", "Value": "tiny"}] for m in ours
    )

    def stat(metric: str, statistic: str) -> float:
        now = datetime.now(UTC)
        answer = cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "q",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": fm.NODE_NAMESPACE,
                            "MetricName": metric,
                            "Dimensions": [
                                {"Name": "Pool", "Value": pool},
                                {"Name": "Model", "Value": "tiny"},
                            ],
                        },
                        "Period": 3600,
                        "Stat": statistic,
                        "Unit": fm.UNITS[metric],  # the declared unit, or nothing matches
                    },
                }
            ],
            StartTime=now - timedelta(hours=1),
            EndTime=now + timedelta(minutes=5),
        )
        values = answer["MetricDataResults"][0]["Values"]
        # The hour can straddle two periods (CloudWatch buckets from StartTime): counts add, maxima do not.
        return max(values) if statistic == "Maximum" else sum(values)

    assert stat(fm.REQUEST_LATENCY, "SampleCount") == latencies
    assert stat(fm.TIME_TO_FIRST_TOKEN, "SampleCount") == first_tokens
    assert stat(fm.LOAD, "Maximum") >= 2
    assert stat(fm.REQUESTS_WAITING, "Maximum") >= 1
    assert stat(fm.GPU_UTILIZATION, "Maximum") == 37  # the fake NVML's reading
    assert stat(fm.GPU_MEMORY_USED, "Maximum") == A10G_MEMORY // 3
    assert stat(fm.NODE_READY_SECONDS, "SampleCount") == 1
