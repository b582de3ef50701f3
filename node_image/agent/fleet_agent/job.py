"""Job mode (`fleet-agent job`): the container entrypoint of a Cloud Run batch job.

One task attempt: read the job's status document (Firestore), claim it (`running`, this attempt), read the
input (inline in the document, or a gs:// object), start the engine and wait until the node is ready (engine,
model, canary, GPU), send every item through the engine, write the results to the job's bucket, and set the
status `succeeded`, with the attempt, timings and a receipt (node, engine, model, GPU).

Exit codes, chosen for how Cloud Run treats them: a task attempt that exits non-zero has failed and is run
again while the job's maxRetries allows; exit 0 ends the task. There is no "failed, do not retry" code, so:

    0  done: succeeded; or failed for good (bad input), recorded as `failed` with retryable false; or
       nothing to do (the job already finished: a duplicate dispatch)
    1  retryable: the engine crashed or never became ready, a Google API failed, or the attempt was
       stopped (SIGTERM: the task timeout); recorded as `retrying`, or `failed` on the last attempt
    2  the agent's own config is unusable (the image or the job definition is wrong)

Cloud Tasks delivers at least once: an execution that finds its job already finished exits 0 at once, and
two executions that start together race on the document's update time; the loser exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleet_agent import __version__
from fleet_agent.batch_input import BadInput, Item, parse_items
from fleet_agent.config import AgentConfig
from fleet_agent.gcp import Firestore, GoogleApiError, MetadataToken, Storage
from fleet_agent.gpu.backend import GpuBackend

EXIT_DONE = 0
EXIT_RETRY = 1
EXIT_BAD_CONFIG = 2

# What `fleet jobs` and the alerts read: the states a document goes through.
QUEUED, RUNNING, RETRYING, SUCCEEDED, FAILED = "queued", "running", "retrying", "succeeded", "failed"
TERMINAL = frozenset({SUCCEEDED, FAILED})
# The JSON line (stdout, so Cloud Run makes it jsonPayload) the log-based metrics count.
FINISHED_EVENT = "fleet.job.finished"
ENGINE_WATCH_PERIOD_S = 0.1
# Cloud Run's container contract: SIGKILL 10 s after SIGTERM. The engine gets at most this much of it.
JOB_ENGINE_STOP_GRACE_S = 5.0

log = logging.getLogger("fleet_agent.job")


class JobSettings(BaseModel):
    """Job mode's environment: what the Cloud Run job definition sets, what Cloud Run adds per task, and the
    submitted job's id (a per-execution override)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    job_id: str = Field(alias="FLEET_JOB_ID", min_length=1)
    name: str = Field(alias="FLEET_JOB_NAME", min_length=1)
    project: str = Field(alias="FLEET_JOB_PROJECT", min_length=1)
    database: str = Field(alias="FLEET_JOB_DATABASE", min_length=1)
    collection: str = Field(alias="FLEET_JOB_COLLECTION", default="jobs")
    bucket: str = Field(alias="FLEET_JOB_BUCKET", min_length=1)
    max_retries: int = Field(alias="FLEET_JOB_MAX_RETRIES", default=0, ge=0)
    request_timeout_s: float = Field(alias="FLEET_JOB_REQUEST_TIMEOUT_S", default=600.0, gt=0)
    # Set by Cloud Run for every task (the container runtime contract).
    attempt_index: int = Field(alias="CLOUD_RUN_TASK_ATTEMPT", default=0, ge=0)
    execution: str = Field(alias="CLOUD_RUN_EXECUTION", default="local")
    # Endpoints (Google's by default).
    firestore_url: str = Field(alias="FLEET_JOB_FIRESTORE_URL", default="https://firestore.googleapis.com")
    storage_url: str = Field(alias="FLEET_JOB_STORAGE_URL", default="https://storage.googleapis.com")
    metadata_host: str = Field(alias="GCE_METADATA_HOST", default="metadata.google.internal")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> JobSettings:
        names = {f.alias for f in cls.model_fields.values() if f.alias}
        return cls.model_validate({k: v for k, v in environ.items() if k in names})

    @property
    def attempt(self) -> int:
        """1 for the first attempt."""
        return self.attempt_index + 1

    @property
    def last_attempt(self) -> bool:
        return self.attempt_index >= self.max_retries

    @property
    def document(self) -> str:
        return f"{self.collection}/{self.job_id}"


