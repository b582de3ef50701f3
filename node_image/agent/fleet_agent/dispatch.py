"""Dispatch mode (`fleet-agent dispatch`): the admission check between a batch job's Cloud Tasks queue and
its Cloud Run GPU job, served as a small CPU-only Cloud Run service from the same image.

Why it exists: `jobs:run` answers at once with a long-running operation, so the queue's
maxConcurrentDispatches bounds API calls, not GPU executions. Every task of the queue comes here instead
(the queue dispatches one at a time, so two admissions never race), and this service starts an execution
only while fewer than FLEET_DISPATCH_MAX_RUNNING of the job's executions are running:

    status document not `queued`        -> 200, nothing started (a duplicate delivery, or already done)
    running executions >= the cap, or
    jobs:run refused for quota (429)    -> wait: a fresh task for the same job, scheduled
                                           FLEET_DISPATCH_WAIT_SECONDS later, and 200; the refused attempt
                                           is not one of the queue's attempts (they stay for real failures).
                                           Past FLEET_DISPATCH_MAX_WAIT_SECONDS since the submit: `failed`.
    jobs:run failed otherwise           -> 503: the queue retries it with its backoff, up to its attempts
    started                             -> status `dispatched` (with the execution), once the execution is
                                           readable (the next admission counts it), then 200

Holding the dispatch until the execution ends would also bound executions, but a Cloud Tasks dispatch is
cut at 30 minutes while one GPU task may run an hour per attempt: the queue would retry (and free the slot)
while the GPU still works.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleet_agent.gcp import Firestore, GoogleApiError, MetadataToken, raise_for_google

log = logging.getLogger("fleet_agent.dispatch")

JOB_ID_ENV = "FLEET_JOB_ID"
QUEUED = "queued"
# A queued job's document changes under a write at most a few times (the submit naming its task).
UPDATE_TRIES = 5
# A continuation task's id: the job id, then how many times admission has waited (`<id>-w3`).
WAIT_SUFFIX = re.compile(r"^(?P<job>.+?)(?:-w(?P<n>\d+))?$")
# How long the execution jobs:run named may take to become readable before the answer goes anyway.
VISIBLE_TRIES = 20
VISIBLE_PERIOD_S = 0.25
EXIT_BAD_CONFIG = 2


class DispatchSettings(BaseModel):
    """What the Cloud Run service definition sets (the program renders it from the job's config)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    run_job: str = Field(
        alias="FLEET_DISPATCH_RUN_JOB", pattern=r"^projects/[^/]+/locations/[^/]+/jobs/[^/]+$"
    )
    max_running: int = Field(alias="FLEET_DISPATCH_MAX_RUNNING", ge=1)
    wait_s: int = Field(alias="FLEET_DISPATCH_WAIT_SECONDS", ge=1)
    max_wait_s: int = Field(alias="FLEET_DISPATCH_MAX_WAIT_SECONDS", ge=1)
    dispatch_deadline_s: int = Field(alias="FLEET_DISPATCH_DEADLINE_SECONDS", ge=15, le=1800)
    invoker: str = Field(alias="FLEET_DISPATCH_INVOKER", min_length=3)  # the queue's OIDC identity
    database: str = Field(alias="FLEET_JOB_DATABASE", min_length=1)
    collection: str = Field(alias="FLEET_JOB_COLLECTION", default="jobs")
    port: int = Field(alias="PORT", default=8080)  # Cloud Run's container contract
    run_url: str = Field(alias="FLEET_DISPATCH_RUN_URL", default="https://run.googleapis.com")
    tasks_url: str = Field(alias="FLEET_DISPATCH_TASKS_URL", default="https://cloudtasks.googleapis.com")
    firestore_url: str = Field(alias="FLEET_JOB_FIRESTORE_URL", default="https://firestore.googleapis.com")
    metadata_host: str = Field(alias="GCE_METADATA_HOST", default="metadata.google.internal")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DispatchSettings:
        names = {f.alias for f in cls.model_fields.values() if f.alias}
        return cls.model_validate({k: v for k, v in environ.items() if k in names})

    @property
    def project(self) -> str:
        return self.run_job.split("/")[1]

    @property
    def location(self) -> str:
        return self.run_job.split("/")[3]


@dataclass(frozen=True)
class Answer:
    status: int
    outcome: str  # what happened, for the log and the response body
    detail: str = ""


