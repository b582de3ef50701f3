"""`fleet sandbox drill NAME`: one fault injected under load, and what it cost, next to the plan's budgets.

A drill is a small class: it picks its target from the sandbox's status (`target`), may wait for the fleet
to be in the state the fault needs (`ready`), injects the fault through the supervisor (`inject`), says
from the event log when the fleet detected it and when it recovered (`detected`, `recovered`), names the
budget each is held to (`budgets`), and puts the sandbox back as it was (`restore`). The runner keeps
OpenAI SDK clients sending throughout and counts what they saw: errors, silent truncations, who served.

Budgets come from the render: the plan's `budgets` (and the failover terms the stack publishes) where the
plan declares one; otherwise a figure derived from a rendered setting, its terms named (e.g. a target
group's interval x unhealthyThreshold); otherwise "none declared", said so. New drills (node failures,
failover, autoscaling) subclass `Drill` and register in `DRILLS`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from fleet.sandbox.load import Load, LoadSpec, Outcome, Progress, summarize, target

# How long the engine-crash drill waits for a stream in flight: a hang guard, long enough for a machine
# whose CPUs are saturated (60 s was not, with two busy loops on 2 cores).
STREAM_WAIT_S = 180

WARMUP_S = 5.0  # load before the fault: a baseline, and requests in flight when it strikes
SETTLE_S = 5.0  # load after recovery
POLL_S = 0.5
Event = dict[str, Any]


class DrillError(Exception):
    """The drill cannot run on this sandbox (one line saying why and what would let it)."""


@dataclass(frozen=True)
class Budget:
    seconds: float | None
    source: str  # where the figure comes from, or why there is none

    def verdict(self, measured: float | None) -> str:
        if measured is None:
            return "not seen"
        if self.seconds is None:
            return "no budget"
        return "within" if measured <= self.seconds else "OVER"


@dataclass
class Measure:
    what: str
    seconds: float | None
    budget: Budget
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "seconds": None if self.seconds is None else round(self.seconds, 1),
            "budgetSeconds": self.budget.seconds,
            "budgetSource": self.budget.source,
            "verdict": self.budget.verdict(self.seconds),
            **({"note": self.note} if self.note else {}),
        }


class Context:
    """What a drill sees of the sandbox: its status, its event log, the fault API, its budgets."""

    def __init__(self, client: Any, api_key: str, rps: float) -> None:
        self.client = client
        self.api_key = api_key
        self.rps = rps
        self.status: dict[str, Any] = client.status()
        self.injected_at = 0.0
        self.fault_seen = False
        self.load: Load | None = None

    def refresh(self) -> dict[str, Any]:
        self.status = self.client.status()
        return self.status

    def events(self, since: float | None = None) -> list[Event]:
        return self.client.events(self.injected_at if since is None else since)

    def fault(self, kind: str, **order: Any) -> dict[str, Any]:
        """Inject through the supervisor; the first fault of a drill is its time zero."""
        done = self.client.fault(kind, **order)
        if not self.fault_seen:
            self.injected_at, self.fault_seen = float(done["at"]), True
        return done

    @property
    def budgets(self) -> dict[str, Any]:
        return self.status["budgets"]

    def pools(self) -> list[dict[str, Any]]:
        return [p for r in self.status["regions"] for p in r["pools"] if not r["lost"]]

    def pool(self, name: str) -> dict[str, Any]:
        return next(p for p in self.pools() if p["name"] == name)

    def fresh_pool(self, name: str) -> dict[str, Any]:
        self.refresh()
        return self.pool(name)

    def fresh_in_service(self, pool: str) -> list[dict[str, Any]]:
        self.refresh()
        return self.in_service(pool)

    def region_of(self, pool: str) -> dict[str, Any]:
        return next(r for r in self.status["regions"] if any(p["name"] == pool for p in r["pools"]))

    def in_service(self, pool: str) -> list[dict[str, Any]]:
        return [n for n in self.pool(pool)["nodes"] if n["lb"] == "healthy" and n["lifecycle"] == "InService"]

    def first_pool(self) -> str:
        pools = self.pools()
        if not pools:
            raise DrillError("the stack has no GPU pool")
        return pools[0]["name"]

    def controller_budget(self, key: str) -> Budget:
        found = (self.budgets.get("fleetController") or {}).get(key)
        if found is None:
            return Budget(None, f"none declared (no fleetController.{key} in the plan)")
        terms = (self.budgets.get("fleetController") or {}).get("termsSeconds", {})
        names = ("heartbeatTtl", "firstTick", "confirmations", "runHandover", "tickWork")
        if key == NOT_READY_BUDGET:
            names = ("agentDetection", "firstTick", "notReadyGrace", "graceRounding", "confirmations")
            names += ("runHandover", "tickWork")
        if key.startswith("silent"):
            names += ("restartGrace", "recheckTick", "runHandover", "tickWork")
        shown = " + ".join(f"{n} {terms[n]:g}" for n in names if n in terms)
        return Budget(float(found), f"plan: fleetController.{key} ({shown})")

    def target_group_budget(self, pool: str, kind: str) -> Budget:
        """How long the pool's load balancer takes to stop (or start) routing to a target whose health
        check changed: derived from the rendered target group (ELBv2: one check every interval)."""
        spec = self.status.get("targetGroups", {}).get(pool)
        if spec is None:
            return Budget(None, "none declared")
        threshold = spec["unhealthyThreshold"] if kind == "out" else spec["healthyThreshold"]
        seconds = spec["interval"] * threshold + (spec["timeout"] if kind == "out" else 0)
        which = "unhealthyThreshold" if kind == "out" else "healthyThreshold"
        shown = f"interval {spec['interval']:g} x {which} {threshold}"
        if kind == "out":
            shown += f" + timeout {spec['timeout']:g}"
        return Budget(seconds, f"derived from the rendered target group: {shown}")

    def wait_until(
        self, check: Callable[[], Any], timeout: float, note: Callable[[], str] = lambda: ""
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            if self.load is not None and self._progress is not None:
                self._progress.draw(time.time() - self.load.started_at, self.load.snapshot(), note())
            time.sleep(POLL_S)
        return None

    _progress: Progress | None = None


def first(events: Sequence[Event], match: Callable[[Event], bool]) -> Event | None:
    return next((e for e in events if match(e)), None)


# --- the drills ---------------------------------------------------------------------------------------


class Drill:
    name: ClassVar[str]
    summary: ClassVar[str]
    goal: ClassVar[str] = ""  # the goal for its client-visible figures, where it sets one
    stream_share: ClassVar[float] = 0.3
    max_tokens: ClassVar[int] = 32
    # How long to wait for detection and recovery at most (a drill may lengthen it once it has picked).
    window_s: float = 240.0
    # Client errors are expected until the recovery budget (a DNS window): count those after it apart.
    errors_expected_until_recovery_budget: ClassVar[bool] = False

    def __init__(self) -> None:
        self.target: dict[str, Any] = {}
        self.notes: list[str] = []

    def pick(self, ctx: Context) -> None:
        """Choose what the fault hits (self.target)."""

    def ready(self, ctx: Context) -> None:
        """Wait until the fleet is in the state the fault needs (before the load starts)."""

    def inject(self, ctx: Context) -> None:
        raise NotImplementedError

    def detected(self, ctx: Context, events: list[Event]) -> Event | None:
        raise NotImplementedError

    def recovered(self, ctx: Context, events: list[Event]) -> Event | None:
        raise NotImplementedError

    def budgets(self, ctx: Context) -> tuple[Budget, Budget]:
        raise NotImplementedError

    def describe(self) -> tuple[str, str]:
        """What counts as detected, and as recovered (for the output)."""
        raise NotImplementedError

    def conclude(self, ctx: Context, events: list[Event]) -> None:
        """Notes on what the event log shows, once the drill's window is over."""

    def restore(self, ctx: Context) -> None:
        """Put the sandbox back as it was (outside the measurement)."""

    def goal_met(self, figures: dict[str, Any]) -> bool | None:
        if not self.goal:
            return None
        return figures["errors"] == 0 and figures["silentTruncations"] == 0

    # --- shared pieces ------------------------------------------------------------------------------
    def oldest_in_service(self, ctx: Context, pool: str) -> dict[str, Any]:
        nodes = sorted(ctx.in_service(pool), key=lambda n: -n["age_s"])
        if not nodes:
            raise DrillError(f"pool {pool} has no node in service")
        return nodes[0]

    def wait_controller_sees_healthy(self, ctx: Context, pool: str) -> None:
        """The controller leaves nodes younger than its boot grace alone: wait until it calls the target
        healthy (a drill on a booting node would measure the boot grace, not the repair)."""
        region = ctx.region_of(pool)["region"]
        node = self.target["node"]

        def healthy() -> bool:
            status = ctx.refresh()
            tick = next(r for r in status["regions"] if r["region"] == region)["controller"]["lastTick"]
            ages = {n["id"]: n["age_s"] for n in ctx.pool(pool)["nodes"]}
            grace = status.get("controllerSettings", {}).get(region, {}).get("boot_grace_s", 0)
            return bool(tick) and ages.get(node, 0) >= grace + 2 * status.get("controllerSettings", {}).get(
                region, {}
            ).get("tick_s", 10)

        grace = ctx.status.get("controllerSettings", {}).get(region, {}).get("boot_grace_s", 0)
        print(f"  waiting for {node} to pass the controller's boot grace ({grace:g} s)...", file=sys.stderr)
        if not ctx.wait_until(healthy, grace + 300):
            raise DrillError(f"the controller never called {node} past its boot grace")

    def replacement_in_service(
        self, ctx: Context, pool: str, events: list[Event], after: str
    ) -> Event | None:
        """The first target of `pool` other than the faulty node that became healthy after the node was
        launched as a replacement (a node-boot after the fault)."""
        booted = {e["node"] for e in events if e["kind"] == "node-boot" and e["pool"] == pool}
        return first(
            events,
            lambda e: e["kind"] == "lb-target" and e["pool"] == pool and e["state"] == "healthy"
            and e["target"] in booted and e["target"] != after,
        )  # fmt: skip


