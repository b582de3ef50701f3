"""Batch GPU work on GCP: a Cloud Tasks queue per job dispatches `jobs:run` (with an OAuth token) to a Cloud
Run GPU job whose container is the node image with the agent in job mode; status lives in Firestore, results
in the job's bucket.

    BatchJobs (once per stack): the project's APIs, the Artifact Registry repository, the node image built
      from node_image/Dockerfile per engine (pinned by digest), the Firestore status database
    BatchJob (per `batchJobs[]` entry): service accounts (runner, dispatcher), the results bucket, the Cloud
      Run job, the queue, IAM bindings, and its alerts (alerts.py)

Who may do what: the runner writes its bucket and the status database and reads the model's bucket; the
dispatcher may only run this job with overrides; submitters may enqueue, act as the dispatcher (Cloud Tasks
needs it to mint the OAuth token), write status documents and read results.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp
import pulumiverse_time as time

from components.batch.admission import AdmissionTargets, declare_admission
from components.batch.alerts import BatchAlertTargets, declare_alerts
from components.batch.config import BatchJobConfig
from components.batch.names import (
    CONTAINER_NAME,
    DIRECTORY_COLLECTION,
    STATUS_COLLECTION,
    STATUS_EXPIRY_FIELD,
    BatchNames,
    database_name,
    repository_name,
)
from components.batch.outputs import BatchJobOutputs, BatchOutputs
from components.core.container_image import node_container_images
from components.core.context import GcpContext, StackContext
from components.model_store import MountSpec

# APIs the batch side calls; enabled by the program so `pulumi up` works on a fresh project (and left on
# at destroy: other workloads may use them).
APIS = (
    "artifactregistry.googleapis.com",
    "cloudtasks.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
)


@dataclass(frozen=True)
class BatchJobsArgs:
    stack: StackContext
    gcp: GcpContext
    jobs: Sequence[BatchJobConfig]
    # Each job's model, from the model store (its bucket, mounted read-only).
    mounts: Mapping[str, MountSpec]


class BatchJobs(pulumi.ComponentResource):
    """What every batch job of the stack shares, and one BatchJob per configured job."""

    def __init__(self, name: str, args: BatchJobsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inference-fleet:batch:BatchJobs", name, None, opts)
        stack, ctx = args.stack, args.gcp
        services = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=ctx.project,
                service=api,
                disable_on_destroy=False,
                opts=ctx.options(self),
            )
            for api in APIS
        ]

        def child(**kwargs: Any) -> pulumi.ResourceOptions:
            return ctx.options(self, depends_on=services, **kwargs)

        repository = gcp.artifactregistry.Repository(
            f"{name}-images",
            project=ctx.project,
            location=ctx.region,
            repository_id=repository_name(stack.stack),
            format="DOCKER",
            description=f"inference-fleet {stack.stack}: the node image (engine + agent) for batch jobs",
            labels={"component": "batch"},
            opts=child(),
        )
        registry = f"{ctx.region}-docker.pkg.dev"
        token = gcp.organizations.get_client_config_output(
            opts=pulumi.InvokeOutputOptions(provider=ctx.provider)
        ).access_token
        images = node_container_images(
            name,
            self,
            sorted({job.engine for job in args.jobs}),
            tag=lambda engine: pulumi.Output.concat(
                registry, "/", ctx.project, "/", repository.repository_id, f"/node-{engine}:{stack.stack}"
            ),
            registry=docker_build.RegistryArgs(
                address=registry, username="oauth2accesstoken", password=pulumi.Output.secret(token)
            ),
            repository=repository,
        )

        # The alerts' wait for their log-based metrics (alerts.py); a provider of its own, as every resource
        # names one.
        time_provider = time.Provider(f"{name}-time", opts=pulumi.ResourceOptions(parent=self))

        database: gcp.firestore.Database | None = None
        protection = "ENABLED" if stack.deletion_protection else "DISABLED"
        if args.jobs:
            database = gcp.firestore.Database(
                f"{name}-status",
                project=ctx.project,
                name=database_name(stack.stack),
                location_id=ctx.region,
                type="FIRESTORE_NATIVE",
                concurrency_mode="OPTIMISTIC",
                point_in_time_recovery_enablement=(
                    "POINT_IN_TIME_RECOVERY_ENABLED"
                    if stack.deletion_protection
                    else "POINT_IN_TIME_RECOVERY_DISABLED"
                ),
                delete_protection_state=f"DELETE_PROTECTION_{protection}",
                # The provider's default (ABANDON) would leave a dev database behind on destroy.
                deletion_policy="ABANDON" if stack.deletion_protection else "DELETE",
                opts=child(protect=stack.deletion_protection),
            )

        if database is not None:
            # Status documents expire: the client sets expireAt (submit + statusRetentionDays), and Firestore
            # deletes a document after it (typically within 24 hours: Firestore "Manage data retention with
            # TTL policies"). No index on it: a TTL timestamp field needs none, and an index on a
            # monotonically growing field hot-spots.
            gcp.firestore.Field(
                f"{name}-status-expiry",
                project=ctx.project,
                database=database.name,
                collection=STATUS_COLLECTION,
                field=STATUS_EXPIRY_FIELD,
                ttl_config=gcp.firestore.FieldTtlConfigArgs(),
                index_config=gcp.firestore.FieldIndexConfigArgs(),
                opts=child(),
            )

        jobs: dict[str, BatchJobOutputs] = {}
        for job in args.jobs:
            assert database is not None
            component = BatchJob(
                f"{name}-{job.name}",
                BatchJobArgs(
                    stack=stack,
                    gcp=ctx,
                    job=job,
                    mount=args.mounts[job.name],
                    image=images[job.engine],
                    database=database.name,
                    depends_on=services,
                    time_provider=time_provider,
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            jobs[job.name] = component.outputs
        self.outputs = BatchOutputs(
            project=ctx.project,
            region=ctx.region,
            database=database.name if database is not None else None,
            images=images,
            jobs=jobs,
        )
        self.register_outputs({"jobs": list(jobs)})


@dataclass(frozen=True)
class BatchJobArgs:
    stack: StackContext
    gcp: GcpContext
    job: BatchJobConfig
    mount: MountSpec
    image: pulumi.Input[str]
    database: pulumi.Input[str]
    depends_on: Sequence[pulumi.Resource]
    time_provider: pulumi.ProviderResource


class BatchJob(pulumi.ComponentResource):
    """One batch job: its identities, bucket, Cloud Run job, queue, IAM and alerts."""

    def __init__(self, name: str, args: BatchJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inference-fleet:batch:BatchJob", name, None, opts)
        stack, ctx, job = args.stack, args.gcp, args.job
        names = BatchNames(stack.stack, ctx.project, ctx.region, job.name)
        project = ctx.project
        labels = {"component": "batch", "job": job.name}

        def child(**kwargs: Any) -> pulumi.ResourceOptions:
            return ctx.options(self, depends_on=list(args.depends_on), **kwargs)

        runner = gcp.serviceaccount.Account(
            f"{name}-runner",
            project=project,
            account_id=names.runner_account_id,
            display_name=f"fleet {stack.stack} {job.name}: batch job",
            description="Runs the batch job: writes its results and status, reads its model.",
            opts=child(),
        )
        dispatcher = gcp.serviceaccount.Account(
            f"{name}-dispatcher",
            project=project,
            account_id=names.dispatcher_account_id,
            display_name=f"fleet {stack.stack} {job.name}: Cloud Tasks dispatcher",
            description="Cloud Tasks' OIDC identity and the admission check's: starts this job's executions.",
            opts=child(),
        )
        bucket = gcp.storage.Bucket(
            f"{name}-results",
            project=project,
            name=names.bucket,
            location=ctx.region.upper(),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=not stack.deletion_protection,
            versioning=gcp.storage.BucketVersioningArgs(enabled=stack.deletion_protection),
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=job.results_retention_days),
                ),
                # With versioning, the rule above only makes the live version noncurrent: this one deletes
                # noncurrent versions, so results are gone at most retention + noncurrent days after.
                *(
                    [
                        gcp.storage.BucketLifecycleRuleArgs(
                            action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                            condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                                days_since_noncurrent_time=job.results_noncurrent_days
                            ),
                        )
                    ]
                    if stack.deletion_protection
                    else []
                ),
            ],
            labels=labels,
            opts=child(),
        )
        run_job = self._run_job(name, args, names, runner, bucket, labels)
        admission = declare_admission(
            AdmissionTargets(
                name=name,
                gcp=ctx,
                job=job,
                names=names,
                image=args.image,
                database=args.database,
                run_job=run_job,
                dispatcher=dispatcher,
                deletion_protection=stack.deletion_protection,
                labels=labels,
                parent=self,
                depends_on=args.depends_on,
            )
        )
        # Auto-named (`<logical name>-<7 hex>`, new on every create): Cloud Tasks may refuse a deleted
        # queue's name for up to 3 days, or seem to accept it (REST v2 queues.delete), so a queue that is
        # replaced, or created again after a destroy, never reuses one. Clients find it in the directory.
        queue = gcp.cloudtasks.Queue(
            f"{name}-queue",
            project=project,
            location=ctx.region,
            rate_limits=gcp.cloudtasks.QueueRateLimitsArgs(
                max_dispatches_per_second=job.queue.max_dispatches_per_second,
                # One at a time: each admission counts the running executions before it starts one.
                max_concurrent_dispatches=1,
            ),
            retry_config=gcp.cloudtasks.QueueRetryConfigArgs(
                max_attempts=job.queue.max_attempts,
                min_backoff=f"{job.queue.min_backoff_seconds}s",
                max_backoff=f"{job.queue.max_backoff_seconds}s",
                max_doublings=job.queue.max_doublings,
                max_retry_duration=f"{job.queue.max_retry_duration_seconds}s",
            ),
            # Every task of this queue goes to the job's admission check, with the dispatcher's OIDC token,
            # whatever URL a client put in the task.
            http_target=gcp.cloudtasks.QueueHttpTargetArgs(
                http_method="POST",
                uri_override=gcp.cloudtasks.QueueHttpTargetUriOverrideArgs(
                    scheme="HTTPS",
                    host=admission.uri.apply(lambda uri: uri.removeprefix("https://").rstrip("/")),
                    path_override=gcp.cloudtasks.QueueHttpTargetUriOverridePathOverrideArgs(path="/admit"),
                    uri_override_enforce_mode="ALWAYS",
                ),
                header_overrides=[
                    gcp.cloudtasks.QueueHttpTargetHeaderOverrideArgs(
                        header=gcp.cloudtasks.QueueHttpTargetHeaderOverrideHeaderArgs(
                            key="Content-Type", value="application/json"
                        )
                    )
                ],
                oidc_token=gcp.cloudtasks.QueueHttpTargetOidcTokenArgs(
                    service_account_email=dispatcher.email, audience=admission.uri
                ),
            ),
            opts=child(),
        )
        # Where `fleet jobs` finds the queue (and the status collection beside it).
        gcp.firestore.Document(
            f"{name}-directory",
            project=project,
            database=args.database,
            collection=DIRECTORY_COLLECTION,
            document_id=job.name,
            fields=queue.name.apply(
                lambda queue_id: json.dumps(
                    {"queue": {"stringValue": f"{names.location_path}/queues/{queue_id}"}}
                )
            ),
            opts=ctx.options(self),
        )
        self._bind(name, args, names, runner, dispatcher, bucket, run_job, queue)
        declare_alerts(
            BatchAlertTargets(
                name=name,
                stack=stack.stack,
                project=project,
                job=job,
                names=names,
                queue=queue,
                labels=labels,
                time_provider=args.time_provider,
            ),
            ctx.options(self, depends_on=list(args.depends_on)),
        )
        self.outputs = BatchJobOutputs(
            name=job.name,
            run_job=run_job.name,
            queue=queue.name,
            bucket=bucket.name,
            dispatcher_email=dispatcher.email,
            give_up_after_seconds=job.queue.give_up_after_seconds,
            worst_case_seconds=job.worst_case_seconds,
        )
        self.register_outputs({"job": run_job.name, "queue": queue.name, "bucket": bucket.name})

    def _run_job(
        self,
        name: str,
        args: BatchJobArgs,
        names: BatchNames,
        runner: gcp.serviceaccount.Account,
        bucket: gcp.storage.Bucket,
        labels: dict[str, str],
    ) -> gcp.cloudrunv2.Job:
        stack, ctx, job = args.stack, args.gcp, args.job
        mount = args.mount
        model_path = mount.model_dir
        env: dict[str, pulumi.Input[str]] = {
            # The agent's own config (fleet-agent reads FLEET_AGENT__<SECTION>__<KEY>).
            "FLEET_AGENT__NODE__REGION": ctx.region,
            "FLEET_AGENT__NODE__POOL": job.name,
            "FLEET_AGENT__NODE__ACCELERATOR": "gpu",
            "FLEET_AGENT__ENGINE__KIND": job.engine,
            "FLEET_AGENT__ENGINE__MODELS": json.dumps([job.model.name]),
            "FLEET_AGENT__ENGINE__MODEL_PATH": model_path,
            "FLEET_AGENT__ENGINE__PARALLEL": str(job.parallel),
            # Job mode: where status and results go, and how many attempts Cloud Run makes.
            "FLEET_JOB_NAME": job.name,
            "FLEET_JOB_PROJECT": ctx.project,
            "FLEET_JOB_DATABASE": args.database,
            "FLEET_JOB_COLLECTION": STATUS_COLLECTION,
            "FLEET_JOB_BUCKET": bucket.name,
            "FLEET_JOB_MAX_RETRIES": str(job.max_retries),
        }
        return gcp.cloudrunv2.Job(
            f"{name}-job",
            project=ctx.project,
            location=ctx.region,
            name=names.run_job,
            deletion_protection=stack.deletion_protection,
            labels=labels,
            template=gcp.cloudrunv2.JobTemplateArgs(
                task_count=1,
                parallelism=1,
                labels=labels,
                template=gcp.cloudrunv2.JobTemplateTemplateArgs(
                    service_account=runner.email,
                    max_retries=job.max_retries,
                    timeout=f"{job.task_timeout_seconds}s",
                    execution_environment="EXECUTION_ENVIRONMENT_GEN2",
                    node_selector=gcp.cloudrunv2.JobTemplateTemplateNodeSelectorArgs(accelerator=job.gpu),
                    # No zonal redundancy: it needs its own GPU quota, and a failed task is retried anyway.
                    gpu_zonal_redundancy_disabled=True,
                    containers=[
                        gcp.cloudrunv2.JobTemplateTemplateContainerArgs(
                            name=CONTAINER_NAME,
                            image=args.image,
                            args=["job"],
                            envs=[
                                gcp.cloudrunv2.JobTemplateTemplateContainerEnvArgs(name=k, value=v)
                                for k, v in env.items()
                            ],
                            resources=gcp.cloudrunv2.JobTemplateTemplateContainerResourcesArgs(
                                limits={
                                    "cpu": str(job.cpu),
                                    "memory": f"{job.memory_gib}Gi",
                                    "nvidia.com/gpu": "1",
                                }
                            ),
                            volume_mounts=[
                                gcp.cloudrunv2.JobTemplateTemplateContainerVolumeMountArgs(
                                    name="models", mount_path=mount.mount_point
                                )
                            ],
                        )
                    ],
                    volumes=[
                        gcp.cloudrunv2.JobTemplateTemplateVolumeArgs(
                            name="models",
                            gcs=gcp.cloudrunv2.JobTemplateTemplateVolumeGcsArgs(
                                bucket=mount.volume, read_only=mount.read_only
                            ),
                        )
                    ],
                ),
            ),
            opts=ctx.options(self, depends_on=list(args.depends_on)),
        )

    def _bind(
        self,
        name: str,
        args: BatchJobArgs,
        names: BatchNames,
        runner: gcp.serviceaccount.Account,
        dispatcher: gcp.serviceaccount.Account,
        bucket: gcp.storage.Bucket,
        run_job: gcp.cloudrunv2.Job,
        queue: gcp.cloudtasks.Queue,
    ) -> None:
        ctx, job = args.gcp, args.job
        opts = ctx.options(self)
        project = ctx.project
        model_bucket = args.mount.volume
        # Firestore roles are project-wide; the condition holds them to the stack's status database.
        database_only = gcp.projects.IAMMemberConditionArgs(
            title="batch-status-database-only",
            description="Only the batch status database",
            expression=pulumi.Output.concat(
                'resource.name == "projects/', project, "/databases/", args.database, '"'
            ),
        )
        gcp.projects.IAMMember(
            f"{name}-runner-status",
            project=project,
            role="roles/datastore.user",
            member=runner.member,
            condition=database_only,
            opts=opts,
        )
        gcp.storage.BucketIAMMember(
            f"{name}-runner-results",
            bucket=bucket.name,
            role="roles/storage.objectUser",
            member=runner.member,
            opts=opts,
        )
        gcp.storage.BucketIAMMember(
            f"{name}-runner-model",
            bucket=model_bucket,
            role="roles/storage.objectViewer",
            member=runner.member,
            opts=opts,
        )
        gcp.cloudrunv2.JobIamMember(
            f"{name}-dispatcher-run",
            project=project,
            location=ctx.region,
            name=run_job.name,
            role="roles/run.jobsExecutorWithOverrides",
            member=dispatcher.member,
            opts=opts,
        )
        # The admission check: updates status documents, and enqueues the task of a job it makes wait.
        gcp.projects.IAMMember(
            f"{name}-dispatcher-status",
            project=project,
            role="roles/datastore.user",
            member=dispatcher.member,
            condition=database_only,
            opts=opts,
        )
        gcp.cloudtasks.QueueIamMember(
            f"{name}-dispatcher-enqueue",
            project=project,
            location=ctx.region,
            name=queue.name,
            role="roles/cloudtasks.enqueuer",
            member=dispatcher.member,
            opts=opts,
        )
        for i, member in enumerate(job.submitters):
            gcp.cloudtasks.QueueIamMember(
                f"{name}-submitter{i}-enqueue",
                project=project,
                location=ctx.region,
                name=queue.name,
                role="roles/cloudtasks.enqueuer",
                member=member,
                opts=opts,
            )
            # `fleet jobs status` reads the job's task: a queued job whose task is gone was dropped.
            gcp.cloudtasks.QueueIamMember(
                f"{name}-submitter{i}-view",
                project=project,
                location=ctx.region,
                name=queue.name,
                role="roles/cloudtasks.viewer",
                member=member,
                opts=opts,
            )
            # Creating a task that carries the dispatcher's OAuth token needs actAs on that account.
            gcp.serviceaccount.IAMMember(
                f"{name}-submitter{i}-act-as-dispatcher",
                service_account_id=dispatcher.name,
                role="roles/iam.serviceAccountUser",
                member=member,
                opts=opts,
            )
            gcp.projects.IAMMember(
                f"{name}-submitter{i}-status",
                project=project,
                role="roles/datastore.user",
                member=member,
                condition=database_only,
                opts=opts,
            )
            gcp.storage.BucketIAMMember(
                f"{name}-submitter{i}-results",
                bucket=bucket.name,
                role="roles/storage.objectViewer",
                member=member,
                opts=opts,
            )
