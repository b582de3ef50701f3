"""The supervisor's control API on 127.0.0.1 (its port in state.json), and its client.

GET  /status           the whole picture: regions, pools, nodes and agent states, routes, decisions
GET  /events?since=T   the event log from wall-clock time T
POST /fault            {"kind": ..., ...}: what a drill injects (see FAULTS)
POST /shutdown         stop everything and exit
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx

from fleet.sandbox.asgi import Receive, Scope, Send, read_body, respond
from fleet.sandbox.plan import PoolSpec
from fleet.sandbox.world import EMULATED, Region, Sandbox

# How long a frozen engine's finished answers get to reach the load balancer: meant to outlast the agent's
# and the load balancer's forwarding on a saturated CPU, and kept under the agent's engine health timeout
# (fleet_agent.constants.ENGINE_HEALTH_TIMEOUT_S, 1 s), so that the freeze itself is never the fault
# the agent reports.
FROZEN_SETTLE_S = 0.8


def _node(sandbox: Sandbox, order: dict[str, Any]) -> Any:
    for region in sandbox.regions:
        node = region.node(str(order["node"]))
        if node is not None:
            return node
    raise KeyError(f"no node {order['node']}")


def _kill(sandbox: Sandbox, order: dict[str, Any]) -> dict[str, Any]:
    node = _node(sandbox, order)
    node.power_off()
    return {"node": node.instance_id}


def _hang(sandbox: Sandbox, order: dict[str, Any]) -> dict[str, Any]:
    node = _node(sandbox, order)
    node.hang_agent()
    return {"node": node.instance_id}


def _crash_engine(sandbox: Sandbox, order: dict[str, Any]) -> dict[str, Any]:
    """On `node`; or, given `pool`, on a node whose engine is mid-answer (waiting up to `waitSeconds`), so
    that the crash certainly cuts a stream a client reads.

    An answer mid-body at the load balancer may already be whole at the engine, its end still in transit
    (a tiny model's 256 tokens take ~55 ms). So the engine is frozen first (SIGSTOP): an answer its
    generation still owes cannot end, while one already whole reaches the load balancer within the
    settle. One still mid-body after the settle is cut by the kill; with none, the engine goes on."""
    if "pool" not in order:
        node = _node(sandbox, order)
        return {"node": node.instance_id, "killed": node.crash_engine()}
    region, _ = sandbox.group(str(order["pool"]))
    lb = region.lbs[str(order["pool"])]
    wait_s = float(order.get("waitSeconds", 60))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        busy = lb.most_streaming()
        if busy is None:
            time.sleep(0.02)
            continue
        node = _node(sandbox, {"node": busy})
        node.signal_engine(signal.SIGSTOP)
        settled = time.monotonic() + FROZEN_SETTLE_S
        while lb.streaming_on(busy) and time.monotonic() < settled:
            time.sleep(0.02)
        held = lb.streaming_on(busy)
        if held:
            # The drill's time zero is the kill, not the wait before it.
            return {"node": busy, "killed": node.crash_engine(), "streamsCut": held, "at": time.time()}
        node.signal_engine(signal.SIGCONT)
    raise TimeoutError(f"no answer was mid-body on pool {order['pool']} within {wait_s:g} s")


def _xid(sandbox: Sandbox, order: dict[str, Any]) -> dict[str, Any]:
    node = _node(sandbox, order)
    node.xid(int(order["xid"]))
    return {"node": node.instance_id, "xid": int(order["xid"])}


def _spot(sandbox: Sandbox, order: dict[str, Any]) -> dict[str, Any]:
    node = _node(sandbox, order)
    _, group = sandbox.group(node.pool.name)
    group.interrupt(node.instance_id)
    return {"node": node.instance_id}


def _rollout(sandbox: Sandbox, order: dict[str, Any]) -> dict[str, Any]:
    _, group = sandbox.group(str(order["pool"]))
    group.roll_out(bool(order.get("broken", False)))
    return {"pool": group.pool.name}


def _rollback(sandbox: Sandbox, order: dict[str, Any]) -> dict[str, Any]:
    _, group = sandbox.group(str(order["pool"]))
    return {"pool": group.pool.name, "terminating": group.cancel_rollout()}


def _redis(sandbox: Sandbox, order: dict[str, Any]) -> dict[str, Any]:
    region = sandbox.region(str(order["region"]))
    if order["kind"] == "redis-stop":
        region.gateway_redis.stop()
    else:
        region.gateway_redis.start()
    return {"region": region.spec.region}


def _region_loss(sandbox: Sandbox, order: dict[str, Any]) -> dict[str, Any]:
    """The primary's gateway, pools and Redis stopped at once (the region is gone)."""
    region = sandbox.region(str(order["region"]))
    region.lost = True
    if region.controller is not None:
        region.controller.stop()
    for group in region.groups.values():
        group.stop(power_off=True)
    region.stop_gateway()
    region.gateway_redis.stop()
    return {"region": region.spec.region}


def _region_restore(sandbox: Sandbox, order: dict[str, Any]) -> dict[str, Any]:
    """The region comes back: its Redis, gateway and controller start, and its instances boot again."""
    region: Region = sandbox.region(str(order["region"]))
    region.gateway_redis.start()
    region.start_gateway()
    region.start_pools()
    region.wait_gateway()
    region.start_controller()
    region.lost = False
    return {"region": region.spec.region}


FAULTS: dict[str, Callable[[Sandbox, dict[str, Any]], dict[str, Any]]] = {
    "kill-node": _kill,
    "hang-node": _hang,
    "crash-engine": _crash_engine,
    "xid": _xid,
    "spot-interrupt": _spot,
    "rollout": _rollout,
    "rollback": _rollback,
    "redis-stop": _redis,
    "redis-start": _redis,
    "region-loss": _region_loss,
    "region-restore": _region_restore,
}


def snapshot(sandbox: Sandbox) -> dict[str, Any]:
    regions = []
    for region in sandbox.regions:
        pools = []
        for pool in region.spec.pools:
            group = region.groups.get(pool.name)
            lb = region.lbs[pool.name]
            pools.append(
                {
                    "name": pool.name,
                    "model": pool.model,
                    "engine": f"llama.cpp (rendered: {pool.engine})",
                    "group": pool.group,
                    "minSize": pool.min_size,
                    "maxSize": pool.max_size,
                    "loadBalancer": f"http://127.0.0.1:{region.lb_ports[pool.name]}",
                    "targets": lb.describe(),
                    "nodes": group.describe(lb.state_of) if group is not None else [],
                }
            )
        routes = [
            {
                "model": d["model_name"],
                "deployment": (d.get("model_info") or {}).get("id"),
                "order": d["litellm_params"].get("order"),
                "apiBase": d["litellm_params"]["api_base"],
            }
            for d in region.gateway_config().get("model_list", [])
        ]
        controller = region.controller
        regions.append(
            {
                "region": region.spec.region,
                "role": region.spec.role,
                "lost": region.lost,
                "gateway": region.gateway_url,
                "gatewayUp": region.gateway is not None and region.gateway.poll() is None,
                "regionHealth": region.health_url + sandbox.health_path(region.spec.region),
                "redis": "up" if region.gateway_redis.running else "down",
                "pools": pools,
                "routes": routes,
                "controller": {
                    "lastTick": controller.last_tick if controller else {},
                    "decisions": controller.decisions[-8:] if controller else [],
                },
            }
        )
    front = sandbox.front
    dns = {
        "record": sandbox.plan.dns.name,
        "failover": sandbox.plan.dns.failover,
        "ttlSeconds": sandbox.plan.dns.ttl_s,
        "answer": front.answer if front else None,
        "healthChecks": {
            r: {"healthy": s.healthy, "checkers": front.checker_view(r)} for r, s in front.checks.items()
        }
        if front
        else {},
    }
    return {
        "stack": sandbox.plan.stack,
        "phase": sandbox.phase,
        "problem": sandbox.problem,
        "upSeconds": round(time.time() - sandbox.started_at),
        "baseUrl": sandbox.base_url,
        "dns": dns,
        "regions": regions,
        "serverless": {"url": sandbox.serverless_url, "calls": len(sandbox.serverless.calls)},
        "budgets": sandbox.plan.budgets,
        "targetGroups": {
            p.name: {
                "interval": p.target_group.health.interval_s,
                "timeout": p.target_group.health.timeout_s,
                "healthyThreshold": p.target_group.health.healthy_threshold,
                "unhealthyThreshold": p.target_group.health.unhealthy_threshold,
                "deregistrationDelay": p.target_group.deregistration_delay_s,
            }
            for p in sandbox.plan.pools
        },
        "lifecycleHooks": {p.name: {"heartbeatTimeout": p.hook_timeout_s} for p in sandbox.plan.pools},
        "scaleInProtection": {p.name: scale_in_protection(p) for p in sandbox.plan.pools},
        "instanceWarmup": {p.name: p.instance_warmup_s for p in sandbox.plan.pools},
        "controllerSettings": {
            r.spec.region: {
                "boot_grace_s": r.controller.settings.boot_grace_s,
                "tick_s": r.controller.settings.tick_s,
            }
            for r in sandbox.regions
            if r.controller is not None
        },
        "autoscalingApi": sandbox.autoscaling_url,
        "emulated": list(EMULATED),
    }


class ControlApi:
    def __init__(self, sandbox_ref: Callable[[], Sandbox], stop: asyncio.Event) -> None:
        self.sandbox_ref = sandbox_ref
        self.stop = stop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        sandbox = self.sandbox_ref()
        path, method = scope["path"], scope["method"]
        body = await read_body(receive)
        try:
            if method == "GET" and path == "/status":
                await respond(send, 200, await asyncio.to_thread(snapshot, sandbox))
            elif method == "GET" and path == "/events":
                since = float(dict(parse_qsl(scope.get("query_string", b"").decode())).get("since", 0))
                await respond(send, 200, sandbox.events.since(since))
            elif method == "POST" and path == "/fault":
                order = json.loads(body)
                fault = FAULTS.get(order.get("kind", ""))
                if fault is None:
                    await respond(
                        send, 400, {"error": f"no fault {order.get('kind')!r}; one of {sorted(FAULTS)}"}
                    )
                    return
                event = sandbox.events.add(
                    "fault", fault=order["kind"], **{k: v for k, v in order.items() if k != "kind"}
                )
                result = await asyncio.to_thread(fault, sandbox, order)
                await respond(send, 200, {"at": event["at"], **result})
            elif method == "POST" and path == "/shutdown":
                self.stop.set()
                await respond(send, 200, {"stopping": True})
            else:
                await respond(send, 404, {"error": f"no {method} {path}"})
        except KeyError as exc:
            await respond(send, 404, {"error": str(exc).strip("'\"")})
        except Exception as exc:
            await respond(send, 500, {"error": f"{type(exc).__name__}: {exc}"})


class ControlClient:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)

    def status(self) -> dict[str, Any]:
        return self._json(self.http.get("/status"))

    def events(self, since: float = 0) -> list[dict[str, Any]]:
        return self._json(self.http.get("/events", params={"since": since}))

    def fault(self, kind: str, **order: Any) -> dict[str, Any]:
        return self._json(self.http.post("/fault", json={"kind": kind, **order}, timeout=300))

    def shutdown(self) -> None:
        self.http.post("/shutdown")

    @staticmethod
    def _json(answer: httpx.Response) -> Any:
        if answer.status_code != 200:
            raise RuntimeError(answer.json().get("error", answer.text))
        return answer.json()


def scale_in_protection(pool: PoolSpec) -> dict[str, float] | None:
    """The agents' scale-in protection as their config sets it (the agent's defaults where the render
    leaves a value out); None where the pool's agents keep none."""
    from fleet_agent.config import ScaleInProtectionConfig

    protection = ScaleInProtectionConfig(**pool.agent_config.get("scale_in_protection", {}))
    if protection.group_name is None:
        return None
    return {
        "releaseAfterSeconds": protection.release_after_s,
        "yieldAfterSeconds": protection.yield_after_s,
        "groupCheckSeconds": protection.group_check_s,
    }
