"""The node's serving metrics, as the fleet's contract names them (fleet_agent.fleet_metrics): sampled every
second and observed per request here, kept per wall-clock window of the publishing period, and rendered two
ways: CloudWatch MetricData for the publisher (fleet_agent.cloudwatch) and the Prometheus series on the
agent's /metrics (Kubernetes, Managed Prometheus).

`NodeMetrics` is pure bookkeeping: every method takes the time it is told, so the scaling bench
(bench/autoscale.py) runs this same code on a simulated clock; `sample_forever` feeds it on a node.

What each figure is, per node:
- Load: requests at the node, the peak of each second (the proxy counts a request from its arrival to its
  last byte, so one shorter than a second is still seen). Only while the node takes requests (ready).
- RequestsWaiting: the engine's queue where it reports one (vLLM num_requests_waiting, llama.cpp
  requests_deferred); Ollama reports none, so it is what the node holds beyond its concurrency (Ollama
  queues what exceeds OLLAMA_NUM_PARALLEL). RequestsInFlight is the rest of Load: running at the engine.
- TimeToFirstToken: per streamed inference request answered 2xx, arrival to the first body chunk (what a
  streaming client waits for); RequestLatency: per inference request answered 2xx, arrival to last byte.
- TokensPerSecond: tokens the engine generated in the window (its counter's increase) over the window.
  llama.cpp adds a request's tokens to its counter when the request ends; Ollama has no counter.
- KvCacheUsage: the engine's KV-cache share in use (vLLM only). GPU: the busiest GPU's utilization and
  the memory used on all of them, from the agent's NVML readings.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fleet_agent import fleet_metrics as fm
from fleet_agent.engines.base import EngineLoad
from fleet_agent.metrics import LATENCY_BUCKETS_S, LOAD_BUCKETS_S, Gauge, Histogram, Registry

if TYPE_CHECKING:
    from fleet_agent.agent import Agent

# Proxied paths that are inference (their latency is a latency a client waits for); the rest (model lists,
# Ollama's tags) are not observed.
INFERENCE_ROUTES = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"}
    | {"/api/generate", "/api/chat", "/api/embed", "/api/embeddings"}
)
# PutMetricData's limits (botocore's cloudwatch model and the CloudWatch API reference): distinct values
# per datum (Values/Counts), datums per request, and the request's size.
MAX_VALUES_PER_DATUM = 150
MAX_DATUMS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = 1_000_000
# Latencies are kept to the millisecond: equal values share one Values/Counts entry, and percentiles keep
# a millisecond's precision.
SECONDS_PRECISION = 3


@dataclass
class Window:
    """One publishing window [start, start + period): each metric's values, with how often each came."""

    start: float  # epoch seconds, a multiple of the period
    values: dict[str, Counter[float]] = field(default_factory=dict)
    tokens: float = 0.0
    token_readings: int = 0

    def add(self, metric: str, value: float, count: int = 1) -> None:
        self.values.setdefault(metric, Counter())[value] += count


def split_load(peak: int, engine: EngineLoad | None, concurrency: int) -> tuple[float, float]:
    """(in flight at the engine, waiting in its queue) for a second whose Load was `peak`."""
    if engine is not None and engine.waiting is not None:
        waiting = min(max(engine.waiting, 0.0), float(peak))
    else:
        waiting = float(max(peak - concurrency, 0))
    return float(peak) - waiting, waiting


