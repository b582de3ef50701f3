"""How fast the fleet controller acts, and that it does not act on noise, with real parts on 127.0.0.1:
three real agents (`fleet-agent run`) attached to one real llama.cpp, a real redis-server with the
program's ACL users, moto_server for Auto Scaling / EC2 / SSM, the controller's own code in a loop.

- killed: SIGKILL one agent; seconds until moto records SetInstanceHealth Unhealthy for its instance;
- silent: SIGSTOP one agent; seconds until its restart (SendCommand) and until it is marked Unhealthy;
- degraded: XID 79 on one node's GPU (the agent's fake NVML backend; the agent stays up, /readyz 503):
  seconds until it is marked Unhealthy, past the not-ready grace; any other action is a false one;
- flapping: every agent alive, but each one's way to Redis (a TCP proxy per agent) drops for random
  spells of 0.5-3 heartbeat TTLs; false actions (any SetInstanceHealth or SendCommand) over the run.

    uv run python bench/controller.py [--scale 1.0] [--flap-ticks 60]

`--scale` multiplies the deployed periods (controller: tick 10 s, poll timeout 3 s, restart grace 60 s,
not-ready grace 180 s; agent heartbeats every 5 s, 15 s TTL); 0.1 runs ten times faster. The controller
runs as one continuous loop (no scheduled-run handover), so the matching budgets are printed with it. Each
group's model keeps three ready nodes (minReadyReplicas): a raise of desired capacity is a false action
too. Prints one JSON object.
Goals: each detection within its budget; false_actions 0 (degraded_false_actions 0).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from controller import world  # noqa: E402
from testkit.moto_server import running_moto  # noqa: E402
from testkit.redis_server import running_redis  # noqa: E402

from node_image.agent.tests.agent_testkit.fake_gpu import FakeGpuBackend  # noqa: E402
from node_image.agent.tests.agent_testkit.harness import FAST_PROBES, RunningAgent, write_config  # noqa: E402
from node_image.agent.tests.agent_testkit.net import wait_for  # noqa: E402
from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama  # noqa: E402

DEPLOYED = {
    "tick_s": 10.0,
    "poll_timeout_s": 3.0,
    "restart_grace_s": 60.0,
    "not_ready_grace_s": 180.0,
    "period_s": 5.0,
    "ttl_s": 15.0,
}


class FlappingProxy:
    """TCP between agents and Redis that goes down (every connection cut, new ones refused) at random."""

    def __init__(self, upstream: tuple[str, int], ttl_s: float, rng: random.Random) -> None:
        self.upstream, self.ttl_s, self.rng = upstream, ttl_s, rng
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.outages = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            s.close()

    def flap(self, until: float) -> None:
        while time.monotonic() < until and not self._stop.is_set():
            time.sleep(self.rng.uniform(0.5, 2.0) * self.ttl_s)
            self.up = False
            self.outages += 1
            with self._lock:
                for s in self._open:
                    s.close()
                self._open.clear()
            time.sleep(self.rng.uniform(0.5, 3.0) * self.ttl_s)
            self.up = True

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


def false_actions_of(running: world.RunningController) -> list[dict]:
    """Every repair and every raise of desired capacity the controller made."""
    return [r for r in running.records if r.get("kind") in ("action", "capacity")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the deployed periods")
    parser.add_argument("--flap-ticks", type=int, default=60, help="length of the flapping run, in ticks")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    p = {k: round(v * args.scale, 3) for k, v in DEPLOYED.items()}
    world.HEARTBEAT_PERIOD_S, world.HEARTBEAT_TTL_S = p["period_s"], p["ttl_s"]
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-controller-")))
        url = stack.enter_context(running_moto())
        model = write_tiny_llama(tmp / "tiny.gguf")
        engine, engine_port = world.start_engine(model)
        stack.callback(engine.terminate)
        redis = world.redis_with_fleet_users(stack.enter_context(running_redis(tmp)))

        def fleet(
            name: str,
            stack: ExitStack,
            proxies: dict[str, FlappingProxy] | None = None,
            gpu: FakeGpuBackend | None = None,
        ):
            """Three agents in a group of their own, and a controller watching them (stopped with `stack`);
            with `gpu`, the first is a GPU node on that fake NVML backend (in this process)."""
            pool = world.moto_pool(url)
            agents = {}
            addresses = {}
            for n, instance_id in enumerate(pool.instance_ids):
                directory = tmp / name / instance_id
                if gpu is not None and n == 0:
                    config = world.agent_config(
                        directory, instance_id, redis, engine_port, model, node={"accelerator": "gpu"}
                    )
                    gpu_node = stack.enter_context(
                        RunningAgent(write_config(directory, config), gpu_backend=gpu)
                    )
                    gpu_node.wait_state("ready", timeout=60)
                    addresses[instance_id] = ("127.0.0.1", config["server"]["port"])
                    continue
                port = None
                if proxies is not None:
                    rng = random.Random(args.seed + len(proxies))
                    proxy = FlappingProxy((redis.host, redis.port), p["ttl_s"], rng)
                    stack.callback(proxy.close)
                    proxies[instance_id], port = proxy, proxy.port
                agents[instance_id] = world.start_agent(
                    directory, instance_id, redis, engine_port, model, port
                )
                stack.callback(agents[instance_id].close)
            for agent in agents.values():
                agent.wait_ready()
            addresses |= {i: a.address for i, a in agents.items()}
            s = world.settings(pool, redis, tick_s=p["tick_s"], poll_timeout_s=p["poll_timeout_s"],
                               restart_grace_s=p["restart_grace_s"], not_ready_grace_s=p["not_ready_grace_s"],
                               min_ready={world.MODEL: 3})  # fmt: skip
            running = stack.enter_context(world.controller(pool, s, addresses))
            running.wait_healthy(3, timeout=10 * p["tick_s"] + 60)
            return pool, agents, s, running

        # Killed.
        phase = ExitStack()
        pool, agents, s, running = fleet("killed", phase)
        budget = world.budget(s)
        victim = pool.instance_ids[0]
        agents[victim].kill()
        started = time.monotonic()
        wait_for(lambda: pool.health(victim) == "Unhealthy", budget.killed_s * 3, "replacement")
        killed_s = time.monotonic() - started
        phase.close()
        # Silent.
        phase = ExitStack()
        pool, agents, s, running = fleet("silent", phase)
        victim = pool.instance_ids[0]
        agents[victim].stop()
        started = time.monotonic()
        wait_for(lambda: running.restarts(victim), budget.killed_s * 3, "restart")
        restart_s = time.monotonic() - started
        wait_for(lambda: pool.health(victim) == "Unhealthy", budget.silent_s * 3, "replacement")
        silent_s = time.monotonic() - started
        phase.close()
        # Degraded: a GPU condemned by an XID; the agent answers, not ready.
        phase = ExitStack()
        gpu = FakeGpuBackend()
        pool, agents, s, running = fleet("degraded", phase, gpu=gpu)
        degraded_budget = world.budget(s, agent_detection_s=FAST_PROBES["gpu_period_s"])
        victim = pool.instance_ids[0]
        gpu.replay_xid(79)
        started = time.monotonic()
        wait_for(lambda: pool.health(victim) == "Unhealthy", degraded_budget.not_ready_s * 3, "replacement")
        degraded_s = time.monotonic() - started
        degraded_false = [
            r
            for r in false_actions_of(running)
            if (r.get("instance"), r.get("action")) != (victim, "replace")
        ]
        degraded_false += [i for i in pool.instance_ids[1:] if pool.health(i) != "Healthy"]
        phase.close()
        # Flapping heartbeats, every agent alive.
        proxies: dict[str, FlappingProxy] = {}
        pool, agents, s, running = fleet("flapping", stack, proxies)
        until = time.monotonic() + args.flap_ticks * s.tick_s
        flappers = [threading.Thread(target=proxy.flap, args=(until,)) for proxy in proxies.values()]
        for thread in flappers:
            thread.start()
        for thread in flappers:
            thread.join()
        false_actions = false_actions_of(running)
        unhealthy = [i for i in pool.instance_ids if pool.health(i) != "Healthy"]
        silent_ticks = sum(
            1 for r in running.records if r.get("kind") == "node" and r["signals"]["push"] == "silent"
        )
    print(
        json.dumps(
            {
                "scale": args.scale,
                "periods": {
                    "tickSeconds": p["tick_s"],
                    "heartbeatPeriodSeconds": p["period_s"],
                    "heartbeatTtlSeconds": p["ttl_s"],
                    "pollTimeoutSeconds": p["poll_timeout_s"],
                    "restartGraceSeconds": p["restart_grace_s"],
                    "notReadyGraceSeconds": p["not_ready_grace_s"],
                    "confirmations": s.confirmations,
                },
                "killed_node_detection_s": round(killed_s, 2),
                "killed_node_budget_s": round(budget.killed_s, 2),
                "silent_node_restart_s": round(restart_s, 2),
                "silent_node_detection_s": round(silent_s, 2),
                "silent_node_budget_s": round(budget.silent_s, 2),
                "degraded_node_detection_s": round(degraded_s, 2),
                "degraded_node_budget_s": round(degraded_budget.not_ready_s, 2),
                "degraded_false_actions": len(degraded_false),
                "flapping_run_s": round(args.flap_ticks * s.tick_s, 1),
                "flapping_outages": sum(proxy.outages for proxy in proxies.values()),
                "flapping_node_ticks_with_silent_heartbeat": silent_ticks,
                "false_actions": len(false_actions) + len(unhealthy),
            }
        )
    )


if __name__ == "__main__":
    main()
