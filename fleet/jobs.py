"""`fleet jobs submit | status | wait`: the batch client, REST on the wire (httpx; google-auth for the token).

    fleet jobs submit --stack prod --job llm-batch --input items.jsonl [--idempotency-key K]
    fleet jobs submit --stack prod --job llm-batch --input-uri gs://bucket/items.jsonl
    fleet jobs status --stack prod --job llm-batch JOB_ID
    fleet jobs wait   --stack prod --job llm-batch JOB_ID [--timeout 3600]

Where things are comes from the stack file (gcpProject, gcpRegion, the job's config), the names the batch
component gives its resources (components/batch/names.py), and the deployed stack's directory document
(Firestore `batchJobs/<job>`: the queue, whose name changes whenever it is replaced): nothing is rendered,
no Pulumi CLI is needed.

submit: checks the input (JSON Lines in the job's schema, the parser the job itself uses) before anything
is sent. The job id is a digest of (job, idempotency key). It creates the status document (`queued`, with
`expireAt` for the TTL policy) with that id, then the Cloud Task named with it, whose body is the `jobs:run`
request overriding FLEET_JOB_ID; it prints the job id at once. Submitting the same key again is a no-op: the
document exists and is past `queued` (nothing is enqueued), or the task name is taken (Cloud Tasks refuses a
name for about an hour after its task ran: ALREADY_EXISTS). A submit that died between the two calls is
completed by the next one. Without --idempotency-key every submit is a new job.

status / wait: a job still `queued` whose task is gone (Cloud Tasks dropped it after the queue's attempts)
is recorded and shown as `failed` (reason `dropped`); the document names the task that carries the job.

Credentials: GOOGLE_OAUTH_ACCESS_TOKEN when set (ESC's gcp-login sets it), else Application Default
Credentials. Endpoints: Google's, or FLEET_FIRESTORE_URL / FLEET_CLOUDTASKS_URL (tests point them at fakes).

Exit codes: 0 done (submit/status answered, or the job succeeded); 1 the job failed; 2 bad arguments, stack
file or job name; 3 an API refused or failed; 124 `wait` gave up before the job finished.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # the program's packages load only when a jobs command runs (`fleet --help` stays quick)
    from components.batch.names import BatchNames

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_API, EXIT_TIMEOUT = 0, 1, 2, 3, 124
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
TERMINAL = ("succeeded", "failed")
# An inline input travels in the status document (a Firestore document is at most 1 MiB).
MAX_INLINE_INPUT_BYTES = 512 * 1024
WAIT_FIRST_POLL_S = 0.5
WAIT_MAX_POLL_S = 10.0


class JobsError(Exception):
    """One line for the user, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    """One batch job of one stack: its names and what the client needs of its config."""

    names: BatchNames
    database: str
    dispatch_deadline_s: int
    status_retention_days: int
    model: str  # the name the job's engine serves: input lines are checked against it

    @classmethod
    def from_stack(cls, config: Mapping[str, str], stack: str, job: str) -> Target:
        from components.batch.config import BatchJobConfig  # validated as the program validates it
        from components.batch.names import BatchNames, database_name

        project = config.get("inference-fleet:gcpProject")
        if not project:
            raise JobsError(f"stack {stack}: inference-fleet:gcpProject is not set")
        region = config.get("inference-fleet:gcpRegion", "us-central1")
        from pydantic import ValidationError

        try:
            raw = json.loads(config.get("inference-fleet:batchJobs", "[]"))
            jobs = [BatchJobConfig.model_validate(j) for j in raw]
        except (ValueError, ValidationError) as exc:
            raise JobsError(f"stack {stack}: batchJobs is invalid (`fleet plan` says how): {exc}") from None
        found = next((j for j in jobs if j.name == job), None)
        if found is None:
            known = ", ".join(j.name for j in jobs) or "none"
            raise JobsError(f"stack {stack} has no batch job {job!r}; its batch jobs: {known}")
        names = BatchNames(stack, project, region, job)
        return cls(
            names,
            database_name(stack),
            found.queue.dispatch_deadline_seconds,
            found.status_retention_days,
            found.model.name,
        )


@dataclass(frozen=True)
class Endpoints:
    firestore: str = "https://firestore.googleapis.com"
    tasks: str = "https://cloudtasks.googleapis.com"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Endpoints:
        return cls(
            firestore=environ.get("FLEET_FIRESTORE_URL", cls.firestore).rstrip("/"),
            tasks=environ.get("FLEET_CLOUDTASKS_URL", cls.tasks).rstrip("/"),
        )


