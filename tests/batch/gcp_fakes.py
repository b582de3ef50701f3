"""Fakes of the Google APIs the batch path crosses, on 127.0.0.1, speaking their REST protocols: the paths,
JSON bodies, status codes and google.rpc error bodies of the real services (googleapis protos: cloud/tasks/v2,
cloud/run/v2, firestore/v1; the Cloud Storage JSON API; OAuth 2.0 and the metadata server's token endpoint).

- `Identity`: the OAuth token endpoint (JWT-bearer grant of a service account key, as google-auth calls it),
  per-service-account
  tokens for Cloud Tasks' OAuth dispatch, and a metadata server per identity (Metadata-Flavor required).
- `FakeFirestore`: documents get / createDocument (documentId; ALREADY_EXISTS) / patch (updateMask,
  currentDocument.exists / updateTime preconditions: NOT_FOUND, FAILED_PRECONDITION).
- `FakeCloudTasks`: CreateTask (named tasks, scheduleTime; ALREADY_EXISTS for a live name and for an hour
  after the task ran), GetTask (NOT_FOUND once a task succeeded or was dropped), and a dispatcher that honours the queue's rate limits, its http_target (URI override, OAuth
  token of the queue's service account, header overrides) and its RetryConfig: any non-2xx or no answer within
  the task's dispatchDeadline is retried after the documented backoff until maxAttempts (and
  maxRetryDuration) are reached, then the task is dropped.
- `FakeRunAdmin`: jobs:run answers with a long-running Operation at once and runs the execution: the task's
  container (a process) with the job's env, the overrides' env merged in, and Cloud Run's CLOUD_RUN_* vars;
  a non-zero exit is retried up to the job's maxRetries; the task timeout sends SIGTERM, then SIGKILL. Each
  execution holds a GPU of the project's quota until it ends (429 RESOURCE_EXHAUSTED beyond it); executions
  can be listed and read.
- `FakeRunService`: a Cloud Run service's front (roles/run.invoker), in front of the container's process.
- `FakeStorage`: simple media uploads and alt=media downloads.

Access follows IAM as the stack declares it: each fake is given the principals its bindings name, and refuses
anyone else with 403 PERMISSION_DENIED (a missing binding in the program fails the end-to-end test).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from node_image.agent.tests.agent_testkit.asgi import Receive, Scope, Send, header, read_body, respond

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
}
# Cloud Tasks: a task's name cannot be reused for about an hour after it ran (queues made through the API).
TASK_NAME_REUSE_S = 3600.0
TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
MAX_TASK_BYTES = 100 * 1024
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
# Cloud Run: after the task timeout, SIGTERM, then SIGKILL this long after.
RUN_KILL_GRACE_S = 10.0


async def google_error(send: Send, status: str, message: str) -> None:
    code = HTTP_STATUS[status]
    await respond(send, code, {"error": {"code": code, "message": message, "status": status}})


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def query_pairs(scope: Scope) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True)


def rfc3339(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def duration_s(text: str) -> float:
    """A protobuf Duration in JSON ('30s', '0.5s')."""
    if not text.endswith("s"):
        raise ValueError(f"not a duration: {text!r}")
    return float(text[:-1])


# --- identity --------------------------------------------------------------------------------------------


class Identity:
    """Who a bearer token belongs to: tokens minted by the OAuth endpoint (refresh-token grant), by Cloud
    Tasks for a queue's service account, and by the metadata servers for their service account."""

    def __init__(self) -> None:
        self._tokens: dict[str, frozenset[str]] = {}
        self._keys: dict[str, tuple[Any, str, frozenset[str]]] = {}  # key id -> public key, email, principals
        self._lock = threading.Lock()

    def mint(self, *principals: str) -> str:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = frozenset(principals)
        return token

    def add_service_account(self, email: str, groups: Sequence[str] = ()) -> tuple[str, str]:
        """A key for service account `email`, a member of `groups` (IAM bindings may name either): the
        private key (PEM) and its id, as a service account key file holds them."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        self._keys[key_id] = (
            key.public_key(),
            email,
            frozenset([f"serviceAccount:{email}", *(f"group:{g}" for g in groups)]),
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return pem, key_id

    def principals(self, scope: Scope) -> frozenset[str] | None:
        """Who the request's bearer token speaks for; None without a valid token."""
        auth = header(scope, "authorization") or ""
        if not auth.startswith("Bearer "):
            return None
        with self._lock:
            return self._tokens.get(auth.removeprefix("Bearer "))

    async def oauth(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /token, the OAuth 2.0 token endpoint, JWT-bearer grant (RFC 7523), as google-auth's service
        account credentials call it: an RS256 assertion signed with the account's key, for this audience."""
        if scope["type"] != "http":
            return
        form = dict(parse_qsl((await read_body(receive)).decode()))
        if scope["method"] != "POST" or scope["path"] != "/token":
            await respond(send, 404, "Not Found")
            return
        principals = self._verify(form, f"http://{header(scope, 'host')}/token")
        if principals is None:
            await respond(
                send, 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            )
            return
        token = self.mint(*principals)
        await respond(send, 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _verify(self, form: Mapping[str, str], audience: str) -> frozenset[str] | None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return None
        try:
            head, body, signature = form["assertion"].split(".")
            header_json = json.loads(_b64url(head))
            claims = json.loads(_b64url(body))
            public_key, email, principals = self._keys[header_json["kid"]]
            public_key.verify(
                _b64url(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (KeyError, ValueError, InvalidSignature):
            return None
        if claims.get("iss") != email or claims.get("exp", 0) < time.time():
            return None
        # google-auth addresses its assertion to Google's token endpoint wherever it posts it.
        if claims.get("aud") not in (audience, GOOGLE_TOKEN_AUDIENCE):
            return None
        return principals

    def metadata_server(self, service_account_email: str) -> Callable[[Scope, Receive, Send], Any]:
        """The metadata server an instance running as `service_account_email` sees."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            if header(scope, "metadata-flavor") != "Google":
                await respond(send, 403, "Missing required header: Metadata-Flavor", "text/html")
                return
            if scope["path"] != "/computeMetadata/v1/instance/service-accounts/default/token":
                await respond(send, 404, "Not Found", "text/html")
                return
            token = self.mint(f"serviceAccount:{service_account_email}")
            await respond(
                send,
                200,
                {"access_token": token, "expires_in": 3599, "token_type": "Bearer"},
                headers={"Metadata-Flavor": "Google"},
            )

        return app


# --- Firestore ---------------------------------------------------------------------------------------------


class FakeFirestore:
    """One database's documents (`projects/P/databases/D/documents/...`)."""

    def __init__(self, identity: Identity, database: str, members: set[str]) -> None:
        self.identity = identity
        self.database = database  # projects/P/databases/D
        self.members = members  # who holds roles/datastore.user on it
        self.documents: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []  # (document, method), in order
        self._clock = itertools.count()

    def _stamp(self) -> str:
        # Strictly increasing update times, as Firestore's are per document.
        return rfc3339(time.time() + next(self._clock) * 1e-6)

    def fields(self, path: str) -> dict[str, Any]:
        """A document's fields, decoded (for tests)."""
        return {k: _decode(v) for k, v in self.documents[path]["fields"].items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], unquote(scope["path"])
        body = await read_body(receive)
        prefix = f"/v1/{self.database}/documents/"
        if not path.startswith(prefix):
            await google_error(send, "NOT_FOUND", f"The database {path.removeprefix('/v1/')} does not exist.")
            return
        principals = self.identity.principals(scope)
        if principals is None:
            await google_error(send, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            return
        if not principals & self.members:
            await google_error(send, "PERMISSION_DENIED", "Missing or insufficient permissions.")
            return
        name = path.removeprefix("/v1/")
        params = query_pairs(scope)
        if method == "GET":
            document = self.documents.get(name)
            if document is None:
                await google_error(send, "NOT_FOUND", f'Document "{name}" not found.')
            else:
                await respond(send, 200, document)
        elif method == "POST":
            document_id = dict(params).get("documentId") or uuid.uuid4().hex[:20]
            full = f"{name}/{document_id}"
            if full in self.documents:
                await google_error(send, "ALREADY_EXISTS", f"Document already exists: {full}")
                return
            stamp = self._stamp()
            fields = json.loads(body or b"{}").get("fields") or {}
            self.documents[full] = {"name": full, "fields": fields, "createTime": stamp, "updateTime": stamp}
            self.writes.append((full, "create"))
            await respond(send, 200, self.documents[full])
        elif method == "PATCH":
            await self._patch(send, name, params, json.loads(body or b"{}"))
        else:
            await google_error(send, "INVALID_ARGUMENT", f"Method {method} not supported here.")

    async def _patch(
        self, send: Send, name: str, params: list[tuple[str, str]], body: dict[str, Any]
    ) -> None:
        mask = [v for k, v in params if k == "updateMask.fieldPaths"]
        options = dict(params)
        current = self.documents.get(name)
        if options.get("currentDocument.exists") == "true" and current is None:
            await google_error(send, "NOT_FOUND", f"No document to update: {name}")
            return
        wanted = options.get("currentDocument.updateTime")
        if wanted is not None and (current is None or current["updateTime"] != wanted):
            await google_error(send, "FAILED_PRECONDITION", "the stored version does not match the required")
            return
        given = body.get("fields") or {}
        stamp = self._stamp()
        document = current or {"name": name, "fields": {}, "createTime": stamp}
        if mask:
            for key in mask:  # in the mask but not in the body: deleted
                if key in given:
                    document["fields"][key] = given[key]
                else:
                    document["fields"].pop(key, None)
        else:
            document["fields"] = dict(given)
        document["updateTime"] = stamp
        self.documents[name] = document
        self.writes.append((name, "update"))
        await respond(send, 200, document)


def _decode(value: Mapping[str, Any]) -> Any:
    (kind, inner), *_ = value.items()
    if kind == "integerValue":
        return int(inner)
    if kind == "mapValue":
        return {k: _decode(v) for k, v in (inner.get("fields") or {}).items()}
    if kind == "arrayValue":
        return [_decode(v) for v in (inner.get("values") or [])]
    return inner


# --- Cloud Storage ----------------------------------------------------------------------------------------


class FakeStorage:
    def __init__(self, identity: Identity, buckets: Mapping[str, set[str]]) -> None:
        self.identity = identity
        self.buckets = buckets  # bucket -> principals with object access
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        body = await read_body(receive)
        params = dict(query_pairs(scope))
        upload = re.fullmatch(r"/upload/storage/v1/b/([^/]+)/o", path)
        download = re.fullmatch(r"/storage/v1/b/([^/]+)/o/(.+)", path)  # uvicorn decoded %2F already
        matched = upload or download
        if matched is None:
            await google_error(send, "NOT_FOUND", "Not Found")
            return
        bucket = matched.group(1)
        if bucket not in self.buckets:
            await google_error(send, "NOT_FOUND", "The specified bucket does not exist.")
            return
        principals = self.identity.principals(scope)
        if principals is None:
            await google_error(send, "UNAUTHENTICATED", "Anonymous caller does not have storage access.")
            return
        if not principals & self.buckets[bucket]:
            await google_error(send, "PERMISSION_DENIED", f"The caller has no access to bucket {bucket}.")
            return
        if upload and method == "POST" and params.get("uploadType") == "media" and params.get("name"):
            name = params["name"]
            content_type = header(scope, "content-type") or "application/octet-stream"
            self.objects[(bucket, name)] = (body, content_type)
            await respond(
                send,
                200,
                {
                    "kind": "storage#object",
                    "bucket": bucket,
                    "name": name,
                    "size": str(len(body)),
                    "contentType": content_type,
                    "generation": str(time.time_ns()),
                },
            )
        elif download and method == "GET" and params.get("alt") == "media":
            name = download.group(2)
            stored = self.objects.get((bucket, name))
            if stored is None:
                await google_error(send, "NOT_FOUND", f"No such object: {bucket}/{name}")
            else:
                await respond(send, 200, stored[0], stored[1])
        else:
            await google_error(send, "INVALID_ARGUMENT", "Unsupported request for this fake.")


# --- Cloud Run Admin -----------------------------------------------------------------------------------------


@dataclass
class RunJob:
    """A Cloud Run job as declared: its container command, env, retries, timeout, identity, who may run it."""

    name: str  # projects/P/locations/R/jobs/J
    container: str
    command: list[str]
    env: dict[str, str]
    max_retries: int
    timeout_s: float
    service_account: str
    executors: set[str]  # principals with run.jobs.runWithOverrides
    viewers: set[str] = field(default_factory=set)  # principals with run.executions.list/get (run.viewer)


@dataclass
class Execution:
    name: str
    overrides: dict[str, Any]
    created: float = field(default_factory=time.time)
    exit_codes: list[int | None] = field(default_factory=list)
    completed: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    # What the task's container wrote to stdout as JSON, one entry per line, as Cloud Logging keeps it
    # (jsonPayload): the log-based metrics' input.
    log_entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return bool(self.exit_codes) and self.exit_codes[-1] == 0

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "createTime": rfc3339(self.created),
            "taskCount": 1,
            "runningCount": 0 if self.completed else 1,
        }
        if self.completed is not None:
            body["completionTime"] = rfc3339(self.completed)
            body["succeededCount" if self.succeeded else "failedCount"] = 1
        return body


class FakeRunAdmin:
    """jobs:run (a long-running operation at once, the execution runs on), executions list and get.

    GPU quota: every execution holds one GPU from jobs:run until its last attempt ends ("Total Nvidia L4 GPU
    allocation, per project per region"); jobs:run beyond it is refused with 429 RESOURCE_EXHAUSTED. The
    most executions running at once is kept (`max_running`).
    """

    def __init__(
        self,
        identity: Identity,
        jobs: Sequence[RunJob],
        extra_env: Callable[[RunJob], dict[str, str]],
        gpu_quota: int | None = None,
    ):
        self.identity = identity
        self.jobs = {j.name: j for j in jobs}
        self.extra_env = extra_env  # what stands in for the image's platform (endpoints, local engine)
        self.gpu_quota = gpu_quota
        self.executions: list[Execution] = []
        self.unavailable_next = 0  # answer this many jobs:run with 503 (a dispatch the queue must retry)
        # The task timeout runs from the container's start, as on Cloud Run. A test may start it instead once
        # `timeout_from(execution, attempt)` is true (an event it chooses), so that a short timeout stops the
        # attempt at a known point rather than racing the container's start on a slow machine.
        self.timeout_from: Callable[[Execution, int], bool] | None = None
        self.kill_grace_s = RUN_KILL_GRACE_S  # SIGTERM at the timeout, SIGKILL this long after
        self.calls: list[int] = []  # status codes answered to jobs:run
        self.max_running = 0
        self._lock = threading.Lock()
        self._released: threading.Event | None = None

    def hold(self) -> threading.Event:
        """Executions started from now on wait for the returned event before their container starts."""
        self._released = threading.Event()
        return self._released

    def running(self) -> int:
        return sum(1 for e in self.executions if e.completed is None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        path = scope["path"]
        run = re.fullmatch(r"/v2/(projects/[^/]+/locations/[^/]+/jobs/[^/:]+):run", path)
        listing = re.fullmatch(r"/v2/(projects/[^/]+/locations/[^/]+/jobs/[^/:]+)/executions", path)
        one = re.fullmatch(r"/v2/((projects/[^/]+/locations/[^/]+/jobs/[^/:]+)/executions/[^/:]+)", path)
        if scope["method"] == "POST" and run is not None:
            self.calls.append(await self._run(send, run.group(1), scope, body))
        elif scope["method"] == "GET" and listing is not None:
            await self._read(send, scope, listing.group(1), None)
        elif scope["method"] == "GET" and one is not None:
            await self._read(send, scope, one.group(2), one.group(1))
        else:
            await google_error(send, "NOT_FOUND", "Not Found")

    async def _read(self, send: Send, scope: Scope, job_name: str, execution: str | None) -> None:
        job = self.jobs.get(job_name)
        principals = self.identity.principals(scope)
        if principals is None:
            await google_error(send, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            return
        if job is None or not principals & job.viewers:
            await google_error(
                send, "PERMISSION_DENIED", f"Permission 'run.executions.list' denied on {job_name}"
            )
            return
        with self._lock:
            mine = [e for e in self.executions if e.name.startswith(f"{job_name}/executions/")]
        if execution is None:
            newest_first = sorted(mine, key=lambda e: e.created, reverse=True)
            await respond(send, 200, {"executions": [e.as_json() for e in newest_first]})
            return
        found = next((e for e in mine if e.name == execution), None)
        if found is None:
            await google_error(send, "NOT_FOUND", f"Execution {execution} not found.")
        else:
            await respond(send, 200, found.as_json())

    async def _run(self, send: Send, name: str, scope: Scope, body: bytes) -> int:
        job = self.jobs.get(name)
        principals = self.identity.principals(scope)
        if principals is None:
            await google_error(send, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            return 401
        if job is None or not principals & job.executors:
            # Cloud Run answers 403 for both, not to reveal whether the job exists.
            await google_error(
                send, "PERMISSION_DENIED", f"Permission 'run.jobs.runWithOverrides' denied on {name}"
            )
            return 403
        if self.unavailable_next > 0:
            self.unavailable_next -= 1
            await google_error(send, "UNAVAILABLE", "The service is currently unavailable.")
            return 503
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError:
            await google_error(send, "INVALID_ARGUMENT", "Invalid JSON payload received.")
            return 400
        overrides = request.get("overrides") or {}
        for override in overrides.get("containerOverrides") or []:
            if override.get("name") not in (None, "", job.container):
                await google_error(send, "INVALID_ARGUMENT", f"container {override.get('name')!r} not in job")
                return 400
        execution = Execution(
            f"{name}/executions/{name.rsplit('/', 1)[-1]}-{secrets.token_hex(3)}", overrides
        )
        with self._lock:
            if self.gpu_quota is not None and self.running() >= self.gpu_quota:
                refused = True
            else:
                refused = False
                self.executions.append(execution)
                self.max_running = max(self.max_running, self.running())
        if refused:
            await google_error(
                send, "RESOURCE_EXHAUSTED", "Quota exceeded for total allowable Nvidia L4 GPU allocation."
            )
            return 429
        threading.Thread(target=self._execute, args=(job, execution), daemon=True).start()
        location = name.rsplit("/jobs/", 1)[0]
        await respond(
            send,
            200,
            {
                "name": f"{location}/operations/{uuid.uuid4()}",
                "metadata": {
                    "@type": "type.googleapis.com/google.cloud.run.v2.Execution",
                    "name": execution.name,
                    "job": name.rsplit("/", 1)[-1],
                    "taskCount": int(overrides.get("taskCount") or 1),
                },
                "done": False,
            },
        )
        return 200

    def _execute(self, job: RunJob, execution: Execution) -> None:
        env = dict(job.env)
        for override in execution.overrides.get("containerOverrides") or []:
            env.update({e["name"]: e.get("value", "") for e in override.get("env") or []})  # merged
        timeout = (
            duration_s(execution.overrides["timeout"]) if "timeout" in execution.overrides else job.timeout_s
        )
        released = self._released
        try:
            if released is not None:
                released.wait()
            for attempt in range(job.max_retries + 1):
                run_env = {
                    **os.environ,
                    **env,
                    **self.extra_env(job),
                    "CLOUD_RUN_JOB": job.name.rsplit("/", 1)[-1],
                    "CLOUD_RUN_EXECUTION": execution.name.rsplit("/", 1)[-1],
                    "CLOUD_RUN_TASK_INDEX": "0",
                    "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
                    "CLOUD_RUN_TASK_COUNT": "1",
                }
                process = subprocess.Popen(
                    job.command, env=run_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
                )
                reader = threading.Thread(target=self._log, args=(process, execution), daemon=True)
                reader.start()
                if self.timeout_from is not None:
                    while process.poll() is None and not self.timeout_from(execution, attempt):
                        time.sleep(0.01)
                try:
                    code: int | None = process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGTERM)
                    try:
                        code = process.wait(self.kill_grace_s)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        code = process.wait()
                reader.join()
                execution.exit_codes.append(code)
                if code == 0:
                    break
        finally:
            with self._lock:
                execution.completed = time.time()
            execution.done.set()

    @staticmethod
    def _log(process: subprocess.Popen[str], execution: Execution) -> None:
        """Cloud Run's logging agent: a JSON line on stdout is a structured entry, anything else text."""
        assert process.stdout is not None
        for line in process.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    execution.log_entries.append(entry)


class FakeRunService:
    """A Cloud Run service's front: the caller's token must be one an invoker holds (roles/run.invoker),
    then the request goes to the container (an ASGI app or a process's URL) as it came."""

    def __init__(self, identity: Identity, invokers: set[str], upstream: str) -> None:
        self.identity = identity
        self.invokers = invokers
        self.upstream = upstream  # the container's base URL
        self.answers: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        principals = self.identity.principals(scope)
        if principals is None or not principals & self.invokers:
            await respond(send, 403, "Forbidden: the caller may not invoke this service", "text/html")
            self.answers.append(403)
            return
        headers = {k.decode(): v.decode() for k, v in scope.get("headers") or [] if k.lower() != b"host"}
        async with httpx.AsyncClient(timeout=None) as client:
            response = await client.request(
                scope["method"], self.upstream + scope["path"], content=body, headers=headers
            )
        self.answers.append(response.status_code)
        await respond(send, response.status_code, response.content, response.headers.get("content-type"))


# --- Cloud Tasks ------------------------------------------------------------------------------------------


@dataclass
class Queue:
    name: str  # projects/P/locations/R/queues/Q
    max_dispatches_per_second: float
    max_concurrent_dispatches: int
    max_attempts: int
    min_backoff_s: float
    max_backoff_s: float
    max_doublings: int
    max_retry_duration_s: float
    http_method: str
    uri_override: dict[str, Any]
    token_service_account: str  # the OAuth or OIDC token's identity (httpTarget.oauthToken / oidcToken)
    header_overrides: dict[str, str]
    enqueuers: set[str]
    act_as: set[str]  # principals with iam.serviceAccountUser on the token's service account
    viewers: set[str] = field(default_factory=set)  # principals with cloudtasks.tasks.get

    @property
    def token_principal(self) -> str:
        return f"serviceAccount:{self.token_service_account}"

    @property
    def queue_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass
class Task:
    name: str
    http_request: dict[str, Any]
    dispatch_deadline_s: float
    created: float
    schedule: float
    attempts: list[tuple[float, int | None]] = field(default_factory=list)  # (dispatch time, HTTP status)
    finished: float | None = None
    outcome: str | None = None  # "done" (2xx) or "dropped" (retries ran out)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "httpRequest": {k: v for k, v in self.http_request.items() if k != "body"},  # BASIC view
            "scheduleTime": rfc3339(self.schedule),
            "createTime": rfc3339(self.created),
            "dispatchDeadline": f"{self.dispatch_deadline_s:g}s",
            "dispatchCount": len(self.attempts),
            "responseCount": sum(1 for _, s in self.attempts if s is not None),
            "view": "BASIC",
        }


def retry_delay_s(queue: Queue, retry: int) -> float:
    """queue.proto RetryConfig.max_doublings: min_backoff, doubled max_doublings times, then growing
    linearly by min_backoff * 2^max_doublings, never above max_backoff. `retry` counts from 1."""
    if retry - 1 <= queue.max_doublings:
        interval = queue.min_backoff_s * 2 ** (retry - 1)
    else:
        interval = queue.min_backoff_s * 2**queue.max_doublings * (retry - 1 - queue.max_doublings + 1)
    return min(interval, queue.max_backoff_s)


class FakeCloudTasks:
    def __init__(self, identity: Identity, queues: Sequence[Queue], hosts: Mapping[str, str]) -> None:
        self.identity = identity
        self.queues = {q.name: q for q in queues}
        self.hosts = dict(hosts)  # a target host (run.googleapis.com) -> the fake's base URL
        self.tasks: dict[str, Task] = {}
        self._wake: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self._start_dispatcher()
        path = scope["path"]
        principals = self.identity.principals(scope)
        if principals is None:
            await google_error(send, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            return
        create = re.fullmatch(r"/v2/(projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks", path)
        if create and scope["method"] == "POST":
            await self._create(send, create.group(1), principals, body)
        elif scope["method"] == "GET" and (
            get := re.fullmatch(r"/v2/((projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks/[^/]+)", path)
        ):
            queue = self.queues.get(get.group(2))
            task = self.tasks.get(get.group(1))
            if queue is not None and not principals & queue.viewers:
                await google_error(send, "PERMISSION_DENIED", "The principal lacks cloudtasks.tasks.get.")
            elif task is None or task.finished is not None:
                # A task is deleted once it succeeded or ran out of attempts (its name stays reserved).
                await google_error(send, "NOT_FOUND", "Requested entity was not found.")
            else:
                await respond(send, 200, task.as_json())
        else:
            await google_error(send, "NOT_FOUND", "Requested entity was not found.")

    async def _create(self, send: Send, queue_name: str, principals: frozenset[str], body: bytes) -> None:
        queue = self.queues.get(queue_name)
        if queue is None:
            await google_error(send, "NOT_FOUND", "Queue does not exist.")
            return
        if not principals & queue.enqueuers:
            await google_error(send, "PERMISSION_DENIED", "The principal lacks cloudtasks.tasks.create.")
            return
        if len(body) > MAX_TASK_BYTES:
            await google_error(send, "INVALID_ARGUMENT", "Task size too large")
            return
        task = (json.loads(body or b"{}").get("task")) or {}
        http = task.get("httpRequest") or {}
        if not http.get("url"):
            await google_error(send, "INVALID_ARGUMENT", "HttpRequest.url is required")
            return
        token = http.get("oauthToken") or http.get("oidcToken")
        if token and not principals & queue.act_as:
            await google_error(send, "PERMISSION_DENIED", "The principal lacks iam.serviceAccounts.actAs.")
            return
        name = task.get("name") or f"{queue_name}/tasks/{secrets.randbelow(10**19)}"
        if not name.startswith(f"{queue_name}/tasks/") or not TASK_ID.match(name.rsplit("/", 1)[-1]):
            await google_error(send, "INVALID_ARGUMENT", f"Invalid task name: {name}")
            return
        existing = self.tasks.get(name)
        now = time.time()
        if existing is not None and (
            existing.finished is None or now - existing.finished < TASK_NAME_REUSE_S
        ):
            await google_error(send, "ALREADY_EXISTS", "Requested entity already exists")
            return
        deadline = duration_s(task.get("dispatchDeadline", "600s"))
        if not 15 <= deadline <= 1800:
            await google_error(send, "INVALID_ARGUMENT", "dispatch_deadline must be in [15s, 30m]")
            return
        schedule = now
        if task.get("scheduleTime"):
            schedule = datetime.fromisoformat(task["scheduleTime"].replace("Z", "+00:00")).timestamp()
        created = Task(name, http, deadline, created=now, schedule=schedule)
        self.tasks[name] = created
        if self._wake is not None:
            self._wake.set()
        await respond(send, 200, created.as_json())

    # --- the dispatcher ------------------------------------------------------------------------------

    def _start_dispatcher(self) -> None:
        if self._dispatcher is None:
            self._wake = asyncio.Event()
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_loop())

    async def _dispatch_loop(self) -> None:
        assert self._wake is not None
        in_flight: dict[str, int] = {q: 0 for q in self.queues}
        last_dispatch: dict[str, float] = {q: 0.0 for q in self.queues}
        running: set[str] = set()
        async with httpx.AsyncClient() as client:
            while True:
                now = time.time()
                for task in list(self.tasks.values()):
                    queue = self.queues[task.name.rsplit("/tasks/", 1)[0]]
                    if task.finished is not None or task.name in running or task.schedule > now:
                        continue
                    if in_flight[queue.name] >= queue.max_concurrent_dispatches:
                        continue
                    if now - last_dispatch[queue.name] < 1 / queue.max_dispatches_per_second:
                        continue
                    last_dispatch[queue.name] = now
                    in_flight[queue.name] += 1
                    running.add(task.name)

                    async def attempt(task: Task = task, queue: Queue = queue) -> None:
                        try:
                            await self._attempt(client, queue, task)
                        finally:
                            in_flight[queue.name] -= 1
                            running.discard(task.name)
                            self._wake.set()  # type: ignore[union-attr]

                    asyncio.get_running_loop().create_task(attempt())
                self._wake.clear()
                await _wait_event(self._wake, 0.05)

    async def _attempt(self, client: httpx.AsyncClient, queue: Queue, task: Task) -> None:
        started = time.time()
        status: int | None = None
        try:
            response = await client.request(
                queue.http_method or task.http_request.get("httpMethod", "POST"),
                self._url(queue, task),
                content=base64.b64decode(task.http_request.get("body") or ""),
                headers={
                    **(task.http_request.get("headers") or {}),
                    **queue.header_overrides,
                    "Authorization": f"Bearer {self.identity.mint(queue.token_principal)}",
                    "X-CloudTasks-QueueName": queue.queue_id,
                    "X-CloudTasks-TaskName": task.name.rsplit("/", 1)[-1],
                    "X-CloudTasks-TaskRetryCount": str(len(task.attempts)),
                },
                timeout=task.dispatch_deadline_s,
            )
            status = response.status_code
        except httpx.HTTPError:
            status = None  # no answer within the deadline: a failed attempt
        task.attempts.append((started, status))
        if status is not None and 200 <= status < 300:
            task.finished, task.outcome = time.time(), "done"
            return
        first = task.attempts[0][0]
        attempts = len(task.attempts)
        if attempts >= queue.max_attempts and time.time() - first >= queue.max_retry_duration_s:
            task.finished, task.outcome = time.time(), "dropped"
            return
        task.schedule = time.time() + retry_delay_s(queue, attempts)

    def _url(self, queue: Queue, task: Task) -> str:
        parts = urlsplit(task.http_request["url"])
        override = queue.uri_override
        host = override.get("host") or parts.hostname or ""
        path = (override.get("pathOverride") or {}).get("path") or parts.path
        base = self.hosts.get(host)
        if base is None:
            raise AssertionError(f"the fake has no service for host {host!r}")
        return base + path


async def _wait_event(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