def settings_problems(error: ValidationError) -> list[str]:
    return [f"job: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]


class Retryable(Exception):
    """This attempt failed for a reason another attempt may not meet."""


def _now() -> datetime:
    return datetime.now(UTC)


def _seconds(start: datetime | None, end: datetime) -> float | None:
    return None if start is None else round((end - start).total_seconds(), 3)


class JobRun:
    """One task attempt of one submitted job."""

    def __init__(
        self,
        config: AgentConfig,
        settings: JobSettings,
        http: httpx.AsyncClient,
        *,
        gpu_backend: GpuBackend | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.http = http
        self.gpu_backend = gpu_backend
        token = MetadataToken(http, f"http://{settings.metadata_host}")
        self.firestore = Firestore(http, token, settings.firestore_url, settings.project, settings.database)
        self.storage = Storage(http, token, settings.storage_url)
        self.started_at = _now()
        self.submitted_at: datetime | None = None
        self.history: list[dict[str, Any]] = []
        self.timings: dict[str, float | None] = {}
        self.gpu_name: str | None = None
        # This attempt's cold start: container start to engine ready (or to giving up on it), for the
        # cold-start alert (a log-based metric on the finished line).
        self.startup_s: float | None = None

    async def run(self) -> int:
        s = self.settings
        document = await self.firestore.get(s.document)
        if document is None:
            log.error("job %s has no status document %s: nothing to run or report to", s.job_id, s.document)
            return EXIT_DONE
        state = document.fields.get("state")
        if state in TERMINAL:
            log.warning("job %s is already %s: a duplicate dispatch, nothing to do", s.job_id, state)
            return EXIT_DONE
        submitted = document.fields.get("submittedAt")
        self.submitted_at = submitted if isinstance(submitted, datetime) else None
        self.history = [a for a in document.fields.get("attempts") or [] if isinstance(a, dict)]
        self.history.append({"attempt": s.attempt, "execution": s.execution, "startedAt": self.started_at})
        try:
            await self.firestore.update(
                s.document,
                {
                    "state": RUNNING,
                    "attempt": s.attempt,
                    "startedAt": self.started_at,
                    "execution": s.execution,
                    "attempts": self.history,
                    "timings": {"queueSeconds": _seconds(self.submitted_at, self.started_at)},
                },
                if_update_time=document.update_time,
            )
        except GoogleApiError as exc:
            if exc.status == "FAILED_PRECONDITION":
                log.warning("job %s was claimed by another execution at the same time: leaving it", s.job_id)
                return EXIT_DONE
            raise
        log.info("job %s: attempt %d of %d (%s)", s.job_id, s.attempt, s.max_retries + 1, s.execution)
        try:
            items = await self._input(document.fields)
        except BadInput as exc:
            await self._finish(FAILED, retryable=False, reason="bad_input", message=str(exc))
            return EXIT_DONE
        try:
            result_uri, counts = await self._work(items)
        except Retryable as exc:
            state = FAILED if s.last_attempt else RETRYING
            await self._finish(state, retryable=True, reason="attempt_failed", message=str(exc))
            return EXIT_RETRY
        await self._finish(SUCCEEDED, retryable=False, result_uri=result_uri, items=counts)
        return EXIT_DONE

    async def fail_retryable(self, message: str) -> int:
        """Record a stopped attempt (SIGTERM) as the run loop would have."""
        state = FAILED if self.settings.last_attempt else RETRYING
        with contextlib.suppress(Exception):
            await self._finish(state, retryable=True, reason="attempt_failed", message=message)
        return EXIT_RETRY

    async def _input(self, fields: dict[str, Any]) -> list[Item]:
        model = self.config.engine.models[0]
        inline, uri = fields.get("input"), fields.get("inputUri")
        if isinstance(inline, str):
            return parse_items(inline, model)
        if isinstance(uri, str) and uri.startswith("gs://") and "/" in uri[5:]:
            bucket, name = uri[5:].split("/", 1)
            try:
                data = await self.storage.download(bucket, name)
            except GoogleApiError as exc:
                if exc.code in (403, 404):
                    raise BadInput(f"cannot read {uri}: {exc}") from None
                raise Retryable(f"reading {uri}: {exc}") from None
            try:
                return parse_items(data.decode("utf-8"), model)
            except UnicodeDecodeError:
                raise BadInput(f"{uri} is not UTF-8 text") from None
        raise BadInput("the document has neither 'input' (JSON lines) nor 'inputUri' (gs://bucket/object)")

    async def _work(self, items: list[Item]) -> tuple[str, dict[str, int]]:
        from fleet_agent.agent import Agent  # the engine stack loads only once the input is good

        agent = Agent(_job_config(self.config), gpu_backend=self.gpu_backend)
        begun = time.monotonic()
        await agent.start()
        batch: asyncio.Task[tuple[list[dict[str, Any]], dict[str, int]]] | None = None
        try:
            crashed = asyncio.create_task(_engine_crashed(agent), name="engine-watch")
            try:
                ready = await _first(agent.wait_ready(self.config.probes.startup_timeout_s), crashed)
                if crashed.done():
                    raise Retryable(f"the engine exited while starting: {_engine_detail(agent)}")
                self.startup_s = _seconds(self.started_at, _now())  # ready, or given up on: both count
                if not ready:
                    waited = self.config.probes.startup_timeout_s
                    raise Retryable(f"not ready after {waited:g} s: {agent.state.reasons}")
                self.timings["engineReadySeconds"] = round(time.monotonic() - begun, 3)
                if agent.gpu is not None and agent.gpu.readings:
                    self.gpu_name = agent.gpu.readings[0].name
                run_begun = time.monotonic()
                batch = asyncio.create_task(self._send_all(agent, items), name="batch")
                await asyncio.wait({batch, crashed}, return_when=asyncio.FIRST_COMPLETED)
                if batch.done() and isinstance(batch.exception(), Retryable):
                    # A request that failed may be the first sign of a crash: give the watch a moment.
                    await asyncio.wait({crashed}, timeout=5 * ENGINE_WATCH_PERIOD_S)
                if crashed.done():
                    batch.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await batch
                    raise Retryable(f"the engine crashed mid-batch: {_engine_detail(agent)}")
                lines, counts = batch.result()
                self.timings["runSeconds"] = round(time.monotonic() - run_begun, 3)
            finally:
                for task in (batch, crashed):
                    if task is not None and not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await task
        finally:
            await agent.close()
        name = f"results/{self.settings.job_id}/output.jsonl"
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        try:
            await self.storage.upload(self.settings.bucket, name, data, "application/x-ndjson")
        except (GoogleApiError, httpx.HTTPError) as exc:
            raise Retryable(f"writing results: {exc}") from None
        return f"gs://{self.settings.bucket}/{name}", counts

    async def _send_all(self, agent: Any, items: list[Item]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        gate = asyncio.Semaphore(self.config.engine.parallel)
        base = agent.adapter.base_url
        timeout = httpx.Timeout(self.settings.request_timeout_s, connect=5.0)

        async def send(item: Item) -> dict[str, Any]:
            async with gate:
                try:
                    response = await self.http.post(base + item.path, json=item.body, timeout=timeout)
                except httpx.HTTPError as exc:
                    raise Retryable(f"item {item.id}: engine request failed: {exc!r}") from None
            if response.status_code >= 500:
                raise Retryable(f"item {item.id}: engine answered {response.status_code}")
            if response.status_code != 200:  # the item's own fault: recorded, the rest go on
                error = {"status": response.status_code, "body": response.text[:2000]}
                return {"id": item.id, "error": error}
            return {"id": item.id, "response": response.json()}

        lines = await asyncio.gather(*(send(item) for item in items))
        failed = sum(1 for line in lines if "error" in line)
        return list(lines), {"total": len(lines), "succeeded": len(lines) - failed, "failed": failed}

    async def _finish(
        self,
        state: str,
        *,
        retryable: bool,
        reason: str | None = None,
        message: str | None = None,
        result_uri: str | None = None,
        items: dict[str, int] | None = None,
    ) -> None:
        s = self.settings
        finished = _now()
        self.timings["attemptSeconds"] = _seconds(self.started_at, finished)
        self.timings["queueSeconds"] = _seconds(self.submitted_at, self._first_start())
        self.timings["totalSeconds"] = _seconds(self.submitted_at, finished)
        self.history[-1].update({"state": state, "finishedAt": finished, "error": message})
        fields: dict[str, Any] = {
            "state": state,
            "attempts": self.history,
            "timings": self.timings,
            "receipt": {
                "node": self.config.node.id,
                "engine": self.config.engine.kind,
                "model": self.config.engine.models[0],
                "gpu": self.gpu_name or ("none" if not self.config.gpu_required else None),
                "execution": s.execution,
                "attempt": s.attempt,
                "agentVersion": __version__,
            },
            "error": (
                None if message is None else {"reason": reason, "message": message, "retryable": retryable}
            ),
        }
        if state in TERMINAL:
            fields["finishedAt"] = finished
        if result_uri is not None:
            fields["resultUri"] = result_uri
        if items is not None:
            fields["items"] = items
        log.info("job %s: %s (attempt %d)%s", s.job_id, state, s.attempt, f": {message}" if message else "")
        try:
            await self.firestore.update(s.document, fields)
        finally:
            # One JSON line for the log-based metrics (outcomes and submit-to-finish seconds).
            print(
                json.dumps(
                    {
                        "severity": "INFO" if state == SUCCEEDED else "ERROR",
                        "message": f"fleet job {s.job_id} {state}",
                        "event": FINISHED_EVENT,
                        "job": s.name,
                        "jobId": s.job_id,
                        "state": state,
                        "retryable": str(retryable).lower(),
                        "attempt": s.attempt,
                        "seconds": self.timings.get("totalSeconds") or self.timings.get("attemptSeconds"),
                        "startupSeconds": self.startup_s,
                    }
                ),
                flush=True,
            )

    def _first_start(self) -> datetime:
        first = self.history[0].get("startedAt") if self.history else None
        return first if isinstance(first, datetime) else self.started_at


def _job_config(config: AgentConfig) -> AgentConfig:
    """The agent's config for one attempt: the engine stops quicker than a node's drain allows, so that on
    SIGTERM (the task timeout) the stop and the status write fit in the 10 s before Cloud Run's SIGKILL."""
    grace = min(config.supervisor.stop_grace_s, JOB_ENGINE_STOP_GRACE_S)
    return config.model_copy(
        update={"supervisor": config.supervisor.model_copy(update={"stop_grace_s": grace})}
    )


async def _first(waiting: Any, crashed: asyncio.Task[None]) -> bool:
    """The readiness wait, cut short when the engine dies."""
    ready = asyncio.ensure_future(waiting)
    await asyncio.wait({ready, crashed}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ready
        return False
    return bool(ready.result())


async def _engine_crashed(agent: Any) -> None:
    """Returns once the engine process is gone (job mode never waits for the supervisor's restart: a fresh
    attempt gets a fresh instance, and maybe a healthy GPU)."""
    runner = agent.runner
    while not (runner.restarts > 0 or (runner.pid is not None and not runner.alive)):
        await asyncio.sleep(ENGINE_WATCH_PERIOD_S)


def _engine_detail(agent: Any) -> str:
    engine = agent.status()["checks"].get("engine") or {}
    return str(engine.get("detail") or "engine process gone")


async def run_job(
    config: AgentConfig,
    environ: Mapping[str, str] | None = None,
    *,
    gpu_backend: GpuBackend | None = None,
) -> int:
    """One attempt; the exit code for Cloud Run. SIGTERM (the task timeout) ends it as retryable."""
    try:
        settings = JobSettings.from_environ(os.environ if environ is None else environ)
    except ValidationError as exc:
        for line in settings_problems(exc):
            print(f"fleet-agent: {line}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as http:
        job = JobRun(config, settings, http, gpu_backend=gpu_backend)
        main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        stopped = False

        def on_sigterm() -> None:
            nonlocal stopped
            stopped = True
            if main is not None:
                main.cancel()

        import signal

        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            return await job.run()
        except asyncio.CancelledError:
            if not stopped:
                raise
            return await job.fail_retryable("stopped by SIGTERM (task timeout or cancellation)")
        except (GoogleApiError, httpx.HTTPError) as exc:
            log.error("job %s: a Google API failed: %s", settings.job_id, exc)
            return await job.fail_retryable(f"Google API: {exc}")