class NodeDrill(Drill):
    """A fault on one node: the oldest in service of the first pool."""

    def pick(self, ctx: Context) -> None:
        pool = ctx.first_pool()
        self.target = {"pool": pool, "node": self.oldest_in_service(ctx, pool)["id"]}


class NodeKill(NodeDrill):
    name = "node-kill"
    summary = "a whole node dies at once (agent, engine, mount): the host is gone, EC2 still says running"
    goal = "0 client-visible errors and 0 silent truncations"

    def ready(self, ctx: Context) -> None:
        self.wait_controller_sees_healthy(ctx, self.target["pool"])

    def inject(self, ctx: Context) -> None:
        ctx.fault("kill-node", node=self.target["node"])

    def detected(self, ctx: Context, events: list[Event]) -> Event | None:
        return first(
            events,
            lambda e: e["kind"] == "controller" and e.get("instance") == self.target["node"]
            and e.get("action") == "replace",
        )  # fmt: skip

    def recovered(self, ctx: Context, events: list[Event]) -> Event | None:
        return self.replacement_in_service(ctx, self.target["pool"], events, self.target["node"])

    def budgets(self, ctx: Context) -> tuple[Budget, Budget]:
        return ctx.controller_budget("killedNodeToReplacementSeconds"), Budget(
            None, "none declared (the plan budgets the replacement request, not the new node's boot)"
        )

    def describe(self) -> tuple[str, str]:
        return "the controller asked for a replacement", "a replacement node in service"


