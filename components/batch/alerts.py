"""A batch job's alerts in Cloud Monitoring (the seed's four), to its email channel when one is set:

- queue depth: tasks waiting in the job's Cloud Tasks queue;
- failure rate: jobs that ended `failed`, out of all that ended, over an hour (log-based metric);
- P95 submit-to-succeeded seconds over an hour (log-based metric);
- cold starts: P95 of the agent's own startup figure (container start to engine ready, model loaded) over
  an hour (log-based metric): every attempt starts cold, so it pages on slow starts, not on load.

Cloud Monitoring refuses an alert policy on a log-based metric for up to 10 minutes after the metric is
created ("404 Cannot find metric(s) ... it could take up to 10 minutes to become available";
terraform-provider-google#11102, open). The policies on them wait behind a time Sleep that starts once the
metrics exist (its triggers carry their names, so a renamed metric waits again); the `log-metric-alert-waits`
policy keeps the class from coming back. The wait runs beside the node image's build, so a first `pulumi up`
rarely spends it on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumiverse_time as time

from components.batch.config import BatchJobConfig
from components.batch.names import STATUS_COLLECTION, BatchNames
from components.core.catalog.gcp import LOG_METRIC_READY_SECONDS

# What the agent logs when a job ends (one JSON line on stdout, which Cloud Run turns into jsonPayload).
FINISHED_EVENT = "fleet.job.finished"
# A log-based metric's type in Cloud Monitoring.
USER_METRIC = "logging.googleapis.com/user/"


@dataclass(frozen=True)
class BatchAlertTargets:
    name: str
    stack: str
    project: str
    job: BatchJobConfig
    names: BatchNames
    queue: gcp.cloudtasks.Queue
    labels: dict[str, str]
    time_provider: pulumi.ProviderResource


def declare_alerts(t: BatchAlertTargets, opts: pulumi.ResourceOptions) -> None:
    name, job, names, labels, project = t.name, t.job, t.names, t.labels, t.project
    alerts = job.alerts
    channels: list[pulumi.Input[str]] = []
    if alerts.email is not None:
        channel = gcp.monitoring.NotificationChannel(
            f"{name}-alerts",
            project=project,
            type="email",
            display_name=f"fleet {t.stack} {job.name} batch alerts",
            labels={"email_address": alerts.email},
            user_labels=labels,
            opts=opts,
        )
        channels.append(channel.name)
    finished = (
        f'resource.type="cloud_run_job" AND resource.labels.job_name="{names.run_job}" '
        f'AND jsonPayload.event="{FINISHED_EVENT}"'
    )
    outcomes = gcp.logging.Metric(
        f"{name}-outcomes",
        project=project,
        name=names.metric("outcomes"),
        description="Batch jobs finished, by final state (succeeded, failed) and whether retryable.",
        filter=finished,
        metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
            metric_kind="DELTA",
            value_type="INT64",
            unit="1",
            labels=[
                gcp.logging.MetricMetricDescriptorLabelArgs(key="state", value_type="STRING"),
                gcp.logging.MetricMetricDescriptorLabelArgs(key="retryable", value_type="STRING"),
            ],
        ),
        label_extractors={
            "state": "EXTRACT(jsonPayload.state)",
            "retryable": "EXTRACT(jsonPayload.retryable)",
        },
        opts=opts,
    )
    durations = _seconds_metric(
        f"{name}-seconds",
        project,
        names.metric("seconds"),
        "Submit-to-finish seconds of batch jobs that succeeded.",
        f'{finished} AND jsonPayload.state="succeeded"',
        "seconds",
        growth_factor=1.4,
        opts=opts,
    )
    startup = _seconds_metric(
        f"{name}-startup",
        project,
        names.metric("startup"),
        "Seconds from a task attempt's start to its engine being ready (model loaded).",
        f"{finished} AND jsonPayload.startupSeconds>=0",
        "startupSeconds",
        growth_factor=1.3,
        opts=opts,
    )
    metrics_ready = time.Sleep(
        f"{name}-metrics-ready",
        create_duration=f"{LOG_METRIC_READY_SECONDS}s",
        triggers={"outcomes": outcomes.name, "seconds": durations.name, "startup": startup.name},
        opts=pulumi.ResourceOptions(parent=opts.parent, provider=t.time_provider),
    )
    user_metric = USER_METRIC
    on_log_metrics = {"failure-rate", "p95-seconds", "cold-starts"}
    conditions = {
        "queue-depth": gcp.monitoring.AlertPolicyConditionArgs(
            display_name=f"queue depth above {alerts.queue_depth} for 5 minutes",
            condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                filter=t.queue.name.apply(
                    lambda q: (
                        'metric.type="cloudtasks.googleapis.com/queue/depth" AND '
                        f'resource.type="cloud_tasks_queue" AND resource.label.queue_id="{q}"'
                    )
                ),
                comparison="COMPARISON_GT",
                threshold_value=alerts.queue_depth,
                duration="300s",
                aggregations=[
                    gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                        alignment_period="60s", per_series_aligner="ALIGN_MAX"
                    )
                ],
            ),
        ),
        "failure-rate": gcp.monitoring.AlertPolicyConditionArgs(
            display_name=f"more than {alerts.failure_rate_percent:g}% of jobs failed in the last hour",
            condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                filter=outcomes.name.apply(
                    lambda m: (
                        f'metric.type="{user_metric}{m}" AND resource.type="cloud_run_job" '
                        'AND metric.label.state="failed"'
                    )
                ),
                denominator_filter=outcomes.name.apply(
                    lambda m: f'metric.type="{user_metric}{m}" AND resource.type="cloud_run_job"'
                ),
                comparison="COMPARISON_GT",
                threshold_value=alerts.failure_rate_percent / 100,
                duration="0s",
                aggregations=[_sum_over_hour()],
                denominator_aggregations=[
                    gcp.monitoring.AlertPolicyConditionConditionThresholdDenominatorAggregationArgs(
                        alignment_period="3600s",
                        per_series_aligner="ALIGN_DELTA",
                        cross_series_reducer="REDUCE_SUM",
                    )
                ],
            ),
        ),
        "p95-seconds": _p95_over_hour(
            f"P95 submit-to-succeeded above {alerts.p95_seconds} s over an hour",
            durations,
            alerts.p95_seconds,
        ),
        "cold-starts": _p95_over_hour(
            f"P95 cold start (start to engine ready) above {alerts.cold_start_p95_seconds} s",
            startup,
            alerts.cold_start_p95_seconds,
        ),
    }
    for key, condition in conditions.items():
        gcp.monitoring.AlertPolicy(
            f"{name}-{key}",
            project=project,
            display_name=f"fleet {t.stack} {job.name}: {key}",
            combiner="OR",
            conditions=[condition],
            notification_channels=channels,
            user_labels=labels,
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                content=pulumi.Output.concat(
                    f"Batch job {job.name} (Cloud Run job {names.run_job}, queue ",
                    t.queue.name,
                    f"). Status documents: Firestore collection {STATUS_COLLECTION}; `fleet jobs status`.",
                ),
                mime_type="text/markdown",
            ),
            opts=opts.merge(pulumi.ResourceOptions(depends_on=[metrics_ready]))
            if key in on_log_metrics
            else opts,
        )


def _p95_over_hour(
    display_name: str, metric: gcp.logging.Metric, threshold: float
) -> gcp.monitoring.AlertPolicyConditionArgs:
    """The hour's P95 of a distribution log-based metric of the job above `threshold`."""
    return gcp.monitoring.AlertPolicyConditionArgs(
        display_name=display_name,
        condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=metric.name.apply(
                lambda m: f'metric.type="{USER_METRIC}{m}" AND resource.type="cloud_run_job"'
            ),
            comparison="COMPARISON_GT",
            threshold_value=threshold,
            duration="0s",
            aggregations=[
                gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                    alignment_period="3600s",
                    per_series_aligner="ALIGN_DELTA",
                    cross_series_reducer="REDUCE_PERCENTILE_95",
                )
            ],
        ),
    )


def _sum_over_hour() -> gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs:
    return gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
        alignment_period="3600s", per_series_aligner="ALIGN_DELTA", cross_series_reducer="REDUCE_SUM"
    )


def _seconds_metric(
    resource_name: str,
    project: str,
    metric_name: str,
    description: str,
    log_filter: str,
    field: str,
    *,
    growth_factor: float,
    opts: pulumi.ResourceOptions,
) -> gcp.logging.Metric:
    """A distribution of seconds read from one field of the matching log entries."""
    return gcp.logging.Metric(
        resource_name,
        project=project,
        name=metric_name,
        description=description,
        filter=log_filter,
        metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
            metric_kind="DELTA", value_type="DISTRIBUTION", unit="s"
        ),
        value_extractor=f"EXTRACT(jsonPayload.{field})",
        bucket_options=gcp.logging.MetricBucketOptionsArgs(
            exponential_buckets=gcp.logging.MetricBucketOptionsExponentialBucketsArgs(
                num_finite_buckets=32, growth_factor=growth_factor, scale=1
            )
        ),
        opts=opts,
    )
