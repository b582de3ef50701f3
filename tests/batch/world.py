"""A stack's batch job as `fleet plan` renders it, standing on the fakes: the queue's rate limits, retry config
and HTTP target, the Cloud Run job's container, env, retries, timeout and identity, the admission service's
container and env, the directory document, and every IAM binding are read from the recorded resources, so
the fakes behave as the declared stack would. The admission check runs as its own process
(`fleet-agent dispatch`, the service's args) behind a fake Cloud Run front.

What stands in for the container image and the platform (the only differences from a Cloud Run task): the
entrypoint is this environment's `fleet-agent`, the engine is real llama.cpp (xllamacpp) on a tiny model on
the CPU in place of the job's vLLM on an L4 (neither vLLM nor a GPU runs here), probes run faster, and the
Google endpoints point at the fakes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from components.core.catalog.resource_types import (
    CLOUD_RUN_JOB,
    CLOUD_RUN_JOB_IAM_MEMBER,
    CLOUD_RUN_SERVICE,
    CLOUD_RUN_SERVICE_IAM_MEMBER,
    CLOUD_TASKS_QUEUE,
    CLOUD_TASKS_QUEUE_IAM_MEMBER,
    FIRESTORE_DATABASE,
    FIRESTORE_DOCUMENT,
    GCS_BUCKET,
    GCS_BUCKET_IAM_MEMBER,
    PROJECT_IAM_MEMBER,
    SERVICE_ACCOUNT_IAM_MEMBER,
)
from fleet.harness import Rendering
from node_image.agent.tests.agent_testkit.harness import FAST_PROBES, FAST_SUPERVISOR, LLAMA_SERVER
from node_image.agent.tests.agent_testkit.net import ThreadedServer, free_port, wait_for

from .gcp_fakes import (
    FakeCloudTasks,
    FakeFirestore,
    FakeRunAdmin,
    FakeRunService,
    FakeStorage,
    Identity,
    Queue,
    RunJob,
    duration_s,
)

FLEET_AGENT = str(Path(sys.executable).with_name("fleet-agent"))
SUBMITTER_EMAIL = "ci-submitter@acme-inference-dev.iam.gserviceaccount.com"
CRASHING_ENGINE = [sys.executable, str(Path(__file__).with_name("crashing_engine.py"))]


def _members(rendering: Rendering, type_: str, role: str, **match: Any) -> set[str]:
    return {
        r.inputs["member"]
        for r in rendering.of_type(type_)
        if r.inputs["role"] == role and all(r.inputs.get(k) == v for k, v in match.items())
    }


class BatchWorld:
    """The fakes, configured from one rendered batch job, and the environment a client and a task get."""

    def __init__(
        self,
        rendering: Rendering,
        tiny_model: Path,
        *,
        engine: list[str] | None = None,
        gpu_quota: int | None = None,
    ) -> None:
        self.rendering = rendering
        self.tiny_model = tiny_model
        self.engine = engine or LLAMA_SERVER
        self.identity = Identity()
        job = rendering.one(CLOUD_RUN_JOB)
        queue = rendering.one(CLOUD_TASKS_QUEUE)
        database = rendering.one(FIRESTORE_DATABASE)
        bucket = rendering.one(GCS_BUCKET, "batch-smoke-results")
        self.service = rendering.one(CLOUD_RUN_SERVICE)
        project = job.inputs["project"]
        self.job_name = job.inputs["name"]
        self.database_path = f"projects/{project}/databases/{database.inputs['name']}"
        self.bucket = bucket.inputs["name"]
        template = job.inputs["template"]["template"]
        (container,) = template["containers"]
        self.run_job = RunJob(
            name=f"projects/{project}/locations/{job.inputs['location']}/jobs/{self.job_name}",
            container=container["name"],
            command=[FLEET_AGENT, *container["args"]],
            env={e["name"]: e["value"] for e in container["envs"]},
            max_retries=int(template["maxRetries"]),
            timeout_s=duration_s(template["timeout"]),
            service_account=template["serviceAccount"],
            executors=_members(rendering, CLOUD_RUN_JOB_IAM_MEMBER, "roles/run.jobsExecutorWithOverrides"),
            viewers=_members(rendering, CLOUD_RUN_JOB_IAM_MEMBER, "roles/run.viewer"),
        )
        target = queue.inputs["httpTarget"]
        retry, rates = queue.inputs["retryConfig"], queue.inputs["rateLimits"]
        token = target["oidcToken"]
        assert token["audience"] == self.service.outputs["uri"], "the queue's OIDC audience is the service"
        dispatcher = token["serviceAccountEmail"]
        act_as = {
            r.inputs["member"]
            for r in rendering.of_type(SERVICE_ACCOUNT_IAM_MEMBER)
            if r.inputs["role"] == "roles/iam.serviceAccountUser"
            and r.inputs["serviceAccountId"].endswith(dispatcher)
        }
        self.queue = Queue(
            name=f"projects/{project}/locations/{queue.inputs['location']}/queues/{queue.physical_name}",
            max_dispatches_per_second=float(rates["maxDispatchesPerSecond"]),
            max_concurrent_dispatches=int(rates["maxConcurrentDispatches"]),
            max_attempts=int(retry["maxAttempts"]),
            min_backoff_s=duration_s(retry["minBackoff"]),
            max_backoff_s=duration_s(retry["maxBackoff"]),
            max_doublings=int(retry["maxDoublings"]),
            max_retry_duration_s=duration_s(retry["maxRetryDuration"]),
            http_method=target["httpMethod"],
            uri_override=target["uriOverride"],
            token_service_account=dispatcher,
            header_overrides={
                h["header"]["key"]: h["header"]["value"] for h in target.get("headerOverrides", [])
            },
            enqueuers=_members(rendering, CLOUD_TASKS_QUEUE_IAM_MEMBER, "roles/cloudtasks.enqueuer"),
            act_as=act_as,
            viewers=_members(rendering, CLOUD_TASKS_QUEUE_IAM_MEMBER, "roles/cloudtasks.viewer"),
        )
        self.dispatcher_email = dispatcher
        self.firestore = FakeFirestore(
            self.identity,
            self.database_path,
            _members(rendering, PROJECT_IAM_MEMBER, "roles/datastore.user"),
        )
        # What `pulumi up` wrote: the directory document naming the queue.
        directory = rendering.one(FIRESTORE_DOCUMENT)
        self.firestore.documents[
            f"{self.database_path}/documents/{directory.inputs['collection']}/{directory.inputs['documentId']}"
        ] = {"fields": json.loads(directory.inputs["fields"]), "updateTime": "2026-01-01T00:00:00Z"}
        self.storage = FakeStorage(
            self.identity,
            {
                self.bucket: {
                    r.inputs["member"]
                    for r in rendering.of_type(GCS_BUCKET_IAM_MEMBER)
                    if r.inputs["bucket"] == self.bucket
                }
            },
        )
        self.run = FakeRunAdmin(self.identity, [self.run_job], self._task_env, gpu_quota=gpu_quota)
        self.submitter_groups = [
            m.removeprefix("group:") for m in self.queue.enqueuers if m.startswith("group:")
        ]
        self.urls: dict[str, str] = {}
        self._tasks_port = free_port()
        self._stack = ExitStack()

    @property
    def max_running(self) -> int:
        """The cap the rendered admission service enforces."""
        return int(self._service_env()["FLEET_DISPATCH_MAX_RUNNING"])

    def _service_env(self) -> dict[str, str]:
        (container,) = self.service.inputs["template"]["containers"]
        return {e["name"]: e["value"] for e in container["envs"]}

    def __enter__(self) -> BatchWorld:
        servers = {
            "oauth": _asgi(self.identity.oauth),
            "metadata": self.identity.metadata_server(self.run_job.service_account),
            "dispatcher-metadata": self.identity.metadata_server(self.dispatcher_email),
            "firestore": self.firestore,
            "storage": self.storage,
            "run": self.run,
        }
        for name, app in servers.items():
            self.urls[name] = self._stack.enter_context(ThreadedServer(app)).url
        admission = self._start_admission()
        host = self.service.outputs["uri"].removeprefix("https://")
        self.tasks = FakeCloudTasks(self.identity, [self.queue], {host: admission})
        self.urls["tasks"] = self._stack.enter_context(ThreadedServer(self.tasks, self._tasks_port)).url
        return self

    def _start_admission(self) -> str:
        """The admission service: its container's args on this environment's fleet-agent, with the rendered
        env (Cloud Run sets PORT) and the endpoints pointed at the fakes, behind Cloud Run's IAM front."""
        (container,) = self.service.inputs["template"]["containers"]
        port = free_port()
        env = {
            **os.environ,
            **self._service_env(),
            "PORT": str(port),
            "GCE_METADATA_HOST": self.urls["dispatcher-metadata"].removeprefix("http://"),
            "FLEET_DISPATCH_RUN_URL": self.urls["run"],
            "FLEET_DISPATCH_TASKS_URL": f"http://127.0.0.1:{self._tasks_port}",  # bound below
            "FLEET_JOB_FIRESTORE_URL": self.urls["firestore"],
        }
        process = subprocess.Popen([FLEET_AGENT, *container["args"]], env=env, stdin=subprocess.DEVNULL)
        self._stack.callback(_stop, process)
        wait_for(
            lambda: _listening(port) or process.poll() is not None, 30, "the admission service to listen"
        )
        assert process.poll() is None, f"fleet-agent dispatch exited {process.returncode}"
        invokers = _members(self.rendering, CLOUD_RUN_SERVICE_IAM_MEMBER, "roles/run.invoker")
        self.admission = FakeRunService(self.identity, invokers, f"http://127.0.0.1:{port}")
        return self._stack.enter_context(ThreadedServer(self.admission)).url

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _task_env(self, job: RunJob) -> dict[str, str]:
        agent = {
            "NODE__ACCELERATOR": "cpu",
            "ENGINE__KIND": "llamacpp",
            "ENGINE__MODEL_PATH": str(self.tiny_model),
            "ENGINE__EXECUTABLE": json.dumps(self.engine),
            "ENGINE__PORT": str(free_port()),
            **{f"PROBES__{k.upper()}": str(v) for k, v in FAST_PROBES.items()},
            **{f"SUPERVISOR__{k.upper()}": str(v) for k, v in FAST_SUPERVISOR.items()},
        }
        return {
            **{f"FLEET_AGENT__{k}": v for k, v in agent.items()},
            "GCE_METADATA_HOST": self.urls["metadata"].removeprefix("http://"),
            "FLEET_JOB_FIRESTORE_URL": self.urls["firestore"],
            "FLEET_JOB_STORAGE_URL": self.urls["storage"],
        }

    def client_environ(self, directory: Path) -> dict[str, str]:
        """What `fleet jobs` needs: Application Default Credentials of a submitter (a service account key file,
        a member of the stack's submitter group, whose token_uri is the fake OAuth endpoint: google-auth signs
        its JWT and exchanges it there) and the endpoints."""
        credentials = directory / "submitter-key.json"
        private_key, key_id = self.identity.add_service_account(SUBMITTER_EMAIL, self.submitter_groups)
        credentials.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": self.run_job.name.split("/")[1],
                    "private_key_id": key_id,
                    "private_key": private_key,
                    "client_email": SUBMITTER_EMAIL,
                    "client_id": "100000000000000000001",
                    "token_uri": f"{self.urls['oauth']}/token",
                }
            )
        )
        return {
            "GOOGLE_APPLICATION_CREDENTIALS": str(credentials),
            "FLEET_FIRESTORE_URL": self.urls["firestore"],
            "FLEET_CLOUDTASKS_URL": self.urls["tasks"],
        }

    def hold_executions(self) -> threading.Event:
        """Executions start (and hold their GPU) but their container waits until the event is set: a slow
        instance start, made deterministic."""
        return self.run.hold()

    def wait_for_execution(self, timeout: float) -> None:
        """Until jobs:run has started an execution (the dispatcher runs on its own schedule)."""
        wait_for(lambda: self.run.executions, timeout, "an execution of the job")

    def finished_executions(self, timeout: float = 30) -> list[Any]:
        """Every execution, once its task's process has exited (the status is written just before)."""
        for execution in self.run.executions:
            assert execution.done.wait(timeout), f"{execution.name} still running after {timeout} s"
        return list(self.run.executions)

    def document(self, job_id: str) -> dict[str, Any]:
        return self.firestore.fields(f"{self.database_path}/documents/jobs/{job_id}")

    def task(self, job_id: str, waits: int = 0) -> Any:
        """The job's task, or the one that carries it after admission made it wait `waits` times."""
        return self.tasks.tasks[f"{self.queue.name}/tasks/{job_id}{f'-w{waits}' if waits else ''}"]


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _asgi(method: Any) -> Any:
    """A bound method as an ASGI 3 app (uvicorn takes a bound method for the older single-callable style)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await method(scope, receive, send)

    return app


@contextmanager
def batch_world(rendering: Rendering, tiny_model: Path, **kwargs: Any) -> Iterator[BatchWorld]:
    with BatchWorld(rendering, tiny_model, **kwargs) as world:
        yield world