class SpotNotice(NodeDrill):
    name = "spot-notice"
    summary = "EC2's two-minute spot interruption notice for one node, then the instance is reclaimed"
    goal = "0 client-visible errors and 0 silent truncations"
    stream_share = 0.5
    max_tokens = 256

    def inject(self, ctx: Context) -> None:
        ctx.fault("spot-interrupt", node=self.target["node"])

    def detected(self, ctx: Context, events: list[Event]) -> Event | None:
        node = self.target["node"]
        return first(
            events,
            lambda e: (
                e["kind"] == "lb-target" and e["target"] == node and e["state"] in ("draining", "unhealthy")
            ),
        )

    def recovered(self, ctx: Context, events: list[Event]) -> Event | None:
        node = self.target["node"]
        gone = first(events, lambda e: e["kind"] == "terminated" and e["node"] == node)
        back = self.replacement_in_service(ctx, self.target["pool"], events, node)
        return max((gone, back), key=lambda e: e["at"]) if gone is not None and back is not None else None

    def conclude(self, ctx: Context, events: list[Event]) -> None:
        node = self.target["node"]
        gone = first(events, lambda e: e["kind"] == "terminated" and e["node"] == node)
        draining = first(
            events, lambda e: e["kind"] == "agent-state" and e["node"] == node and e["state"] == "draining"
        )
        out = self.detected(ctx, events)
        if draining is not None and out is not None:
            drained, left = draining["at"] - ctx.injected_at, out["at"] - ctx.injected_at
            self.notes.append(
                f"the agent drained {drained:.1f} s after the notice (readiness off, new requests refused "
                f"with 503); the load balancer routed to it until {left:.1f} s (its health check): what it "
                "sent meanwhile went to the gateway's retries and its fallback"
            )
        if gone is not None:
            after = gone["at"] - ctx.injected_at
            self.notes.append(
                f"the interrupted node was terminated {after:.1f} s after the notice: {gone['why']}"
            )

    def budgets(self, ctx: Context) -> tuple[Budget, Budget]:
        return ctx.target_group_budget(self.target["pool"], "out"), Budget(
            120.0, "EC2's spot notice: the instance is reclaimed 2 minutes after it (AWS documentation)"
        )

    def describe(self) -> tuple[str, str]:
        return (
            "the load balancer stopped routing to it",
            "the node drained and gone, a replacement in service",
        )