def access_token(environ: Mapping[str, str]) -> str:
    token = environ.get("GOOGLE_OAUTH_ACCESS_TOKEN")
    if token:
        return token
    import google.auth
    import google.auth.exceptions
    from google.auth.transport.requests import Request

    try:
        credentials, _ = google.auth.default(scopes=[SCOPE])
        credentials.refresh(Request())  # pyright: ignore[reportAttributeAccessIssue]
    except google.auth.exceptions.GoogleAuthError as exc:
        raise JobsError(f"no Google credentials: {exc}", EXIT_API) from None
    return str(credentials.token)  # pyright: ignore[reportAttributeAccessIssue]


# --- Firestore values (google.firestore.v1.Value in JSON) ----------------------------------------------


def to_value(value: Any) -> dict[str, Any]:
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, datetime):
        return {"timestampValue": value.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    if isinstance(value, dict):
        return {"mapValue": {"fields": {k: to_value(v) for k, v in value.items()}}}
    if isinstance(value, list):
        return {"arrayValue": {"values": [to_value(v) for v in value]}}
    return {"stringValue": str(value)}


def from_value(value: Mapping[str, Any]) -> Any:
    (kind, inner), *_ = value.items()
    if kind == "integerValue":
        return int(inner)
    if kind == "mapValue":
        return {k: from_value(v) for k, v in (inner.get("fields") or {}).items()}
    if kind == "arrayValue":
        return [from_value(v) for v in (inner.get("values") or [])]
    return inner  # strings, numbers, booleans, null; timestamps stay RFC 3339 text


def _rfc3339(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON: {value!r}")


def _google_error(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error.get('status') or response.status_code}: {error.get('message')}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:200]}"


