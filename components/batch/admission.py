"""A batch job's admission check: the Cloud Run service (CPU only, the node image with the agent in
dispatch mode, `fleet_agent/dispatch.py`) that the job's queue dispatches every task to, and which starts a
GPU execution only while fewer than the job's maxConcurrentExecutions run.

Its identity is the job's dispatcher account, which Cloud Tasks also mints the OIDC token for: it may invoke
this service, run the job with overrides and read its executions, update status documents, and enqueue the
task that carries a job refused for capacity (with its own token: actAs on itself).
Ingress stays open to all, behind IAM (only the dispatcher may invoke it): whether Cloud Tasks' requests
count as internal traffic is not documented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.batch.config import BatchJobConfig
from components.batch.names import STATUS_COLLECTION, BatchNames
from components.core.context import GcpContext

# The admission check's own size: it only makes a few API calls per dispatch.
CPU, MEMORY = "1", "512Mi"


@dataclass(frozen=True)
class AdmissionTargets:
    name: str
    gcp: GcpContext
    job: BatchJobConfig
    names: BatchNames
    image: pulumi.Input[str]
    database: pulumi.Input[str]
    run_job: gcp.cloudrunv2.Job
    dispatcher: gcp.serviceaccount.Account
    deletion_protection: bool
    labels: dict[str, str]
    parent: pulumi.Resource
    depends_on: Sequence[pulumi.Resource]  # the project's APIs


def declare_admission(t: AdmissionTargets) -> gcp.cloudrunv2.Service:
    ctx, job = t.gcp, t.job
    env: dict[str, pulumi.Input[str]] = {
        "FLEET_DISPATCH_RUN_JOB": t.run_job.name.apply(
            lambda name: f"projects/{ctx.project}/locations/{ctx.region}/jobs/{name}"
        ),
        "FLEET_DISPATCH_MAX_RUNNING": str(job.max_concurrent_executions),
        "FLEET_DISPATCH_WAIT_SECONDS": str(job.queue.capacity_wait_seconds),
        "FLEET_DISPATCH_MAX_WAIT_SECONDS": str(job.queue.max_wait_seconds),
        "FLEET_DISPATCH_DEADLINE_SECONDS": str(job.queue.dispatch_deadline_seconds),
        "FLEET_DISPATCH_INVOKER": t.dispatcher.email,
        "FLEET_JOB_DATABASE": t.database,
        "FLEET_JOB_COLLECTION": STATUS_COLLECTION,
    }
    service = gcp.cloudrunv2.Service(
        f"{t.name}-admission",
        project=ctx.project,
        location=ctx.region,
        name=t.names.admission_service,
        deletion_protection=t.deletion_protection,
        ingress="INGRESS_TRAFFIC_ALL",
        labels=t.labels,
        template=gcp.cloudrunv2.ServiceTemplateArgs(
            service_account=t.dispatcher.email,
            # One admission at a time, on one instance: the queue sends one task at a time anyway.
            max_instance_request_concurrency=1,
            scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(min_instance_count=0, max_instance_count=1),
            timeout=f"{job.queue.dispatch_deadline_seconds}s",
            labels=t.labels,
            containers=[
                gcp.cloudrunv2.ServiceTemplateContainerArgs(
                    image=t.image,
                    args=["dispatch"],
                    envs=[
                        gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=k, value=v)
                        for k, v in env.items()
                    ],
                    resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                        limits={"cpu": CPU, "memory": MEMORY}, cpu_idle=True
                    ),
                )
            ],
        ),
        opts=ctx.options(t.parent, depends_on=list(t.depends_on)),
    )
    member = t.dispatcher.member
    grants = ctx.options(t.parent)
    gcp.cloudrunv2.ServiceIamMember(
        f"{t.name}-dispatcher-invoke",
        project=ctx.project,
        location=ctx.region,
        name=service.name,
        role="roles/run.invoker",
        member=member,
        opts=grants,
    )
    # Listing the job's executions (the count the cap is checked against).
    gcp.cloudrunv2.JobIamMember(
        f"{t.name}-dispatcher-view",
        project=ctx.project,
        location=ctx.region,
        name=t.run_job.name,
        role="roles/run.viewer",
        member=member,
        opts=grants,
    )
    # Its continuation tasks carry an OIDC token for itself.
    gcp.serviceaccount.IAMMember(
        f"{t.name}-dispatcher-act-as-self",
        service_account_id=t.dispatcher.name,
        role="roles/iam.serviceAccountUser",
        member=member,
        opts=grants,
    )
    return service
