"""The Prometheus exposition the agent renders, and the engine metrics it reads."""

from __future__ import annotations

from fleet_agent.engines.base import metric_sums
from fleet_agent.metrics import Counter, Gauge, Histogram, Registry


def test_renders_the_text_format() -> None:
    registry = Registry()
    requests = registry.add(Counter("x_requests_total", "Requests.", ["route", "code"]))
    ready = registry.add(Gauge("x_ready", "Ready."))
    latency = registry.add(Histogram("x_seconds", "Latency.", ["route"], buckets=(0.1, 1.0)))
    requests.inc(("/v1/completions", "200"))
    requests.inc(("/v1/completions", "200"))
    requests.inc(('odd"path\n', "503"))
    ready.set(1)
    for value in (0.05, 0.1, 0.5, 3.0):
        latency.observe(value, ("/v1/completions",))
    assert registry.render() == (
        "# HELP x_requests_total Requests.\n"
        "# TYPE x_requests_total counter\n"
        'x_requests_total{route="/v1/completions",code="200"} 2\n'
        'x_requests_total{route="odd\\"path\\n",code="503"} 1\n'
        "# HELP x_ready Ready.\n"
        "# TYPE x_ready gauge\n"
        "x_ready 1\n"
        "# HELP x_seconds Latency.\n"
        "# TYPE x_seconds histogram\n"
        'x_seconds_bucket{route="/v1/completions",le="0.1"} 2\n'
        'x_seconds_bucket{route="/v1/completions",le="1"} 3\n'
        'x_seconds_bucket{route="/v1/completions",le="+Inf"} 4\n'
        'x_seconds_sum{route="/v1/completions"} 3.65\n'
        'x_seconds_count{route="/v1/completions"} 4\n'
    )


def test_empty_families_are_left_out() -> None:
    registry = Registry()
    registry.add(Counter("x_total", "Nothing yet.", ["reason"]))
    assert registry.render() == "\n"


def test_engine_metrics_are_summed_across_labels() -> None:
    text = (
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0",model_name="m"} 2.0\n'
        'vllm:num_requests_waiting{engine="1",model_name="m"} 1.0\n'
        "vllm:generation_tokens_total 1.5e3 1700000000000\n"  # a sample with a timestamp
        "vllm:num_requests_running NaN\n"
        'vllm:num_requests_waiting_other{a="}"} 9\n'
    )
    names = {"vllm:num_requests_waiting", "vllm:generation_tokens_total", "vllm:num_requests_running"}
    assert metric_sums(text, names) == {
        "vllm:num_requests_waiting": 3.0,
        "vllm:generation_tokens_total": 1500.0,
    }