class ScaleIn(Drill):
    name = "scale-in"
    summary = "the group's desired capacity lowered by one (SetDesiredCapacity through the Auto Scaling API)"
    goal = "0 client-visible errors and 0 silent truncations"
    stream_share = 0.5
    max_tokens = 256

    def pick(self, ctx: Context) -> None:
        pool = ctx.first_pool()
        nodes = ctx.in_service(pool)
        spec = ctx.pool(pool)
        if len(nodes) < 2 or len(nodes) - 1 < spec["minSize"]:
            raise DrillError(
                f"pool {pool} has {len(nodes)} node(s) in service, minSize {spec['minSize']}: scale-in needs "
                "one more than the minimum (`fleet sandbox up --nodes 2`)"
            )
        self.target = {"pool": pool, "group": spec["group"], "desired": len(nodes)}
        recover = self.budgets(ctx)[1].seconds
        if recover is not None:  # long enough to see the worst case through
            self.window_s = max(self.window_s, recover + 30)

    def _autoscaling(self, ctx: Context) -> Any:
        from fleet.sandbox.moto import client

        region = ctx.region_of(self.target["pool"])["region"]
        return client(ctx.status["autoscalingApi"], "autoscaling", region)

    def inject(self, ctx: Context) -> None:
        self._autoscaling(ctx).set_desired_capacity(
            AutoScalingGroupName=self.target["group"], DesiredCapacity=self.target["desired"] - 1
        )

    def detected(self, ctx: Context, events: list[Event]) -> Event | None:
        found = first(events, lambda e: e["kind"] == "terminating" and e["pool"] == self.target["pool"])
        if found is not None:
            self.target["node"] = found["node"]
        return found

    def recovered(self, ctx: Context, events: list[Event]) -> Event | None:
        node = self.target.get("node")
        return first(events, lambda e: e["kind"] == "terminated" and e["node"] == node)

    def conclude(self, ctx: Context, events: list[Event]) -> None:
        node = self.target.get("node")
        done = first(events, lambda e: e["kind"] == "terminated" and e["node"] == node)
        if done is not None:
            self.notes.append(f"{node} terminated: {done['why']}")

    def budgets(self, ctx: Context) -> tuple[Budget, Budget]:
        pool = self.target["pool"]
        protection = ctx.status.get("scaleInProtection", {}).get(pool)
        spec = ctx.status.get("targetGroups", {}).get(pool, {})
        hook = ctx.status.get("lifecycleHooks", {}).get(pool, {})
        delay, timeout = spec.get("deregistrationDelay"), hook.get("heartbeatTimeout")
        if protection is None:
            detect = Budget(None, "immediate: Auto Scaling picks the instance as it lowers the capacity")
        else:
            # Under load every node is busy, so protected: the group waits until the agents yield.
            yield_s, check_s = protection["yieldAfterSeconds"], protection["groupCheckSeconds"]
            detect = Budget(
                yield_s + check_s,
                f"derived from the agents' config: scale-in protection yields once the group has waited "
                f"yield_after_s {yield_s:g} above its desired size, seen within group_check_s {check_s:g}",
            )
        recover = Budget(
            None if delay is None or timeout is None else (detect.seconds or 0) + delay + timeout,
            f"derived from the render: the detection budget + deregistrationDelay {delay} + the termination "
            f"hook's heartbeatTimeout {timeout}",
        )
        return detect, recover

    def describe(self) -> tuple[str, str]:
        return "the group began terminating a node", "the node drained, its lifecycle action done, terminated"

    def restore(self, ctx: Context) -> None:
        self._autoscaling(ctx).set_desired_capacity(
            AutoScalingGroupName=self.target["group"], DesiredCapacity=self.target["desired"]
        )
        pool = self.target["pool"]
        ctx.wait_until(lambda: len(ctx.fresh_in_service(pool)) >= self.target["desired"], 240)


class EngineCrashMidstream(Drill):
    name = "engine-crash-midstream"
    summary = "the engine (llama.cpp) killed on a node while it streams answers"
    stream_share = 1.0
    max_tokens = 256  # a few seconds of streaming through the gateway on a busy CPU
    window_s = 120.0

    def pick(self, ctx: Context) -> None:
        self.target = {"pool": ctx.first_pool()}

    def inject(self, ctx: Context) -> None:
        pool = self.target["pool"]
        # The supervisor picks the node, freezes its engine and kills it under an answer the engine still
        # owes (fleet/sandbox/control.py): a stream the client has begun to read, which the crash must cut.
        try:
            struck = ctx.fault("crash-engine", pool=pool, waitSeconds=STREAM_WAIT_S)
        except RuntimeError as exc:
            raise DrillError(str(exc)) from exc
        self.target["node"] = struck["node"]
        self.notes.append(f"engine killed on {struck['node']} with {struck['streamsCut']} answer(s) mid-body")

    def detected(self, ctx: Context, events: list[Event]) -> Event | None:
        node = self.target["node"]
        return first(
            events, lambda e: e["kind"] == "agent-state" and e["node"] == node and e["state"] != "ready"
        )

    def recovered(self, ctx: Context, events: list[Event]) -> Event | None:
        node = self.target["node"]
        down = self.detected(ctx, events)
        if down is None:
            return None
        return first(
            events,
            lambda e: e["at"] > down["at"] and e["kind"] == "agent-state" and e["node"] == node
            and e["state"] == "ready",
        )  # fmt: skip

    def budgets(self, ctx: Context) -> tuple[Budget, Budget]:
        none = "none declared (the agent's probe periods are its own constants, not in the render)"
        return Budget(None, none), Budget(None, none)

    def describe(self) -> tuple[str, str]:
        return "the agent no longer ready", "the agent ready again (its engine restarted)"