class NodeMetrics:
    """The metrics of one node, for its pool and model, by window of `period_s`."""

    def __init__(
        self,
        *,
        pool: str,
        model: str,
        concurrency: int,
        period_s: int = fm.PUBLISH_PERIOD_S,
        registry: Registry | None = None,
    ) -> None:
        self.pool, self.model = pool, model
        self.concurrency = concurrency
        self.period_s = period_s
        self.dimensions = [
            {"Name": fm.POOL_DIMENSION, "Value": pool},
            {"Name": fm.MODEL_DIMENSION, "Value": model},
        ]
        self._windows: dict[float, Window] = {}
        self._last_tokens: float | None = None
        self.ready_seconds: float | None = None
        self._labels = (pool, model)
        self._prometheus(registry or Registry())

    def _prometheus(self, registry: Registry) -> None:
        labels, name, add = fm.PROMETHEUS_LABELS, fm.PROMETHEUS_NAMES, registry.add
        self._gauges: dict[str, Gauge] = {
            metric: add(Gauge(name[metric], f"{metric} ({fm.UNITS[metric]}), a fleet node metric", labels))
            for metric in (
                fm.LOAD,
                fm.REQUESTS_IN_FLIGHT,
                fm.REQUESTS_WAITING,
                fm.TOKENS_PER_SECOND,
                fm.KV_CACHE_USAGE,
                fm.GPU_UTILIZATION,
                fm.GPU_MEMORY_USED,
            )
        }
        self._histograms: dict[str, Histogram] = {
            metric: add(Histogram(name[metric], f"{metric}, per request", labels, buckets=LATENCY_BUCKETS_S))
            for metric in (fm.TIME_TO_FIRST_TOKEN, fm.REQUEST_LATENCY)
        }
        self._ready_histogram = add(
            Histogram(name[fm.NODE_READY_SECONDS], "Boot to the first ready", labels, buckets=LOAD_BUCKETS_S)
        )

    # --- what happens ------------------------------------------------------------------------------------

    def window(self, now: float) -> Window:
        start = math.floor(now / self.period_s) * self.period_s
        found = self._windows.get(start)
        if found is None:
            found = self._windows[start] = Window(start)
        return found

    def sample(
        self,
        now: float,
        *,
        ready: bool,
        peak: int,
        engine: EngineLoad | None,
        gpu: tuple[float, float] | None = None,
    ) -> None:
        """One second's reading: `peak` requests at most in flight during it, the engine's latest load
        reading, the GPUs' (busiest utilization in percent, memory used in bytes) when there are GPUs."""
        window = self.window(now)
        gauges = self._gauges
        serving = (fm.LOAD, fm.REQUESTS_IN_FLIGHT, fm.REQUESTS_WAITING, fm.KV_CACHE_USAGE)
        if not ready:  # a node that takes no request has no load to report, not a load of zero
            for metric in serving:
                gauges[metric].values.pop(self._labels, None)
        else:
            running, waiting = split_load(peak, engine, self.concurrency)
            for metric, value in zip(serving, (float(peak), running, waiting), strict=False):
                window.add(metric, value)
                gauges[metric].set(value, self._labels)
            if engine is not None and engine.kv_cache_usage is not None:
                percent = round(min(max(engine.kv_cache_usage, 0.0), 1.0) * 100, 1)
                window.add(fm.KV_CACHE_USAGE, percent)
                gauges[fm.KV_CACHE_USAGE].set(percent, self._labels)
        tokens = engine.generated_tokens if engine is not None else None
        if tokens is not None:
            if self._last_tokens is not None and tokens >= self._last_tokens:
                window.tokens += tokens - self._last_tokens
                window.token_readings += 1
            self._last_tokens = tokens  # a counter that went back is an engine restart: a new baseline
        if gpu is not None:
            utilization, memory = gpu
            window.add(fm.GPU_UTILIZATION, round(utilization, 1))
            window.add(fm.GPU_MEMORY_USED, float(memory))
            gauges[fm.GPU_UTILIZATION].set(utilization, self._labels)
            gauges[fm.GPU_MEMORY_USED].set(memory, self._labels)

    def request_finished(
        self, now: float, *, route: str, status: int, latency_s: float, first_token_s: float | None
    ) -> None:
        """A proxied request ended `latency_s` after it arrived; a stream's first chunk came after
        `first_token_s` (None for an answer that was not streamed)."""
        if route not in INFERENCE_ROUTES or not 200 <= status < 300:
            return
        window = self.window(now)
        window.add(fm.REQUEST_LATENCY, round(latency_s, SECONDS_PRECISION))
        self._histograms[fm.REQUEST_LATENCY].observe(latency_s, self._labels)
        if first_token_s is not None:
            window.add(fm.TIME_TO_FIRST_TOKEN, round(first_token_s, SECONDS_PRECISION))
            self._histograms[fm.TIME_TO_FIRST_TOKEN].observe(first_token_s, self._labels)

    def node_ready(self, now: float, seconds_since_boot: float) -> None:
        """The node is ready for the first time since this agent started, `seconds_since_boot` after the
        instance booted."""
        if self.ready_seconds is not None:
            return
        self.ready_seconds = seconds_since_boot
        self.window(now).add(fm.NODE_READY_SECONDS, round(seconds_since_boot, 1))
        self._ready_histogram.observe(seconds_since_boot, self._labels)

    def _tokens_per_second(self, window: Window) -> float | None:
        return window.tokens / self.period_s if window.token_readings else None

    # --- what is published -----------------------------------------------------------------------------

    def take_finished(self, now: float) -> list[Window]:
        """The windows that ended by `now`, oldest first (they leave the book)."""
        done = sorted(start for start in self._windows if start + self.period_s <= now)
        finished = [self._windows.pop(start) for start in done]
        for window in finished:
            rate = self._tokens_per_second(window)
            if rate is not None:
                self._gauges[fm.TOKENS_PER_SECOND].set(rate, self._labels)
        return finished

    def datums(self, window: Window) -> list[dict[str, Any]]:
        """The window as PutMetricData MetricData: per metric, its values with their counts (at most
        MAX_VALUES_PER_DATUM distinct values a datum), stamped with the window's start."""
        stamp = datetime.fromtimestamp(window.start, UTC)
        values = dict(window.values)
        rate = self._tokens_per_second(window)
        if rate is not None:
            values[fm.TOKENS_PER_SECOND] = Counter({round(rate, 2): 1})
        found: list[dict[str, Any]] = []
        for metric in sorted(values, key=_metric_order):
            pairs = sorted(values[metric].items())
            for i in range(0, len(pairs), MAX_VALUES_PER_DATUM):
                chunk = pairs[i : i + MAX_VALUES_PER_DATUM]
                found.append(
                    {
                        "MetricName": metric,
                        "Dimensions": self.dimensions,
                        "Timestamp": stamp,
                        "Values": [value for value, _ in chunk],
                        "Counts": [float(count) for _, count in chunk],
                        "Unit": fm.UNITS[metric],
                        "StorageResolution": fm.STORAGE_RESOLUTION_S,
                    }
                )
        return found