class Dispatcher:
    def __init__(self, settings: DispatchSettings, http: httpx.AsyncClient) -> None:
        self.s = settings
        self.http = http
        self.token = MetadataToken(http, f"http://{settings.metadata_host}")
        self.firestore = Firestore(
            http, self.token, settings.firestore_url, settings.project, settings.database
        )

    async def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token.get()}"}

    async def admit(self, body: bytes, task_id: str, queue_id: str) -> Answer:
        request = json.loads(body or b"{}")
        job_id = _job_id(request)
        if job_id is None:
            return Answer(400, "bad-request", f"no {JOB_ID_ENV} in the containerOverrides")
        document = await self.firestore.get(f"{self.s.collection}/{job_id}")
        if document is None:
            return Answer(200, "no-document", job_id)
        state = document.fields.get("state")
        if state != QUEUED:
            return Answer(200, "not-queued", f"{job_id} is {state}")
        running = await self.running_executions()
        if running >= self.s.max_running:
            return await self._wait(job_id, request, document, task_id, queue_id, f"{running} running")
        response = await self.http.post(
            f"{self.s.run_url}/v2/{self.s.run_job}:run", json=request, headers=await self._headers()
        )
        if response.status_code == 429:  # RESOURCE_EXHAUSTED: the project's GPU quota, used elsewhere too
            return await self._wait(job_id, request, document, task_id, queue_id, "GPU quota exhausted")
        if not response.is_success:
            return Answer(
                503, "run-failed", f"jobs:run answered {response.status_code}: {response.text[:200]}"
            )
        execution = str(response.json().get("metadata", {}).get("name", ""))
        await self._until_readable(execution)
        # If the execution already claimed it (it wrote `running` first), there is nothing to record.
        await self._update_while_queued(
            f"{self.s.collection}/{job_id}",
            {"state": "dispatched", "execution": execution, "dispatchedAt": _now()},
            document,
        )
        return Answer(200, "started", execution)

    async def _update_while_queued(self, path: str, fields: dict[str, Any], document: Any) -> bool:
        """Write `fields` if the job is still queued. The document may change under us without leaving
        `queued` (the submit names its task once the task exists): read it again and retry then."""
        for _ in range(UPDATE_TRIES):
            if document is None or document.fields.get("state") != QUEUED:
                return False
            try:
                await self.firestore.update(path, fields, if_update_time=document.update_time)
                return True
            except GoogleApiError as exc:
                if exc.status != "FAILED_PRECONDITION":
                    raise
            document = await self.firestore.get(path)
        return False

    async def running_executions(self) -> int:
        """Executions of the job not yet completed (pending or running: each holds or will hold a GPU)."""
        count, page = 0, ""
        while True:
            response = await self.http.get(
                f"{self.s.run_url}/v2/{self.s.run_job}/executions",
                params={"pageSize": "100", **({"pageToken": page} if page else {})},
                headers=await self._headers(),
            )
            raise_for_google(response)
            body = response.json()
            count += sum(1 for e in body.get("executions") or [] if not e.get("completionTime"))
            page = body.get("nextPageToken") or ""
            if not page:
                return count

    async def _until_readable(self, execution: str) -> None:
        for _ in range(VISIBLE_TRIES):
            response = await self.http.get(f"{self.s.run_url}/v2/{execution}", headers=await self._headers())
            if response.is_success:
                return
            await asyncio.sleep(VISIBLE_PERIOD_S)

    async def _wait(
        self, job_id: str, request: dict[str, Any], document: Any, task_id: str, queue_id: str, why: str
    ) -> Answer:
        submitted = document.fields.get("submittedAt")
        waited = (_now() - submitted).total_seconds() if isinstance(submitted, datetime) else 0.0
        path = f"{self.s.collection}/{job_id}"
        if waited >= self.s.max_wait_s:
            message = f"no GPU capacity within {self.s.max_wait_s} s of the submit ({why})"
            await self._update_while_queued(
                path,
                {
                    "state": "failed",
                    "finishedAt": _now(),
                    "error": {"reason": "no_capacity", "message": message, "retryable": True},
                },
                document,
            )
            return Answer(200, "gave-up", message)
        matched = WAIT_SUFFIX.match(task_id)
        waits = int(matched.group("n") or 0) + 1 if matched else 1
        queue = f"projects/{self.s.project}/locations/{self.s.location}/queues/{queue_id}"
        task = f"{queue}/tasks/{job_id}-w{waits}"
        created = await self.http.post(
            f"{self.s.tasks_url}/v2/{queue}/tasks",
            json={
                "task": {
                    "name": task,
                    "scheduleTime": _rfc3339(_now() + timedelta(seconds=self.s.wait_s)),
                    "dispatchDeadline": f"{self.s.dispatch_deadline_s}s",
                    "httpRequest": {
                        "httpMethod": "POST",
                        "url": f"{self.s.run_url}/v2/{self.s.run_job}:run",
                        "headers": {"Content-Type": "application/json"},
                        "body": base64.b64encode(json.dumps(request).encode()).decode(),
                        "oidcToken": {"serviceAccountEmail": self.s.invoker},
                    },
                }
            },
            headers=await self._headers(),
        )
        if created.status_code != 409:  # ALREADY_EXISTS: a duplicate delivery made it already
            raise_for_google(created)
        # Then the document names the task that now carries the job (`fleet jobs status` reads it to tell a
        # task the queue dropped from one waiting its turn).
        await self._update_while_queued(path, {"task": task}, document)
        return Answer(200, "waiting", f"{why}; {task} in {self.s.wait_s} s")


def _job_id(request: Mapping[str, Any]) -> str | None:
    for override in (request.get("overrides") or {}).get("containerOverrides") or []:
        for env in override.get("env") or []:
            if env.get("name") == JOB_ID_ENV and env.get("value"):
                return str(env["value"])
    return None


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def app(dispatcher: Dispatcher) -> Any:
    """The service as an ASGI app: POST (any path) with Cloud Tasks' headers."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers") or []}
        if scope["method"] != "POST":
            answer = Answer(405, "method-not-allowed")
        else:
            try:
                answer = await dispatcher.admit(
                    body, headers.get("x-cloudtasks-taskname", ""), headers.get("x-cloudtasks-queuename", "")
                )
            except (GoogleApiError, httpx.HTTPError, ValueError) as exc:
                answer = Answer(503, "error", str(exc)[:300])
        log.info("dispatch %s: %s %s", headers.get("x-cloudtasks-taskname"), answer.outcome, answer.detail)
        payload = json.dumps({"outcome": answer.outcome, "detail": answer.detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return asgi


async def serve_dispatch(environ: Mapping[str, str] | None = None) -> int:
    import uvicorn

    try:
        settings = DispatchSettings.from_environ(os.environ if environ is None else environ)
    except ValidationError as exc:
        for e in exc.errors():
            print(f"fleet-agent: dispatch: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as http:
        config = uvicorn.Config(app(Dispatcher(settings, http)), log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", settings.port))
        await server.serve(sockets=[sock])
    return 0