class NodeHang(NodeDrill):
    name = "node-hang"
    summary = "a node's agent stops answering (SIGSTOP): the instance runs, its agent is silent"
    window_s = 300.0

    def ready(self, ctx: Context) -> None:
        self.wait_controller_sees_healthy(ctx, self.target["pool"])

    def inject(self, ctx: Context) -> None:
        ctx.fault("hang-node", node=self.target["node"])

    def detected(self, ctx: Context, events: list[Event]) -> Event | None:
        node = self.target["node"]
        return first(
            events,
            lambda e: e["kind"] == "controller" and e.get("instance") == node
            and e.get("action") in ("restart", "replace"),
        )  # fmt: skip

    def recovered(self, ctx: Context, events: list[Event]) -> Event | None:
        """The node back in service after its restart, or a replacement in service (the controller may
        replace a restarted node: see `conclude`)."""
        node = self.target["node"]
        acted = self.detected(ctx, events)
        if acted is None:
            return None
        back = first(
            events,
            lambda e: e["at"] > acted["at"] and e["kind"] == "lb-target" and e["target"] == node
            and e["state"] == "healthy",
        )  # fmt: skip
        return back or self.replacement_in_service(ctx, self.target["pool"], events, node)

    def budgets(self, ctx: Context) -> tuple[Budget, Budget]:
        detect = ctx.controller_budget("killedNodeToReplacementSeconds")
        detect = Budget(detect.seconds, detect.source + "; a silent node is restarted at the same point")
        return detect, ctx.controller_budget("silentNodeToReplacementSeconds")

    def describe(self) -> tuple[str, str]:
        return "the controller restarted (or replaced) it", "the node, or its replacement, in service"

    def conclude(self, ctx: Context, events: list[Event]) -> None:
        node = self.target["node"]
        repairs = [
            f"{e['action']} ({e.get('verdict')}) at {e['at'] - ctx.injected_at:+.1f} s"
            for e in events
            if e["kind"] == "controller"
            and e.get("instance") == node
            and e.get("action") in ("restart", "replace")
        ]
        if repairs:
            self.notes.append("the controller's repairs: " + ", ".join(repairs))
        if len(repairs) > 1 and repairs[0].startswith("restart") and repairs[1].startswith("replace"):
            self.notes.append(
                "the restarted agent was replaced: at the next tick it was not listening yet (its unit was "
                "still fetching secrets and starting), so the controller's table called it dead"
            )


NOT_READY_BUDGET = "notReadyNodeToReplacementSeconds"