_ORDER = {name: i for i, name in enumerate(fm.UNITS)}


def _metric_order(metric: str) -> int:
    return _ORDER.get(metric, len(_ORDER))


def batches(datums: Sequence[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    """The datums in PutMetricData requests within its limits: datums a request, and its size (each datum's
    JSON size, an overestimate of botocore's gzip-compressed CBOR body)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for datum in datums:
        datum_size = _size(datum)
        if batch and (len(batch) == MAX_DATUMS_PER_REQUEST or size + datum_size > MAX_REQUEST_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(datum)
        size += datum_size
    if batch:
        yield batch


def _size(datum: dict[str, Any]) -> int:
    # Name, dimensions and stamp in ~200 bytes; every value and count a float of at most ~24 characters.
    return 200 + 48 * len(datum["Values"])


def gpu_reading(agent: Agent) -> tuple[float, float] | None:
    """(the busiest GPU's utilization in percent, memory used on all GPUs in bytes), from the agent's last
    NVML readings; None on a node without GPUs or before the first reading."""
    readings = agent.gpu.readings if agent.gpu is not None else []
    if not readings:
        return None
    busy = [r.utilization_pct for r in readings if r.utilization_pct is not None]
    return (max(busy) if busy else 0.0), float(sum(r.memory_used_bytes for r in readings))


async def sample_forever(agent: Agent) -> None:
    """Feed the agent's node metrics once a second, on the second (the engine's load is the progress
    probe's latest reading, taken every second while the engine answers)."""
    metrics = agent.node_metrics
    while True:
        metrics.sample(
            time.time(),
            ready=agent.state.ready,
            peak=agent.traffic.take_peak(),
            engine=agent.engine_load,
            gpu=gpu_reading(agent),
        )
        await asyncio.sleep(fm.SAMPLE_PERIOD_S - time.time() % fm.SAMPLE_PERIOD_S)
