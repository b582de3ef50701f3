"""The agent: engine supervision, probes and state, drain, heartbeats and the preemption watch,
composed. Usable without the HTTP server (job mode: start, wait until ready, work, shut down)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx

from fleet_agent import __version__
from fleet_agent import constants as c
from fleet_agent.aio import cancel_and_wait
from fleet_agent.config import AgentConfig
from fleet_agent.drain import Drainer, DrainNotice, DrainReport, TargetGroupLeaver, iso, make_hooks
from fleet_agent.engines import make_adapter
from fleet_agent.engines.base import EngineLoad, ModelReading
from fleet_agent.engines.runner import EngineExit, make_runner
from fleet_agent.gpu.backend import GpuBackend
from fleet_agent.gpu.health import GpuMonitor
from fleet_agent.gpu.residency import judge, process_tree, weights_bytes
from fleet_agent.heartbeat import Heartbeat
from fleet_agent.kubernetes import detect as detect_pod
from fleet_agent.metrics import AgentMetrics
from fleet_agent.model_store import ModelStore, ModelStoreProbe
from fleet_agent.node_metrics import NodeMetrics, sample_forever
from fleet_agent.preemption import make_watcher
from fleet_agent.probes import (
    CanaryProbe,
    EngineHealthProbe,
    GpuProbe,
    ModelProbe,
    Probe,
    ProbeRunner,
    ProgressProbe,
)
from fleet_agent.state import Check, CheckBoard, State, StateMachine, Transition
from fleet_agent.traffic import Traffic

if TYPE_CHECKING:
    from fleet_agent.cloudwatch import CloudWatchPublisher
    from fleet_agent.scale_in import ScaleInProtection

log = logging.getLogger("fleet_agent")


class Agent:
    def __init__(self, config: AgentConfig, *, gpu_backend: GpuBackend | None = None) -> None:
        self.config = config
        self.metrics = AgentMetrics()
        self.adapter = make_adapter(config.engine, gpu_required=config.gpu_required)
        checks = [Check.ENGINE, Check.MODEL, Check.CANARY, Check.PROGRESS]
        self.gpu: GpuMonitor | None = None
        if config.gpu_required:
            checks.append(Check.GPU)
            if gpu_backend is None:
                from fleet_agent.gpu.nvml import NvmlBackend  # pynvml is loaded only on GPU nodes

                gpu_backend = NvmlBackend()
            self.gpu = GpuMonitor(gpu_backend, config.gpu, on_change=self._on_gpu_event)
        self.store: ModelStore | None = None
        if config.model_store is not None:
            checks.append(Check.STORE)
            self.store = ModelStore(
                config.model_store, self.metrics, on_change=lambda: self.probes.kick(Check.STORE)
            )
        self.board = CheckBoard(checks)
        self.board.set(Check.PROGRESS, True, "idle")
        self.state = StateMachine(self.board, on_change=self._on_transition)
        self.traffic = Traffic()
        # The fleet's node metrics (fleet_agent.fleet_metrics): on /metrics always, to CloudWatch when
        # configured; and the scale-in protection that follows the node's work.
        self.node_metrics = NodeMetrics(
            pool=config.node.pool,
            model=config.cloudwatch.model or self.adapter.primary_model,
            concurrency=config.engine.parallel,
            period_s=config.cloudwatch.period_s,
            registry=self.metrics.registry,
        )
        self.runner = make_runner(
            self.adapter,
            config.engine,
            config.supervisor,
            on_spawn=self._on_engine_spawn,
            on_exit=self._on_engine_exit,
        )
        # Probes get their own small pool so proxied traffic can never starve them.
        self.probe_client = httpx.AsyncClient(limits=httpx.Limits(max_connections=8))
        self._side_client = httpx.AsyncClient()  # metadata service and drained-hooks
        probes: list[Probe] = [
            EngineHealthProbe(self),
            ModelProbe(self),
            CanaryProbe(self),
            ProgressProbe(self),
        ]
        if self.gpu is not None:
            probes.append(GpuProbe(self))
        if self.store is not None:
            probes.append(ModelStoreProbe(self))
        self.probes = ProbeRunner(probes)
        imds_url = str(config.preemption.aws_imds_url)
        self.drainer = Drainer(
            self,
            make_hooks(config.drain.hooks, self._side_client, imds_url),
            self._target_groups(imds_url),
        )
        self.launch: dict[str, Any] | None = None  # the launch lifecycle action's outcome
        self.pod = detect_pod()  # in a Kubernetes pod, the pod is the node
        self.watcher = make_watcher(config, self._side_client, in_pod=self.pod is not None)
        self.publisher, self.protection = self._scaling_parts()
        self.heartbeat: Heartbeat | None = None
        if config.heartbeat.redis_url is not None:
            self.heartbeat = Heartbeat(
                config.heartbeat.redis_url, config.heartbeat, config.node, self.snapshot
            )

        self.engine_generation = 0  # bumped on every engine start; probes drop stale readings
        self.engine_started_at = time.monotonic()
        self.engine_up_at: float | None = None
        self.model_reading: ModelReading | None = None
        self.model_load_seconds: float | None = None  # the last engine start's, to the model served
        self._load_noted_generation = -1
        self.engine_load: EngineLoad | None = None
        self._weights_bytes: int | None = None  # read once: 0 when unknown
        self.started_at = time.time()
        self._restarting = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._drain_task: asyncio.Task[DrainReport] | None = None
        self._ready_event = asyncio.Event()
        self._stopped_event = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        log.info(
            "fleet-agent %s: node %s (%s, %s), engine %s in %s mode, models %s",
            __version__,
            self.config.node.id,
            self.config.node.region,
            self.config.node.accelerator,
            self.config.engine.kind,
            self.config.engine.mode,
            ", ".join(self.config.engine.models),
        )
        if self.pod is not None:
            log.info(
                "in Kubernetes pod %s/%s on node %s: the kubelet's SIGTERM is the drain signal",
                self.pod.namespace,
                self.pod.name,
                self.pod.node or "(unknown)",
            )
        self.engine_started_at = time.monotonic()
        if self.store is None:
            await self.runner.start()
        else:
            # The engine loads from the local cache: it starts once the store has warmed the model.
            self._tasks.append(asyncio.create_task(self._start_engine_when_warm(self.store), name="engine"))
        self.probes.start()
        self._tasks.append(asyncio.create_task(sample_forever(self), name="node-metrics"))
        if self.publisher is not None:
            self._tasks.append(asyncio.create_task(self.publisher.run(), name="cloudwatch"))
        if self.protection is not None:
            self._tasks.append(asyncio.create_task(self.protection.run(), name="scale-in-protection"))
        if self.heartbeat is not None:
            self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="heartbeat"))
        if self.watcher is not None:
            self._tasks.append(asyncio.create_task(self.watcher.watch(self._on_notice), name="preemption"))
        if self.config.launch.hooks:
            self._tasks.append(asyncio.create_task(self._complete_launch(), name="launch"))

    def _target_groups(self, imds_url: str) -> TargetGroupLeaver | None:
        balancer = self.config.load_balancer
        if not balancer.aws_target_group_arns:
            return None
        from fleet_agent.aws import TargetGroups  # botocore only where it is used
        from fleet_agent.imds import ImdsSession

        imds = ImdsSession(imds_url, self._side_client)
        return TargetGroups(balancer, self.config.server.port, imds, c.HOOK_TIMEOUT_S)

    async def _complete_launch(self) -> None:
        """The group holds a new node in Pending:Wait until its launch hook completes: CONTINUE once ready
        (InService then means ready, and the group registers it with the load balancer only then), ABANDON
        when not ready within `launch.ready_timeout_s` (the group terminates and replaces it). Heartbeats
        keep the action open meanwhile."""
        from fleet_agent.aws import LifecycleAction
        from fleet_agent.imds import ImdsSession

        launch = self.config.launch
        imds = ImdsSession(str(self.config.preemption.aws_imds_url), self._side_client)
        actions = [LifecycleAction(hook, imds) for hook in launch.hooks]
        holds = [asyncio.create_task(action.keep_open()) for action in actions]
        try:
            left = launch.ready_timeout_s - (time.time() - self.started_at)
            ready = await self.wait_ready(left)
        finally:
            await cancel_and_wait(holds)
        result = "CONTINUE" if ready else "ABANDON"
        if not ready:
            log.error(
                "not ready %g s after start: abandoning the launch (%s)", launch.ready_timeout_s, result
            )
        outcomes = []
        for action in actions:
            try:
                await action.complete(result, time.time() + action.hook.timeout_s, wait_for_action=False)
            except RuntimeError as exc:
                # After an agent restart the group has no launch action open any more: that is no fault.
                log.warning("%s: %s refused: %s", action.name, result, exc)
                outcomes.append({"hook": action.name, "result": result, "ok": False, "detail": str(exc)})
            else:
                outcomes.append({"hook": action.name, "result": result, "ok": True, "detail": "done"})
        self.launch = {"result": result, "at": iso(time.time()), "hooks": outcomes}

    async def _start_engine_when_warm(self, store: ModelStore) -> None:
        await store.warmed.wait()
        log.info("model warm in the local cache: starting the engine")
        self.engine_started_at = time.monotonic()
        await self.runner.start()

    async def wait_ready(self, timeout: float) -> bool:
        """For callers without the HTTP server (job mode): True once the node is ready."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready_event.wait(), timeout)
        return self.state.ready

    async def wait_stopped(self) -> None:
        await self._stopped_event.wait()

    def request_drain(self, notice: DrainNotice) -> asyncio.Task[DrainReport]:
        """Start draining (once); a later notice only brings the drain's deadline forward where it ends the
        node sooner (a spot interruption during a scale-in's drain keeps its two minutes)."""
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drain(notice), name="drain")
        elif self.drainer.hasten(notice):
            log.warning(
                "draining; %s notice (%s): deadline now %s",
                notice.source,
                notice.detail,
                iso(notice.deadline),
            )
        else:
            log.warning("already draining; %s notice (%s) noted", notice.source, notice.detail)
        return self._drain_task

    async def close(self) -> None:
        """Stop everything the agent started. Stops the engine without draining: call after a drain,
        or where no request can be in flight (job mode, tests)."""
        await self.probes.stop()
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self.publisher is not None:
            await self.publisher.flush()  # the last window's requests, drained ones included
        await self.runner.stop()
        if self.store is not None:
            await self.store.close()
        if self.gpu is not None:
            await asyncio.to_thread(self.gpu.close)
        if self.heartbeat is not None:
            await self.heartbeat.close()
        await self.probe_client.aclose()
        await self._side_client.aclose()

    def _scaling_parts(self) -> tuple[CloudWatchPublisher | None, ScaleInProtection | None]:
        config = self.config
        if not config.cloudwatch.enabled and config.scale_in_protection.group_name is None:
            return None, None
        # botocore is loaded only where the node talks to AWS.
        from fleet_agent.cloudwatch import CloudWatchPublisher
        from fleet_agent.imds import ImdsSession
        from fleet_agent.scale_in import ScaleInProtection

        imds = ImdsSession(str(config.preemption.aws_imds_url), self._side_client)
        publisher = protection = None
        if config.cloudwatch.enabled:
            publisher = CloudWatchPublisher(config.cloudwatch, self.node_metrics, imds, self.metrics.registry)
        if config.scale_in_protection.group_name is not None:
            protection = ScaleInProtection(
                config.scale_in_protection,
                self.traffic,
                imds,
                leaving=lambda: self.state.state in (State.DRAINING, State.STOPPED),
            )
        return publisher, protection

    def _seconds_since_start(self) -> float:
        """Seconds since the node started: the instance's boot on a VM, the agent's start in a pod (whose
        host booted long before)."""
        if self.pod is None and hasattr(time, "CLOCK_BOOTTIME"):
            return time.clock_gettime(time.CLOCK_BOOTTIME)
        return time.time() - self.started_at

    # --- state -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.state.evaluate()

    def serves_on_gpu(self) -> bool:
        return self.adapter.serves_on_gpu(self.model_reading) and (self.gpu is None or not self.gpu.problems)

    async def check_gpu_residency(self, reading: ModelReading) -> ModelReading:
        """The model reading, its GPU verdict from NVML (the engine's processes holding GPU memory) where
        the engine's own report does not already say it is not on the GPU."""
        assert self.gpu is not None
        if reading.on_gpu is False:
            return reading
        processes = await self.gpu.compute_processes()
        if processes is None:
            return replace(reading, on_gpu=False, detail=f"{reading.detail}; GPU processes unreadable (NVML)")
        # The engine's process tree, where the agent can name it: it spawned the engine, outside a pod.
        pid = self.runner.pid if self.runner.mode == "spawn" and self.pod is None else None
        tree = None if pid is None else await asyncio.to_thread(process_tree, pid)
        if self._weights_bytes is None:
            self._weights_bytes = await asyncio.to_thread(weights_bytes, self.adapter.weights_path()) or 0
        verdict = judge(
            processes, self.gpu.readings, tree, self.config.gpu.count, self._weights_bytes or None
        )
        facts = {**reading.facts, "gpu_residency": verdict.facts}
        if verdict.on_gpu is None:
            return replace(reading, facts=facts)
        return replace(
            reading, on_gpu=verdict.on_gpu, detail=f"{reading.detail}; {verdict.detail}", facts=facts
        )

    def note_model_loaded(self) -> None:
        """The model check passed: how long this engine start took to serve it (once per start)."""
        if self._load_noted_generation == self.engine_generation:
            return
        self._load_noted_generation = self.engine_generation
        self.model_load_seconds = time.monotonic() - self.engine_started_at
        self.metrics.model_load_seconds.observe(self.model_load_seconds)
        log.info("model loaded %.1f s after the engine started", self.model_load_seconds)

    async def restart_engine(self, cause: str, reason: str) -> None:
        """`cause` labels the restart metric (dead, unresponsive, wedged, startup_timeout)."""
        if self._restarting or self.state.state in (State.DRAINING, State.STOPPED):
            return
        self._restarting = True
        try:
            self.metrics.engine_restarts.inc((cause,))
            await self.runner.restart(reason)
        finally:
            self._restarting = False

    async def read_engine_load(self) -> EngineLoad | None:
        path = self.adapter.metrics_path
        if path is None:
            return None
        try:
            response = await self.probe_client.get(
                self.adapter.base_url + path, timeout=self.config.probes.health_timeout_s
            )
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        self.engine_load = self.adapter.read_load(response.text)
        return self.engine_load

    async def _drain(self, notice: DrainNotice) -> DrainReport:
        report = await self.drainer.drain(notice)
        if self.heartbeat is not None:
            await self.heartbeat.beat()  # the last record says "stopped" at once
        self._stopped_event.set()
        return report

    async def _heartbeat_loop(self) -> None:
        assert self.heartbeat is not None
        while True:
            if not await self.heartbeat.beat():
                self.metrics.heartbeat_failures.inc()
            await asyncio.sleep(self.config.heartbeat.period_s)

    # --- events ----------------------------------------------------------------------------------
    def _on_transition(self, transition: Transition) -> None:
        if transition.new is State.READY:
            self.node_metrics.node_ready(time.time(), self._seconds_since_start())
            self._ready_event.set()
        else:
            self._ready_event.clear()

    def _on_engine_spawn(self, pid: int) -> None:
        self.engine_generation += 1
        self.engine_started_at = time.monotonic()
        self.engine_up_at = None
        self.model_reading = None
        self.board.set(Check.ENGINE, False, f"starting (pid {pid})")
        self.board.set(Check.MODEL, None, "waiting for the engine")
        self.board.set(Check.CANARY, None, "waiting for the engine")
        progress = self.probes.probes.get(Check.PROGRESS)
        if isinstance(progress, ProgressProbe):
            progress.reset()
        self.board.set(Check.PROGRESS, True, "idle")
        self.refresh()
        self.probes.kick(Check.ENGINE)

    def _on_engine_exit(self, exit: EngineExit) -> None:
        self.engine_generation += 1
        self.engine_up_at = None
        self.model_reading = None
        self.metrics.engine_restarts.inc(("exited",))
        self.board.set(Check.ENGINE, False, f"{exit.detail}; restart in {exit.restart_in_s or 0:.1f} s")
        self.board.set(Check.MODEL, None, "waiting for the engine")
        self.board.set(Check.CANARY, None, "waiting for the engine")
        self.refresh()

    def _on_gpu_event(self) -> None:
        assert self.gpu is not None
        event = self.gpu.xid_events[-1]
        self.metrics.xid_events.inc((str(event.gpu_index), str(event.xid)))
        problems = self.gpu.problems
        self.board.set(Check.GPU, not problems, "; ".join(problems) or "healthy")
        self.refresh()

    def _on_notice(self, notice: DrainNotice) -> None:
        log.warning(
            "preemption notice from %s: %s (deadline %s, in %.0f s)",
            notice.source,
            notice.detail,
            iso(notice.deadline),
            notice.deadline - time.time(),
        )
        self.request_drain(notice)

    # --- reporting -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        runner = self.runner
        reading = self.model_reading
        load = self.engine_load
        load_s = self.model_load_seconds
        return {
            "node": {
                "id": self.config.node.id,
                "region": self.config.node.region,
                "pool": self.config.node.pool,
                "accelerator": self.config.node.accelerator,
                "kubernetes": None if self.pod is None else self.pod.as_dict(),
            },
            "agent": {"version": __version__, "started_at": iso(self.started_at)},
            "state": self.state.state.value,
            "ready": self.state.ready,
            "since": iso(self.state.since),
            "reasons": self.state.reasons,
            "checks": {check.value: result.as_dict(now) for check, result in self.board.results.items()},
            "engine": {
                "kind": self.config.engine.kind,
                "mode": runner.mode,
                "url": self.adapter.base_url,
                "pid": runner.pid,
                "alive": runner.alive,
                "restarts": runner.restarts,
                "crash_loop": runner.crash_loop,
                "load": None
                if load is None
                else {
                    "running": load.running,
                    "waiting": load.waiting,
                    "generated_tokens": load.generated_tokens,
                },
            },
            "model": {
                "names": self.config.engine.models,
                "loaded": None if reading is None else reading.loaded,
                "on_gpu": None if reading is None else reading.on_gpu,
                "detail": None if reading is None else reading.detail,
                "facts": None if reading is None else reading.facts,
                "load_seconds": None if load_s is None else round(load_s, 3),
            },
            "model_store": None if self.store is None else self.store.status(),
            "gpu": self._gpu_status(),
            "in_flight": self.traffic.inflight,
            "launch": self.launch,
            "drain": None if self.drainer.report is None else self.drainer.report.as_dict(),
            "heartbeat": None
            if self.heartbeat is None
            else {
                "key": self.heartbeat.key,
                "last_ok": self.heartbeat.last_ok,
                "failures": self.heartbeat.failures,
            },
        }

    def _gpu_status(self) -> dict[str, Any]:
        if self.gpu is None:
            return {"required": False}
        return {
            "required": True,
            "healthy": not self.gpu.problems,
            "problems": self.gpu.problems,
            "devices": [reading.as_dict() for reading in self.gpu.readings],
            "xid_events": [{"gpu": e.gpu_index, "xid": e.xid, "at": iso(e.at)} for e in self.gpu.xid_events],
        }

    def snapshot(self) -> dict[str, Any]:
        """The heartbeat record: what the gateway and the fleet's dashboards read."""
        load = self.engine_load
        return {
            "node": self.config.node.id,
            "region": self.config.node.region,
            "pool": self.config.node.pool,
            "state": self.state.state.value,
            "ready": self.state.ready,
            "reasons": self.state.reasons[:5],
            "engine": self.config.engine.kind,
            "models": self.config.engine.models,
            "load": {
                "in_flight": self.traffic.inflight,
                "engine_running": None if load is None else load.running,
                "engine_waiting": None if load is None else load.waiting,
            },
            "gpu": None
            if self.gpu is None
            else {
                "healthy": not self.gpu.problems,
                "devices": [
                    {
                        "index": r.index,
                        "name": r.name,
                        "memory_used_bytes": r.memory_used_bytes,
                        "memory_total_bytes": r.memory_total_bytes,
                        "temperature_c": r.temperature_c,
                        "utilization_pct": r.utilization_pct,
                    }
                    for r in self.gpu.readings
                ],
            },
            "agent_version": __version__,
        }

    def collect_gauges(self) -> None:
        """Copy the state and GPU facts into the gauges, just before a scrape renders them."""
        m = self.metrics
        m.state.values = {(s.value,): 1.0 if s is self.state.state else 0.0 for s in State}
        m.ready.set(1.0 if self.state.ready else 0.0)
        m.inflight.set(float(self.traffic.inflight))
        if self.gpu is None:
            return
        for r in self.gpu.readings:
            gpu = (str(r.index),)
            m.gpu_memory_used.set(r.memory_used_bytes, gpu)
            m.gpu_memory_total.set(r.memory_total_bytes, gpu)
            m.gpu_temperature.set(r.temperature_c, gpu)
            m.gpu_throttle.set(r.throttle_reasons, gpu)
            if r.utilization_pct is not None:
                m.gpu_utilization.set(r.utilization_pct / 100.0, gpu)
            if r.power_w is not None:
                m.gpu_power.set(r.power_w, gpu)
            if r.ecc_uncorrected_volatile is not None:
                m.gpu_ecc.set(r.ecc_uncorrected_volatile, gpu)