class GpuXid(NodeDrill):
    name = "gpu-xid"
    summary = "XID 79 (GPU fallen off the bus) reported by NVML on one node"
    window_s = 120.0

    def pick(self, ctx: Context) -> None:
        super().pick(ctx)
        self.target["xid"] = 79
        request = ctx.controller_budget(NOT_READY_BUDGET).seconds
        if request is not None:  # the controller's request, then the new node's boot
            self.window_s = max(self.window_s, request + 120)

    def inject(self, ctx: Context) -> None:
        ctx.fault("xid", node=self.target["node"], xid=self.target["xid"])

    def detected(self, ctx: Context, events: list[Event]) -> Event | None:
        node = self.target["node"]
        return first(
            events, lambda e: e["kind"] == "lb-target" and e["target"] == node and e["state"] == "unhealthy"
        )

    def recovered(self, ctx: Context, events: list[Event]) -> Event | None:
        return self.replacement_in_service(ctx, self.target["pool"], events, self.target["node"])

    def conclude(self, ctx: Context, events: list[Event]) -> None:
        node = self.target["node"]
        replace = ("controller", "replace", node)
        asked = first(events, lambda e: (e["kind"], e.get("action"), e.get("instance")) == replace)
        if asked is not None:
            budget = ctx.controller_budget(NOT_READY_BUDGET)
            self.notes.append(
                f"the controller asked for its replacement at +{asked['at'] - ctx.injected_at:.1f} s "
                f"({budget.verdict(asked['at'] - ctx.injected_at)} {budget.source})"
            )
        elif self.detected(ctx, events) is not None:
            verdicts = sorted({str(e.get("verdict")) for e in events if e.get("instance") == node})
            seen = f" (the controller's verdicts: {', '.join(verdicts)})" if verdicts else ""
            self.notes.append(
                f"the node left the load balancer and nothing replaced it within the window{seen}; the "
                "group's EC2 health check passes"
            )

    def budgets(self, ctx: Context) -> tuple[Budget, Budget]:
        request = ctx.controller_budget(NOT_READY_BUDGET)
        return ctx.target_group_budget(self.target["pool"], "out"), Budget(
            None,
            f"none declared (the plan budgets the controller's request, {request.seconds} s: "
            f"fleetController.{NOT_READY_BUDGET}; not the new node's boot)",
        )

    def describe(self) -> tuple[str, str]:
        return "the node out of the load balancer", "a replacement node in service"

    def restore(self, ctx: Context) -> None:
        """What an operator would do: mark it unhealthy; the group replaces it."""
        from fleet.sandbox.moto import client

        if not self.recovered(ctx, ctx.events()):
            region = ctx.region_of(self.target["pool"])["region"]
            client(ctx.status["autoscalingApi"], "autoscaling", region).set_instance_health(
                InstanceId=self.target["node"], HealthStatus="Unhealthy"
            )
            self.notes.append(
                "restored: the node marked unhealthy through the Auto Scaling API, then replaced"
            )
            pool = self.target["pool"]
            want = len(ctx.pool(pool)["nodes"])
            ctx.wait_until(lambda: len(ctx.fresh_in_service(pool)) >= want, 240)


class BadRollout(Drill):
    name = "bad-rollout"
    summary = "an instance refresh launches a node of a release whose engine never loads its model"
    goal = "0 client-visible errors and 0 silent truncations"
    window_s = 90.0

    def pick(self, ctx: Context) -> None:
        self.target = {"pool": ctx.first_pool()}
        budget = self.budgets(ctx)[0].seconds
        if budget is not None:  # long enough to see whether anything acts within it
            self.window_s = max(self.window_s, budget + 30)

    def inject(self, ctx: Context) -> None:
        ctx.fault("rollout", pool=self.target["pool"], broken=True)

    def detected(self, ctx: Context, events: list[Event]) -> Event | None:
        bad = first(events, lambda e: e["kind"] == "node-boot" and bool(e.get("broken")))
        if bad is None:
            return None
        self.target["node"] = bad["node"]
        return first(
            events,
            lambda e: (
                e["kind"] == "controller" and e.get("instance") == bad["node"] and e.get("action") != "none"
            ),
        )

    def recovered(self, ctx: Context, events: list[Event]) -> Event | None:
        return None  # the rollback is the drill's own restore: nothing in the fleet recovers by itself

    def budgets(self, ctx: Context) -> tuple[Budget, Budget]:
        pool = self.target["pool"]
        ready = ((ctx.budgets.get("gpuPoolTimings") or {}).get(pool) or {}).get("ready") or {}
        rollback = Budget(None, "none declared (the refresh's rollback is not declared)")
        if "launchToReadySeconds" in ready:
            return Budget(
                ready["launchToReadySeconds"],
                f"plan: gpuPoolTimings.{pool}.ready.launchToReadySeconds (the launch hook's timeout, then "
                "ABANDON; the controller's boot grace + warm-up limit may act first)",
            ), rollback
        warmup = ctx.status.get("instanceWarmup", {}).get(pool)
        return Budget(
            warmup,
            "derived from the render: the group's defaultInstanceWarmup, after which a refresh calls a new "
            "instance failed",
        ), rollback

    def describe(self) -> tuple[str, str]:
        return "something in the fleet acted on the node that never became ready", "(the drill rolls back)"

    def restore(self, ctx: Context) -> None:
        node = self.target.get("node")
        if node is not None:
            state = next((n for n in ctx.fresh_pool(self.target["pool"])["nodes"] if n["id"] == node), {})
            self.notes.append(
                f"the new node stayed {state.get('agent', '?')} / load balancer {state.get('lb', '?')} "
                f"for the whole window: the load balancer never routed to it"
            )
        ctx.fault("rollback", pool=self.target["pool"])
        ctx.wait_until(
            lambda: first(ctx.events(), lambda e: e["kind"] == "terminated" and e["node"] == node), 300
        )