class JobsClient:
    def __init__(self, target: Target, token: str, endpoints: Endpoints, http: httpx.Client) -> None:
        self.target = target
        self.endpoints = endpoints
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}
        names = target.names
        self.documents = (
            f"{endpoints.firestore}/v1/projects/{names.project}/databases/{target.database}/documents"
        )

    def submit(
        self, *, input_text: str | None, input_uri: str | None, idempotency_key: str | None
    ) -> dict[str, Any]:
        from components.batch.names import STATUS_COLLECTION, STATUS_EXPIRY_FIELD, job_id_for

        names = self.target.names
        queue = self.queue()
        key = idempotency_key or uuid.uuid4().hex
        job_id = job_id_for(names.job, key)
        task = f"{queue}/tasks/{job_id}"
        submitted = datetime.now(UTC)
        fields: dict[str, Any] = {
            "jobId": job_id,
            "job": names.job,
            "idempotencyKey": key,
            "state": "queued",
            "attempt": 0,
            "submittedAt": submitted,
            STATUS_EXPIRY_FIELD: submitted + timedelta(days=self.target.status_retention_days),
        }
        if input_text is not None:
            fields["input"] = input_text
        else:
            fields["inputUri"] = input_uri
        created = self.http.post(
            f"{self.documents}/{STATUS_COLLECTION}",
            params={"documentId": job_id},
            json={"fields": {k: to_value(v) for k, v in fields.items()}},
            headers=self.headers,
        )
        if created.status_code == 409:  # ALREADY_EXISTS: this key was submitted before
            # Its task may be missing (that submit stopped half way): this submit completes it.
            existing, update_time = self._document(job_id)
            if existing.get("state") != "queued" or existing.get("task") not in (None, task):
                # Past queued, or waiting for capacity in a later task of its own: nothing to add.
                return {"jobId": job_id, "duplicate": True, "state": existing.get("state")}
        elif not created.is_success:
            raise JobsError(f"creating the status document: {_google_error(created)}", EXIT_API)
        else:
            update_time = str(created.json().get("updateTime"))
        duplicate = self._enqueue(task, job_id)
        # Only now does the document name its task: `status` reads a named task that is gone as dropped, so
        # it must never see the name before the task exists. The admission check may have moved the job on
        # already (dispatched, or waiting in a later task): then the document stays as it wrote it.
        self._name_task(job_id, task, update_time)
        return {"jobId": job_id, "duplicate": duplicate, "state": "queued", "task": task}

    def _name_task(self, job_id: str, task: str, update_time: str) -> None:
        from components.batch.names import STATUS_COLLECTION

        response = self.http.patch(
            f"{self.documents}/{STATUS_COLLECTION}/{job_id}",
            params=(("updateMask.fieldPaths", "task"), ("currentDocument.updateTime", update_time)),
            json={"fields": {"task": to_value(task)}},
            headers=self.headers,
        )
        if response.status_code == 400 and "FAILED_PRECONDITION" in response.text:
            return
        if not response.is_success:
            raise JobsError(f"naming the job's task: {_google_error(response)}", EXIT_API)

    def queue(self) -> str:
        """The job's queue, as the deployed stack's directory document names it."""
        from components.batch.names import DIRECTORY_COLLECTION

        names = self.target.names
        response = self.http.get(f"{self.documents}/{DIRECTORY_COLLECTION}/{names.job}", headers=self.headers)
        if response.status_code == 404:
            raise JobsError(
                f"no directory document {DIRECTORY_COLLECTION}/{names.job} in {self.target.database}: "
                "is the stack deployed (`pulumi up`)?",
                EXIT_API,
            )
        if not response.is_success:
            raise JobsError(f"reading the job's directory: {_google_error(response)}", EXIT_API)
        queue = from_value((response.json().get("fields") or {}).get("queue") or {"nullValue": None})
        if not isinstance(queue, str) or not queue.startswith(f"{names.location_path}/queues/"):
            raise JobsError(f"the directory names no queue in {names.location_path}: {queue!r}", EXIT_API)
        return queue

    def _enqueue(self, task_name: str, job_id: str) -> bool:
        """Create the named task; True when the name was taken (a duplicate)."""
        from components.batch.names import CONTAINER_NAME, JOB_ID_ENV
        from components.core.catalog.gcp import CLOUD_TASKS_MAX_TASK_BYTES

        names = self.target.names
        run = {
            "overrides": {
                "containerOverrides": [
                    {"name": CONTAINER_NAME, "env": [{"name": JOB_ID_ENV, "value": job_id}]}
                ],
                "taskCount": 1,
            }
        }
        task = {
            "name": task_name,
            "dispatchDeadline": f"{self.target.dispatch_deadline_s}s",
            "httpRequest": {
                # The queue sends it to the job's admission check whatever the URL says (uriOverride).
                "httpMethod": "POST",
                "url": f"https://run.googleapis.com/v2/{names.run_job_path}:run",
                "headers": {"Content-Type": "application/json"},
                "body": base64.b64encode(json.dumps(run).encode()).decode(),
                "oidcToken": {
                    "serviceAccountEmail": names.service_account_email(names.dispatcher_account_id)
                },
            },
        }
        body = json.dumps({"task": task})
        assert len(body) < CLOUD_TASKS_MAX_TASK_BYTES
        response = self.http.post(
            f"{self.endpoints.tasks}/v2/{task_name.rsplit('/tasks/', 1)[0]}/tasks",
            content=body,
            headers={**self.headers, "Content-Type": "application/json"},
        )
        if response.status_code == 409:
            return True
        if not response.is_success:
            raise JobsError(f"creating the task: {_google_error(response)}", EXIT_API)
        return False

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status document; a job still `queued` whose task the queue dropped becomes `failed`.
        One that names no task yet is being submitted (or its submit stopped half way: submitting it again
        with the same key completes it)."""
        fields, update_time = self._document(job_id)
        if (
            fields.get("state") == "queued"
            and isinstance(fields.get("task"), str)
            and self._task_gone(fields["task"])
        ):
            return self._record_dropped(job_id, fields, update_time)
        return fields

    def _document(self, job_id: str) -> tuple[dict[str, Any], str]:
        from components.batch.names import STATUS_COLLECTION

        response = self.http.get(f"{self.documents}/{STATUS_COLLECTION}/{job_id}", headers=self.headers)
        if response.status_code == 404:
            raise JobsError(f"no job {job_id} in {self.target.names.job}", EXIT_USAGE)
        if not response.is_success:
            raise JobsError(f"reading the status: {_google_error(response)}", EXIT_API)
        body = response.json()
        return {k: from_value(v) for k, v in (body.get("fields") or {}).items()}, str(body.get("updateTime"))

    def _task_gone(self, task: str) -> bool:
        response = self.http.get(f"{self.endpoints.tasks}/v2/{task}", headers=self.headers)
        if response.status_code == 404:
            return True
        if not response.is_success:
            raise JobsError(f"reading the job's task: {_google_error(response)}", EXIT_API)
        return False

    def _record_dropped(self, job_id: str, fields: dict[str, Any], update_time: str) -> dict[str, Any]:
        """Cloud Tasks deletes a task once it succeeded or ran out of attempts. The admission check writes
        the document (`dispatched`, or the next task's name) before its dispatch succeeds, so a document
        unchanged since it was read, whose task is gone, was dropped: record it, if still unchanged."""
        from components.batch.names import STATUS_COLLECTION

        now = datetime.now(UTC)
        update = {
            "state": "failed",
            "finishedAt": now,
            "error": {
                "reason": "dropped",
                "message": "Cloud Tasks gave up dispatching it after the queue's attempts (retryConfig)",
                "retryable": True,
            },
        }
        response = self.http.patch(
            f"{self.documents}/{STATUS_COLLECTION}/{job_id}",
            params=(
                *(("updateMask.fieldPaths", key) for key in update),
                ("currentDocument.updateTime", update_time),
            ),
            json={"fields": {k: to_value(v) for k, v in update.items()}},
            headers=self.headers,
        )
        if response.status_code == 400 and "FAILED_PRECONDITION" in response.text:
            return self.status(job_id)  # it moved on since it was read: read it again
        if not response.is_success:
            raise JobsError(f"recording the dropped job: {_google_error(response)}", EXIT_API)
        return {**fields, **json.loads(json.dumps(update, default=_rfc3339))}

    def wait(self, job_id: str, timeout_s: float) -> dict[str, Any]:
        """Poll with backoff (0.5 s doubling to 10 s) until the job succeeds or fails, or `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        delay = WAIT_FIRST_POLL_S
        while True:
            status = self.status(job_id)
            if status.get("state") in TERMINAL:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                state = status.get("state")
                raise JobsError(f"job {job_id} still {state} after {timeout_s:g} s", EXIT_TIMEOUT)
            time.sleep(min(delay, left))
            delay = min(delay * 2, WAIT_MAX_POLL_S)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = commands.add_parser("jobs", help="submit batch jobs and follow them (Cloud Tasks -> Cloud Run)")
    actions = jobs.add_subparsers(dest="action", required=True)
    for name, help_text in (
        ("submit", "create the job's status document and its named Cloud Task; print the job id"),
        ("status", "print a job's status document"),
        ("wait", "poll a job's status (with backoff) until it succeeds or fails"),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        action.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
        action.add_argument("--job", required=True, help="the batch job's name (batchJobs[].name)")
        action.add_argument("-C", "--cwd", type=Path, default=Path.cwd(), help="run as if started in DIR")
        if name == "submit":
            source = action.add_mutually_exclusive_group(required=True)
            source.add_argument("--input", type=Path, help="JSON lines file, sent inline (at most 512 KiB)")
            source.add_argument("--input-uri", help="gs://bucket/object the job can read")
            action.add_argument("--idempotency-key", help="same key, same job: a resubmit is a no-op")
        else:
            action.add_argument("job_id", metavar="JOB_ID")
        if name == "wait":
            action.add_argument("--timeout", type=float, default=3600.0, help="seconds (default 3600)")


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    from fleet.stackfile import StackFileError, find_project_dir, load_stack

    try:
        stack = load_stack(find_project_dir(args.cwd.resolve()), args.stack)
        target = Target.from_stack(stack.config, args.stack, args.job)
        input_text = _read_input(args.input, target.model) if args.action == "submit" and args.input else None
        if args.action == "submit" and args.input_uri and not args.input_uri.startswith("gs://"):
            raise JobsError(f"--input-uri {args.input_uri}: expected gs://bucket/object")
        with httpx.Client(timeout=30.0) as http:
            client = JobsClient(target, access_token(environ), Endpoints.from_environ(environ), http)
            if args.action == "submit":
                result = client.submit(
                    input_text=input_text, input_uri=args.input_uri, idempotency_key=args.idempotency_key
                )
                print(json.dumps(result), flush=True)
                return EXIT_OK
            if args.action == "status":
                status = client.status(args.job_id)
            else:
                status = client.wait(args.job_id, args.timeout)
    except (JobsError, StackFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "code", EXIT_USAGE)
    except httpx.RequestError as exc:
        print(f"error: cannot reach {exc.request.url.host}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_API
    except httpx.HTTPError as exc:
        print(f"error: {exc!r}", file=sys.stderr)
        return EXIT_API
    print(json.dumps(status, indent=2, sort_keys=True))
    if args.action == "wait":
        return EXIT_OK if status.get("state") == "succeeded" else EXIT_FAILED
    return EXIT_OK


def _read_input(path: Path, model: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JobsError(f"--input {path}: {exc.strerror}") from None
    if len(data) > MAX_INLINE_INPUT_BYTES:
        raise JobsError(
            f"--input {path}: {len(data)} bytes; inline input is at most {MAX_INLINE_INPUT_BYTES} "
            "(upload it and give --input-uri)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JobsError(f"--input {path}: not UTF-8 text") from None
    from fleet_agent.batch_input import BadInput, parse_items  # the parser the job reads it with

    try:
        parse_items(text, model)
    except BadInput as exc:
        raise JobsError(f"--input {path}: {exc}") from None
    return text
