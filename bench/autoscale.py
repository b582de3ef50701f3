"""A load trace (steady, a 10x burst, a drop to zero) replayed second by second through the agents' real
metrics code and the scaling policies as the program declares them, against AWS's documented algorithms.

Real code: every simulated node keeps its figures in the agent's own `NodeMetrics` (sampled each second,
windows put as PutMetricData datums) and decides its scale-in protection with the agent's own
`ProtectionHysteresis` and `GroupWatch` (its group read every 30 s); the policies' numbers (target,
periods, datapoints, steps, warmup, idle period) come from `components/gpu_pools` for the pool given.
Simulated (what cannot run here), each as documented:
- CloudWatch aggregates the datums by period (Average, Maximum); a datapoint is visible one publishing
  period after its window closes (the budget's cloudWatchDelay allowance).
- Alarms: M of N datapoints; missing data as each alarm declares (the scaling alarms: notBreaching; target
  tracking's: no action on missing data). A step policy runs at every evaluation while its alarm is in
  ALARM; nodes still in their instance warmup count as capacity, so a breach in the same step adds nothing
  more (EC2 Auto Scaling user guide, step scaling's warmup). Target tracking (its managed alarms: 3 of 3
  high at the 60-s period, 15 of 15 low under 90 % of the target; terraform-provider-aws#42553, AWS does
  not document them) sets capacity to ceil(serving nodes x metric / target), never below what warms up,
  and scales in only when nothing warms up.
- The group launches at once; a node is ready `nodeReadySeconds` after launch and takes traffic after its
  load balancer's two 10-s checks. A scale-in deregisters the node (no new request) and its drain finishes
  what it holds; it picks the oldest instance it may, skipping protected ones.
- The gateway routes to the pool's healthy nodes (least outstanding requests) and sends a request to its
  fallback when none is healthy, or when every node already holds twice its concurrency (a request
  would wait more than a service time: the gateway's timeout stands in for that).
- A request runs `--service-s` seconds in an engine slot; beyond the node's concurrency it waits in the
  engine's queue (RequestsWaiting).

Prints one JSON object: per scenario the seconds from the burst to the first added node serving (the
budget's queue path bounds it) and to the capacity the burst needs, the share of requests the fallback
served per phase, and the busy nodes scaled in (goal 0), with the same trace without protection beside it.
Scenarios: the issue's trace (steady, burst, zero) on a pool with a floor of one node and on one from zero;
and the burst followed by the steady load again, where every node stays busy while the group shrinks.

    uv run python bench/autoscale.py [--seed 7] [--service-s 8]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.gpu_pools import scaling  # noqa: E402
from components.gpu_pools.config import GpuPoolConfig  # noqa: E402
from fleet_agent import constants as agent_constants  # noqa: E402
from fleet_agent import fleet_metrics as fm  # noqa: E402
from fleet_agent.engines.base import EngineLoad  # noqa: E402
from fleet_agent.node_metrics import NodeMetrics  # noqa: E402
from fleet_agent.scale_in import GroupWatch, ProtectionHysteresis  # noqa: E402

# Target tracking's managed low alarm: 15 datapoints under 90 % of the target (observed, not documented).
TRACKING_LOW_DATAPOINTS = 15
TRACKING_LOW_SHARE = 0.9
OVERLOAD_FACTOR = 2  # a node holding this many times its concurrency sends the next request to the fallback


@dataclass
class Request:
    arrival: float
    start: float = -1.0


@dataclass
class Node:
    id: int
    launched: float
    pool: GpuPoolConfig
    metrics: NodeMetrics
    protection: ProtectionHysteresis
    running: list[tuple[float, Request]] = field(default_factory=list)  # (finish, request)
    waiting: deque[Request] = field(default_factory=deque)
    peak: int = 0
    leaving: bool = False

    @property
    def ready_at(self) -> float:
        return self.launched + self.pool.scaling.node_ready_seconds

    @property
    def healthy_at(self) -> float:
        return self.ready_at + scaling.HEALTHY_THRESHOLD * scaling.HEALTH_CHECK_INTERVAL_S

    def warming(self, now: float) -> bool:
        return now < self.launched + scaling.instance_warmup_s(self.pool)

    def outstanding(self) -> int:
        return len(self.running) + len(self.waiting)


class CloudWatch:
    """Datums as PutMetricData receives them, aggregated per metric and window start."""

    def __init__(self) -> None:
        self.values: dict[str, dict[float, Counter[float]]] = {}

    def put(self, datums: list[dict[str, Any]]) -> None:
        for datum in datums:
            window = datum["Timestamp"].timestamp()
            counter = self.values.setdefault(datum["MetricName"], {}).setdefault(window, Counter())
            for value, count in zip(datum["Values"], datum["Counts"], strict=True):
                counter[value] += count

    def datapoint(self, metric: str, end: float, period: int, statistic: str) -> float | None:
        merged: Counter[float] = Counter()
        for start, counter in self.values.get(metric, {}).items():
            if end - period <= start < end:
                merged.update(counter)
        if not merged:
            return None
        if statistic == "Maximum":
            return max(merged)
        return sum(v * c for v, c in merged.items()) / sum(merged.values())


class Simulation:
    def __init__(self, pool: GpuPoolConfig, service_s: float, protect: bool, seed: int) -> None:
        self.pool, self.service_s, self.protect = pool, service_s, protect
        self.rng = random.Random(seed)
        self.cloudwatch = CloudWatch()
        self.nodes: list[Node] = []
        self.desired = pool.min_size
        self.next_id = 0
        self.elb_503: Counter[int] = Counter()  # requests per minute answered 503 (no registered target)
        self.served: Counter[str] = Counter()
        self.fallback: Counter[str] = Counter()
        self.busy_scaled_in = 0
        self.scale_ins = 0
        self.peak_nodes = 0
        self.serving_log: list[tuple[float, int]] = []  # (second, nodes taking traffic)
        self.nodes_log: list[tuple[float, int]] = []  # (second, instances, draining ones included)
        self.node_seconds_over_desired = 0  # instances kept past the desired capacity (protected, busy)
        # The agents' reading of their group (every SCALE_IN_GROUP_CHECK_S): protection yields once the
        # group has waited SCALE_IN_YIELD_AFTER_S above its desired size.
        self.watch = GroupWatch(agent_constants.SCALE_IN_YIELD_AFTER_S)
        self.yielding = False
        for _ in range(pool.min_size):  # the floor, warmed up before the trace starts
            self._launch(-10_000.0)

    # --- the group -----------------------------------------------------------------------------------

    def _launch(self, now: float) -> None:
        pool = self.pool
        metrics = NodeMetrics(pool=pool.name, model=pool.model, concurrency=pool.concurrency)
        protection = ProtectionHysteresis(agent_constants.SCALE_IN_RELEASE_AFTER_S)
        self.nodes.append(Node(self.next_id, now, pool, metrics, protection))
        self.next_id += 1

    def _active(self) -> list[Node]:
        return [n for n in self.nodes if not n.leaving]

    def _settle(self, now: float) -> None:
        active = self._active()
        for _ in range(len(active), min(self.desired, self.pool.max_size)):
            self._launch(now)
        excess = len(active) - self.desired
        if excess <= 0:
            return
        candidates = [n for n in active if not (self.protect and n.protection.protected)]
        for node in sorted(candidates, key=lambda n: n.launched)[:excess]:
            node.leaving = True  # deregistered: no new request; the drain finishes what it holds
            self.scale_ins += 1
            self.busy_scaled_in += node.outstanding() > 0

    # --- traffic --------------------------------------------------------------------------------------

    def _route(self, now: float, phase: str) -> None:
        healthy = [n for n in self.nodes if not n.leaving and n.healthy_at <= now]
        if not healthy:
            if not [n for n in self.nodes if not n.leaving]:
                self.elb_503[int(now // 60)] += 1
            self.fallback[phase] += 1
            return
        fewest = min(n.outstanding() for n in healthy)
        node = self.rng.choice([n for n in healthy if n.outstanding() == fewest])  # ties: no favourite
        if node.outstanding() >= OVERLOAD_FACTOR * self.pool.concurrency:
            self.fallback[phase] += 1
            return
        self.served[phase] += 1
        request = Request(now)
        if len(node.running) < self.pool.concurrency:
            request.start = now
            node.running.append((now + self.service_s, request))
        else:
            node.waiting.append(request)
        node.peak = max(node.peak, node.outstanding())

    def _work(self, now: float) -> None:
        for node in self.nodes:
            still = []
            for finish, request in node.running:
                if finish <= now:
                    latency = finish - request.arrival
                    node.metrics.request_finished(
                        now, route="/v1/completions", status=200, latency_s=latency, first_token_s=None
                    )
                else:
                    still.append((finish, request))
            node.running = still
            while node.waiting and len(node.running) < self.pool.concurrency:
                request = node.waiting.popleft()
                request.start = now
                node.running.append((now + self.service_s, request))
        self.nodes = [n for n in self.nodes if not (n.leaving and n.outstanding() == 0)]

    def _sample(self, now: float) -> None:
        if now % agent_constants.SCALE_IN_GROUP_CHECK_S == 0:
            self.yielding = self.watch.observe(now, len(self._active()), self.desired)
        for node in self.nodes:
            ready = not node.leaving and node.ready_at <= now
            engine = EngineLoad(running=float(len(node.running)), waiting=float(len(node.waiting)))
            node.metrics.sample(now, ready=ready, peak=node.peak, engine=engine)
            node.peak = node.outstanding()
            if not node.leaving and node.ready_at <= now:
                wanted = node.protection.wanted(now, node.outstanding(), yielding=self.yielding)
                if wanted is not None:
                    node.protection.applied(wanted)  # the agent's call, taken as accepted at once
            if now % fm.PUBLISH_PERIOD_S == fm.PUBLISH_PERIOD_S - 1:
                for window in node.metrics.take_finished(now + 1):
                    self.cloudwatch.put(node.metrics.datums(window))

    # --- the policies ---------------------------------------------------------------------------------

    def _evaluate(self, now: float) -> None:
        pool, delay = self.pool, fm.PUBLISH_PERIOD_S  # a datapoint is seen one period after it closes
        base = [n for n in self._active() if not n.warming(now)]
        cw = self.cloudwatch
        if (now - delay) % scaling.QUEUE_PERIOD_S == 0:
            end = now - delay
            step = scaling.QUEUE_PERIOD_S
            points = [
                cw.datapoint(fm.REQUESTS_WAITING, end - i * step, step, "Average")
                for i in range(scaling.QUEUE_DATAPOINTS)
            ]
            if all(p is not None and p >= scaling.QUEUE_THRESHOLD for p in points):
                excess = points[0] - scaling.QUEUE_THRESHOLD  # type: ignore[operator]
                percent = next(
                    p
                    for lo, hi, p in scaling.queue_steps(pool)
                    if lo <= excess and (hi is None or excess < hi)
                )
                new = len(base) + max(math.ceil(len(base) * percent / 100), 1)
                self.desired = max(self.desired, min(new, pool.max_size))
        period = scaling.TRACKING_PERIOD_S
        if (now - delay) % period == 0:
            end = now - delay
            load = [
                cw.datapoint(fm.LOAD, end - i * period, period, "Average")
                for i in range(TRACKING_LOW_DATAPOINTS)
            ]
            high = load[: scaling.TRACKING_HIGH_DATAPOINTS]
            serving = [n for n in base if n.ready_at <= end]
            if serving and all(p is not None and p > pool.target_load for p in high):
                needed = math.ceil(len(serving) * high[0] / pool.target_load)  # type: ignore[operator]
                self.desired = max(self.desired, min(needed, pool.max_size))
            elif len(base) == len(self._active()) and all(  # nothing warming up, and low for 15 minutes
                p is not None and p < TRACKING_LOW_SHARE * pool.target_load for p in load
            ):
                needed = math.ceil(len(serving) * load[0] / pool.target_load)  # type: ignore[operator]
                self.desired = min(self.desired, max(needed, pool.min_size))
        if pool.min_size == 0 and (now - scaling.ALB_METRIC_PERIOD_S) % 60 == 0:
            minute = int((now - scaling.ALB_METRIC_PERIOD_S) // 60) - 1
            if self.elb_503[minute] >= 1:
                self.desired = max(self.desired, min(len(base) + 1, pool.max_size))
            idle = pool.scaling.idle_minutes
            end = now - delay
            peaks = [cw.datapoint(fm.LOAD, end - i * 60, 60, "Maximum") for i in range(idle)]
            # notBreaching on missing data: a minute without any datapoint is not idle.
            if self.desired > 0 and all(p is not None and p <= 0 for p in peaks):
                self.desired = 0

    # --- the run --------------------------------------------------------------------------------------

    def run(self, trace: Sequence[tuple[str, float, float]]) -> dict[str, Any]:
        now, phase_start = 0.0, {}
        for phase, seconds, rate in trace:
            phase_start[phase] = now
            for _ in range(int(seconds)):
                self._work(now)
                for _ in range(self._poisson(rate)):
                    self._route(now, phase)
                self._sample(now)
                self._evaluate(now)
                self._settle(now)
                serving = sum(1 for n in self.nodes if not n.leaving and n.healthy_at <= now)
                self.serving_log.append((now, serving))
                self.nodes_log.append((now, len(self.nodes)))
                self.node_seconds_over_desired += max(len(self._active()) - self.desired, 0)
                self.peak_nodes = max(self.peak_nodes, len(self.nodes))
                now += 1
        return {"phase_start": phase_start, "end": now}

    def _poisson(self, rate: float) -> int:
        # Knuth's method is slow for large rates; the normal approximation is exact enough past 30 a second.
        if rate <= 0:
            return 0
        if rate > 30:
            return max(0, round(self.rng.gauss(rate, math.sqrt(rate))))
        threshold, count, product = math.exp(-rate), 0, self.rng.random()
        while product > threshold:
            count += 1
            product *= self.rng.random()
        return count


def first_at_or_after(log: list[tuple[float, int]], start: float, test: Any) -> float | None:
    return next((t - start for t, n in log if t >= start and test(n)), None)


def scenario(pool: GpuPoolConfig, service_s: float, seed: int, protect: bool, after: str) -> dict[str, Any]:
    """Steady load at 60 % of one node's target, 10x that for 25 minutes, then `after` for 30 minutes:
    "zero" (the issue's trace) or "steady" (load back to where it was: scale-in while nodes have work)."""
    per_node_rate = pool.target_load / service_s  # requests a second one node takes at the target
    steady = 0.6 * per_node_rate * max(pool.min_size, 1)
    trace = [
        ("steady", 900, steady),
        ("burst", 1500, 10 * steady),
        (after, 1800, steady if after == "steady" else 0.0),
    ]
    sim = Simulation(pool, service_s, protect, seed)
    timeline = sim.run(trace)
    burst, last = timeline["phase_start"]["burst"], timeline["phase_start"][after]
    before = dict(sim.serving_log)[burst - 1]
    needed = min(pool.max_size, math.ceil(10 * steady / per_node_rate))
    result: dict[str, Any] = {
        "nodesServingBeforeBurst": before,
        "nodesTheBurstNeeds": needed,
        "secondsToFirstAddedNodeServing": first_at_or_after(sim.serving_log, burst, lambda n: n > before),
        "secondsToCapacity": first_at_or_after(sim.serving_log, burst, lambda n: n >= needed),
        "fallbackShare": {
            phase: round(sim.fallback[phase] / max(sim.fallback[phase] + sim.served[phase], 1), 4)
            for phase in ("steady", "burst")
        },
        "requests": {"served": sum(sim.served.values()), "fallback": sum(sim.fallback.values())},
        "busyNodesScaledIn": sim.busy_scaled_in,
        "scaleIns": sim.scale_ins,
        "peakNodes": sim.peak_nodes,
        "nodesAtEnd": len(sim.nodes),
        "nodeSecondsOverDesired": sim.node_seconds_over_desired,
        f"secondsFrom{after.title()}ToFloor": first_at_or_after(
            sim.nodes_log, last, lambda n: n <= pool.min_size
        ),
    }
    if pool.min_size == 0:
        result["secondsFromFirstRequestToServing"] = first_at_or_after(sim.serving_log, 0.0, lambda n: n > 0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--service-s", type=float, default=8.0, help="seconds a request runs in a slot")
    args = parser.parse_args()
    # prod's llama-8b (vLLM, concurrency 32, target 22.4 a node) with room for a 10x burst; and the same pool
    # from zero (minSize 0).
    base: dict[str, Any] = {
        "name": "llama-8b",
        "region": "us-east-1",
        "engine": "vllm",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "instanceTypes": ["g6e.xlarge"],
        "maxSize": 12,
    }
    pools = {
        "floorOfOne": GpuPoolConfig.model_validate({**base, "minSize": 1}),
        "fromZero": GpuPoolConfig.model_validate({**base, "minSize": 0}),
    }
    runs = [("floorOfOne", "zero"), ("fromZero", "zero"), ("floorOfOne", "steady")]
    report: dict[str, Any] = {"serviceSeconds": args.service_s, "seed": args.seed, "scenarios": {}}
    for name, after in runs:
        pool = pools[name]
        budget = scaling.pool_scaling_budget(pool)
        protected = scenario(pool, args.service_s, args.seed, True, after)
        unprotected = scenario(pool, args.service_s, args.seed, False, after)
        kept = (
            "busyNodesScaledIn",
            "scaleIns",
            "nodeSecondsOverDesired",
            f"secondsFrom{after.title()}ToFloor",
        )
        report["scenarios"][f"{name}-then-{after}"] = {
            "pool": {
                "minSize": pool.min_size,
                "maxSize": pool.max_size,
                "concurrency": pool.concurrency,
                "targetLoadPerNode": pool.target_load,
                "nodeReadySeconds": pool.scaling.node_ready_seconds,
            },
            "budgetSeconds": budget["loadStepToServingSeconds"],
            **protected,
            "withoutProtection": {k: unprotected[k] for k in kept},
        }
        first, capacity = protected["secondsToFirstAddedNodeServing"], protected["secondsToCapacity"]
        print(
            f"{name} then {after}: first added node serving after {first} s (budget "
            f"{budget['loadStepToServingSeconds']['queuePath']} s), capacity after {capacity} s; fallback "
            f"share in the burst {protected['fallbackShare']['burst']:.1%}; busy nodes scaled in "
            f"{protected['busyNodesScaledIn']} (without protection {unprotected['busyNodesScaledIn']})",
            file=sys.stderr,
        )
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