class RedisDown(Drill):
    name = "redis-down"
    summary = "the region's gateway Redis (routing state, heartbeats) stops for 30 s"
    goal = "0 client-visible errors and 0 silent truncations"
    outage_s = 30.0

    def pick(self, ctx: Context) -> None:
        self.target = {"region": ctx.status["regions"][0]["region"]}

    def inject(self, ctx: Context) -> None:
        ctx.fault("redis-stop", region=self.target["region"])
        time.sleep(self.outage_s)
        ctx.fault("redis-start", region=self.target["region"])
        self.target["restartedAt"] = time.time()

    def detected(self, ctx: Context, events: list[Event]) -> Event | None:
        return first(
            events, lambda e: e["kind"] == "controller-no-quorum" and e["region"] == self.target["region"]
        )

    def recovered(self, ctx: Context, events: list[Event]) -> Event | None:
        started = self.target.get("restartedAt")
        if started is None:
            return None
        region = self.target["region"]
        tick = next(r for r in ctx.refresh()["regions"] if r["region"] == region)["controller"]["lastTick"]
        if tick and tick.get("at", 0) > started and not tick.get("noQuorum"):
            return {"at": tick["at"], "kind": "controller-quorum"}
        return None

    def conclude(self, ctx: Context, events: list[Event]) -> None:
        acted = [e for e in events if e["kind"] == "controller" and e.get("action") in ("replace", "restart")]
        blind = [e for e in events if e["kind"] == "controller-no-quorum"]
        self.notes.append(
            f"controller: {len(blind)} tick(s) without quorum, {len(acted)} repair(s) ordered during and "
            "after the outage"
        )

    def budgets(self, ctx: Context) -> tuple[Budget, Budget]:
        tick = ctx.status.get("controllerSettings", {}).get(self.target["region"], {}).get("tick_s")
        return (
            Budget(tick, f"derived from the render: one controller tick (tickSeconds {tick})"),
            Budget(
                None if tick is None else self.outage_s + tick,
                f"derived: the outage ({self.outage_s:g} s, the drill's) + one tick ({tick} s)",
            ),
        )

    def describe(self) -> tuple[str, str]:
        return (
            "the controller saw no quorum (and acted on nothing)",
            "the controller ticked with quorum again",
        )


class RegionLoss(Drill):
    name = "region-loss"
    summary = "the primary region's gateway, pools and Redis stopped at once"
    goal = "errors only inside the DNS window, recovery within the plan's budget"
    window_s = 180.0
    errors_expected_until_recovery_budget = True

    def pick(self, ctx: Context) -> None:
        dns = ctx.status["dns"]
        if not dns["failover"]:
            raise DrillError(
                f"stack {ctx.status['stack']} has no standby region (no failover pair): region-loss runs "
                "on a stack with one, e.g. `fleet sandbox up --stack prod --nodes 1`"
            )
        self.target = {"region": ctx.status["regions"][0]["region"]}

    def inject(self, ctx: Context) -> None:
        ctx.fault("region-loss", region=self.target["region"])

    def detected(self, ctx: Context, events: list[Event]) -> Event | None:
        region = self.target["region"]
        return first(
            events, lambda e: e["kind"] == "dns-health" and e["region"] == region and not e["healthy"]
        )

    def recovered(self, ctx: Context, events: list[Event]) -> Event | None:
        load = ctx.load
        if load is None:
            return None
        after = [o for o in load.snapshot() if o.at > ctx.injected_at and o.ok and o.ended_at is not None]
        standby_pools = {
            str(r["deployment"])
            for region in ctx.status["regions"][1:]
            for r in region["routes"]
            if r["order"] == 1
        }
        from_standby = [o for o in after if o.served_by in standby_pools]
        if not from_standby:
            return None
        first_ok = min(from_standby, key=lambda o: o.ended_at or 0)
        return {"at": first_ok.ended_at, "kind": "served-by-standby"}

    def budgets(self, ctx: Context) -> tuple[Budget, Budget]:
        """The plan's worst case for inference after a region loss (budgets.failover.regionLossInference):
        detection is its terms before the DNS TTL, recovery the whole."""
        budget = (ctx.budgets.get("failover") or {}).get("regionLossInference") or {}
        terms = budget.get("terms", [])
        names = [t["term"] for t in terms]
        before_ttl = terms[: names.index("dnsTtl")] if "dnsTtl" in names else []
        detect = sum(t["worst"] for t in before_ttl) if before_ttl else None
        shown = " + ".join(f"{t['term']} {t['worst']:g}" for t in before_ttl)
        rest = " + ".join(f"{t['term']} {t['worst']:g}" for t in terms[len(before_ttl) :])
        return (
            Budget(detect, f"plan: regionLossInference's worst terms before the TTL ({shown})"),
            Budget(budget.get("worstSeconds"), f"plan: regionLossInference, worst (the same + {rest})"),
        )

    def describe(self) -> tuple[str, str]:
        return "Route53's check on the primary failed", "a request served by the standby's own pool"

    def restore(self, ctx: Context) -> None:
        ctx.fault("region-restore", region=self.target["region"])

    def goal_met(self, figures: dict[str, Any]) -> bool | None:
        return figures.get("errorsAfterDnsWindow", 0) == 0 and figures["silentTruncations"] == 0


