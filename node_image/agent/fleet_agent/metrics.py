"""A small Prometheus registry: counters, gauges and histograms rendered in the text exposition
format (version 0.0.4). Hand-rolled because the agent needs a dozen series and a fast hot path,
not a client library's process collectors and global registry."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Loading and warming a model: seconds (a tiny model from a warm cache) to an hour (70B from cold).
LOAD_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

Labels = tuple[str, ...]
F = TypeVar("F", bound="_Family")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class _Family:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)

    def _label_text(self, values: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
        pairs = [*zip(self.labelnames, values, strict=True), *extra]
        if not pairs:
            return ""
        return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs) + "}"

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def samples(self) -> list[str]:
        return [
            f"{self.name}{self._label_text(k)} {_format_value(v)}" for k, v in sorted(self.values.items())
        ]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, labels: Labels = ()) -> None:
        self.values[labels] = value


class Histogram(_Family):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS_S,
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.bounds = tuple(sorted(buckets))
        # Per label set: counts per bucket (non-cumulative, one extra for +Inf), sum.
        self.series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, labels: Labels = ()) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        series[0][bisect.bisect_left(self.bounds, value)] += 1
        series[1][0] += value

    def samples(self) -> list[str]:
        lines: list[str] = []
        for labels, (counts, total) in sorted(self.series.items()):
            running = 0
            for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
                running += count
                le = self._label_text(labels, (("le", _format_value(bound)),))
                lines.append(f"{self.name}_bucket{le} {running}")
            lines.append(f"{self.name}_sum{self._label_text(labels)} {_format_value(total[0])}")
            lines.append(f"{self.name}_count{self._label_text(labels)} {running}")
        return lines


class Registry:
    def __init__(self) -> None:
        self.families: list[_Family] = []

    def add(self, family: F) -> F:
        self.families.append(family)
        return family

    def render(self) -> str:
        lines: list[str] = []
        for family in self.families:
            samples = family.samples()
            if samples:
                lines += family.header() + samples
        return "\n".join(lines) + "\n"


class AgentMetrics:
    """The agent's own series. State and GPU gauges are read at scrape time from `source`."""

    def __init__(self) -> None:
        self.registry = Registry()
        add = self.registry.add
        self.state = add(Gauge("fleet_agent_state", "1 for the state the node is in", ["state"]))
        self.ready = add(Gauge("fleet_agent_ready", "1 when the node takes new requests"))
        self.probe_ok = add(Gauge("fleet_agent_probe_ok", "1 when the check's last result passed", ["probe"]))
        self.canary_seconds = add(
            Histogram("fleet_agent_canary_seconds", "Time for the one-token canary request")
        )
        self.engine_restarts = add(
            Counter("fleet_agent_engine_restarts_total", "Engine restarts, by cause", ["cause"])
        )
        self.inflight = add(Gauge("fleet_agent_requests_in_flight", "Requests being proxied now"))
        self.requests = add(
            Counter("fleet_agent_requests_total", "Proxied requests by route and status", ["route", "code"])
        )
        self.request_seconds = add(
            Histogram(
                "fleet_agent_request_duration_seconds",
                "Proxied request time, to the last byte",
                ["route", "code"],
            )
        )
        self.first_byte_seconds = add(
            Histogram(
                "fleet_agent_time_to_first_byte_seconds", "Time until the engine's response began", ["route"]
            )
        )
        self.rejected = add(
            Counter("fleet_agent_requests_rejected_total", "Requests refused by the agent", ["reason"])
        )
        self.broken_responses = add(
            Counter(
                "fleet_agent_responses_broken_total",
                "Responses the engine broke off, ended with an error the client sees",
                ["reason"],
            )
        )
        self.gpu_memory_used = add(Gauge("fleet_agent_gpu_memory_used_bytes", "GPU memory in use", ["gpu"]))
        self.gpu_memory_total = add(Gauge("fleet_agent_gpu_memory_total_bytes", "GPU memory", ["gpu"]))
        self.gpu_temperature = add(Gauge("fleet_agent_gpu_temperature_celsius", "GPU temperature", ["gpu"]))
        self.gpu_utilization = add(Gauge("fleet_agent_gpu_utilization_ratio", "GPU busy fraction", ["gpu"]))
        self.gpu_power = add(Gauge("fleet_agent_gpu_power_watts", "GPU power draw", ["gpu"]))
        self.gpu_ecc = add(
            Gauge("fleet_agent_gpu_ecc_uncorrected_errors", "Volatile uncorrected ECC errors", ["gpu"])
        )
        self.gpu_throttle = add(
            Gauge("fleet_agent_gpu_throttle_reasons", "nvmlClocksEventReasons bitmask", ["gpu"])
        )
        self.xid_events = add(Counter("fleet_agent_gpu_xid_events_total", "XID events seen", ["gpu", "xid"]))
        self.heartbeat_failures = add(
            Counter("fleet_agent_heartbeat_failures_total", "Heartbeats Redis refused")
        )
        self.model_load_seconds = add(
            Histogram(
                "fleet_agent_model_load_seconds",
                "Engine start to the model served (per engine start)",
                buckets=LOAD_BUCKETS_S,
            )
        )
        self.store_mounted = add(
            Gauge("fleet_agent_model_store_mounted", "1 while the model store's mount answers")
        )
        self.store_model_bytes = add(
            Gauge("fleet_agent_model_store_model_bytes", "Bytes of the model's files (its manifest)")
        )
        self.store_cached_bytes = add(
            Gauge("fleet_agent_model_store_warm_bytes", "Bytes of the model's files in the local cache")
        )
        self.store_warmup_ratio = add(
            Gauge("fleet_agent_model_store_warmup_ratio", "Share of the model's bytes in the local cache")
        )
        self.store_warmup_seconds = add(
            Histogram(
                "fleet_agent_model_store_warmup_seconds",
                "Time to warm the model into the local cache",
                buckets=LOAD_BUCKETS_S,
            )
        )
        self.store_remounts = add(
            Counter(
                "fleet_agent_model_store_remounts_total", "Model store mounted again, by cause", ["cause"]
            )
        )

    def render(self) -> str:
        return self.registry.render()
