"""What a tick tells a person: one log line per node worth reading (with the signals behind its verdict),
the tick's summary, and its counts as CloudWatch metrics in the embedded metric format (CloudWatch Logs
turns those lines into metrics: no PutMetricData call, no permission for one)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .decision import SUSPECT, Verdict
from .settings import METRIC_NAMESPACE, POOL_DIMENSION, READY_NODES_METRIC, ControllerSettings
from .steps import NodeDecision, Plan, Pool

Emit = Callable[[Mapping[str, Any]], None]


def print_record(record: Mapping[str, Any]) -> None:
    """One JSON line on stdout: the function's log stream."""
    print(json.dumps(record, default=str, separators=(",", ":")), file=sys.stdout, flush=True)


def report(
    emit: Emit,
    settings: ControllerSettings,
    summary: dict[str, Any],
    decisions: Sequence[NodeDecision],
    pools: Mapping[str, Pool],
    decided: Plan | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Emit the tick: the nodes worth a look, the summary (completed here with the counts), the metrics."""
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d.verdict.value] = counts.get(d.verdict.value, 0) + 1
        if d.verdict not in (Verdict.HEALTHY, Verdict.BOOTING) and not d.acts:
            status = (details or {}).get(d.instance_id)
            extra = {"agentStatus": status_digest(status)} if status else {}
            emit({"kind": "node", **d.describe(), **extra})
    summary["verdicts"] = counts
    if decided is not None:
        summary |= {
            "actions": len(decided.actions()),
            "held": sum(1 for d in decisions if d.held),
            "orphans": len(decided.orphans),
            "terminated": len(decided.terminate),
            "ghosts": len(decided.forget),
            "raises": len(decided.raises),
        }
    emit(summary)
    metric_time = int(summary["at"] * 1000)
    emit(
        _metrics(
            metric_time,
            ["Stack", "Region"],
            {"Stack": settings.stack, "Region": settings.region},
            {
                "NoQuorum": 1 if summary.get("noQuorum") else 0,
                "Actions": summary.get("actions", 0),
                "HeldBack": summary.get("held", 0),
                "Orphans": summary.get("orphans", 0),
            },
        )
    )
    for name in pools:
        in_pool = [d for d in decisions if d.pool == name]
        emit(
            _metrics(
                metric_time,
                ["Stack", "Pool"],
                {"Stack": settings.stack, "Pool": name},
                {"SuspectNodes": sum(1 for d in in_pool if d.verdict in SUSPECT)},
            )
        )
        # The shared contract (fleet_agent.fleet_metrics): dimension Pool only, read by the pool's
        # ReadyNodes alarm and its instance refresh's rollback. Counted from the agents' own answers,
        # so it holds while Redis is down (never emitted when the cloud read failed: no pools then).
        emit(
            _metrics(
                metric_time,
                [POOL_DIMENSION],
                {POOL_DIMENSION: name},
                {READY_NODES_METRIC: sum(1 for d in in_pool if d.signals.serving)},
            )
        )


def _metrics(
    timestamp_ms: int, dimensions: list[str], values: Mapping[str, str], counts: Mapping[str, int]
) -> dict[str, Any]:
    """One embedded-metric-format record: `counts` as Count metrics under `dimensions`."""
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": METRIC_NAMESPACE,
                    "Dimensions": [dimensions],
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in counts],
                }
            ],
        },
        **values,
        **counts,
    }


def status_digest(status: Mapping[str, Any]) -> dict[str, Any]:
    """What of an agent's /status explains a disagreement (its heartbeat failing, say)."""
    return {k: status.get(k) for k in ("state", "reasons", "heartbeat") if k in status}