DRILLS: dict[str, type[Drill]] = {
    d.name: d
    for d in (
        NodeKill,
        SpotNotice,
        ScaleIn,
        EngineCrashMidstream,
        NodeHang,
        GpuXid,
        BadRollout,
        RedisDown,
        RegionLoss,
    )
}


# --- the runner ---------------------------------------------------------------------------------------


@dataclass
class DrillResult:
    drill: str
    stack: str
    summary: str
    target: dict[str, Any]
    injectedAfterSeconds: float
    client: dict[str, Any]
    detected: dict[str, Any]
    recovered: dict[str, Any]
    goal: str
    goalMet: bool | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_drill(
    drill: Drill, client: Any, api_key: str, *, rps: float, show_progress: bool = False
) -> DrillResult:
    ctx = Context(client, api_key, rps)
    drill.pick(ctx)
    drill.ready(ctx)
    model, own = target(ctx.refresh(), None)
    spec = LoadSpec(ctx.status["baseUrl"], api_key, model, rps, drill.stream_share, drill.max_tokens)
    load = ctx.load = Load(spec).start()
    ctx._progress = Progress(WARMUP_S + drill.window_s + SETTLE_S, show_progress)
    detect_budget, recover_budget = drill.budgets(ctx)
    try:
        ctx.wait_until(lambda: time.time() - load.started_at >= WARMUP_S, WARMUP_S + 5)
        ctx.injected_at = time.time()
        drill.inject(ctx)
        detected: Event | None = None
        recovered: Event | None = None

        def settled() -> bool:
            nonlocal detected, recovered
            events = ctx.events()
            detected = detected or drill.detected(ctx, events)
            recovered = recovered or drill.recovered(ctx, events)
            return recovered is not None

        ctx.wait_until(settled, drill.window_s, lambda: f"{drill.name}: waiting")
        settled()
        ctx.wait_until(lambda: False, SETTLE_S)
        drill.conclude(ctx, ctx.events())
    finally:
        outcomes = load.stop()
        if ctx._progress is not None:
            ctx._progress.end()
    drill.restore(ctx)
    window = recover_budget.seconds if drill.errors_expected_until_recovery_budget else None
    figures = client_figures(outcomes, own, ctx.injected_at, window)
    what_detected, what_recovered = drill.describe()
    start = ctx.injected_at
    result = DrillResult(
        drill=drill.name,
        stack=ctx.status["stack"],
        summary=drill.summary,
        target=drill.target,
        injectedAfterSeconds=round(start - load.started_at, 1),
        client=figures,
        detected=Measure(
            what_detected, None if detected is None else detected["at"] - start, detect_budget
        ).as_dict(),
        recovered=Measure(
            what_recovered, None if recovered is None else recovered["at"] - start, recover_budget
        ).as_dict(),
        goal=drill.goal,
        goalMet=None,
        notes=drill.notes,
    )
    result.goalMet = drill.goal_met(figures)
    return result


def client_figures(
    outcomes: list[Outcome], own: set[str], injected_at: float, window_s: float | None = None
) -> dict[str, Any]:
    figures = summarize(outcomes, lambda d: d in own)
    failed = [o for o in outcomes if o.ended_at is not None and (o.error or o.truncated)]
    figures["failures"] = [
        {
            "sentAfterFaultSeconds": round(o.at - injected_at, 1),
            "stream": o.stream,
            "error": o.error,
            "silentTruncation": o.truncated,
            "tokens": o.tokens,
            "finish": o.finish,
        }
        for o in failed[:20]
    ]
    if window_s is not None:
        figures["errorsAfterDnsWindow"] = sum(
            1 for o in failed if o.error and (o.ended_at or 0) > injected_at + window_s
        )
    return figures


# --- the command -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(DRILLS), help="the fault")
    parser.add_argument(
        "--rps", type=float, default=2.0, help="load while it runs (default 2 requests a second)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on standard output")


def run(client: Any, api_key: str, args: argparse.Namespace) -> int:
    from fleet.sandbox.cli import EXIT_FAILED, SandboxError
    from fleet.sandbox.report import drill_text

    if not 0 < args.rps <= 50:
        raise SandboxError(f"--rps: got {args.rps:g}; more than 0, at most 50")
    drill = DRILLS[args.name]()
    try:
        result = run_drill(drill, client, api_key, rps=args.rps, show_progress=sys.stderr.isatty())
    except DrillError as exc:
        raise SandboxError(f"drill {args.name}: {exc}", EXIT_FAILED) from None
    print(json.dumps(result.as_dict(), indent=2) if args.json else drill_text(result.as_dict()))
    return 0
