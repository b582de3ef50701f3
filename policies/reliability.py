"""Reliability: failover that can fail over, data that survives a mistake, workloads that start the same
way every time and retry within bounds."""

from __future__ import annotations

import base64
import binascii
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from components.core.catalog.aws import TIER_MAX_SPOT_SHARE
from components.core.catalog.gcp import (
    CLOUD_RUN_GPU_MAX_TASK_TIMEOUT_SECONDS,
    CLOUD_RUN_MAX_RETRIES,
    CLOUD_RUN_MAX_TASK_TIMEOUT_SECONDS,
    LOG_METRIC_READY_SECONDS,
)
from components.core.catalog.resource_types import (
    ALERT_POLICY,
    AUTOSCALING_GROUP,
    CACHE_PARAMETER_GROUP,
    CLOUD_RUN_JOB,
    CLOUD_RUN_SERVICE,
    CLOUD_TASKS_QUEUE,
    COMPOSITE_ALARM,
    EC2_INSTANCE,
    ECS_TASK_DEFINITION,
    KMS_KEY,
    LAMBDA_FUNCTION,
    LAUNCH_TEMPLATE,
    LOG_METRIC,
    METRIC_ALARM,
    RDS_CLUSTER,
    RDS_GLOBAL_CLUSTER,
    RDS_INSTANCE,
    REDIS_REPLICATION_GROUP,
    ROUTE53_RECORD,
    SECRET,
    TIME_SLEEP,
)
from components.core.durations import go_duration_seconds
from policies.linking import of_types, referenced
from policies.support import (
    TIER_KEY,
    as_number,
    effective_tags,
    is_prod,
    items,
    json_value,
    known,
    label,
    mapping,
    path,
    pod_containers,
    pod_spec,
    present,
    setting,
    truthy,
)
from policies.validity import gpu_instance_types, job_gpus

USER_METRIC_PREFIX = "logging.googleapis.com/user/"


# --- DNS failover -------------------------------------------------------------------------------------


def _failover_type(props: Mapping[str, Any]) -> str | None:
    policies = items(known(props, "failoverRoutingPolicies"))
    if not policies:
        return None
    return str(mapping(policies[0]).get("type") or "").upper() or None


def _failover_health_check(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ROUTE53_RECORD:
        return
    role = _failover_type(args.props)
    if role is None:
        return
    if not present(args.props, "healthCheckId"):
        report(
            f"{label(args)} is the {role} of a failover pair without a healthCheckId: Route53 then "
            "treats it as always healthy, so a dead region keeps receiving traffic. Attach the region's "
            "Route53 health check.",
            None,
        )


failover_record_health_check = ResourceValidationPolicy(
    name="failover-record-health-check",
    description=(
        "Every Route53 failover record (PRIMARY or SECONDARY) is tied to a health check, so DNS moves "
        "traffic only to a region that answers."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_failover_health_check,
)


def _record_key(props: Mapping[str, Any]) -> tuple[str, str, str]:
    name = str(known(props, "name", "")).rstrip(".").lower()
    return str(known(props, "zoneId", "")), name, str(known(props, "type", ""))


def _failover_pairs(args: StackValidationArgs, report: ReportViolation) -> None:
    groups: dict[tuple[str, str, str], dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for record in of_types(args.resources, [ROUTE53_RECORD]):
        role = _failover_type(record.props)
        if role is not None:
            groups[_record_key(record.props)][role].append(record)
    for (_, name, record_type), roles in groups.items():
        for role, partner in (("PRIMARY", "SECONDARY"), ("SECONDARY", "PRIMARY")):
            for record in roles.get(role, []):
                if not roles.get(partner):
                    report(
                        f"{label(record)} is the {role} for {name} ({record_type}) with no {partner}: a "
                        f"failover record needs its {partner} in the same zone under the same name.",
                        record.urn,
                    )
            if len(roles.get(role, [])) > 1:
                names = ", ".join(r.name for r in roles[role])
                report(
                    f"{name} ({record_type}) has {len(roles[role])} {role} records ({names}): keep one.", None
                )


failover_records_paired = StackValidationPolicy(
    name="failover-records-paired",
    description=(
        "Each PRIMARY failover record has exactly one SECONDARY for the same name and zone (and the other "
        "way round): half a pair fails over to nothing."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_failover_pairs,
)


# --- data protection ------------------------------------------------------------------------------------

_BACKUP_SCHEMA = PolicyConfigSchema(
    properties={
        "minBackupRetentionDays": {
            "type": "integer",
            "minimum": 1,
            "maximum": 35,
            "default": 7,
            "description": "Fewest days of automated backups a prod database keeps (RDS allows 1-35).",
        }
    }
)


def _prod_database(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (
        RDS_CLUSTER,
        RDS_GLOBAL_CLUSTER,
        RDS_INSTANCE,
    ) or not is_prod(args):
        return
    props = args.props
    if not truthy(known(props, "deletionProtection")):
        report(f"{label(args)} is a prod database without deletionProtection: set it to true.", None)
    if args.resource_type == RDS_GLOBAL_CLUSTER:
        return
    minimum = int(setting(args, _BACKUP_SCHEMA, "minBackupRetentionDays"))
    retention = as_number(known(props, "backupRetentionPeriod")) or 1.0  # RDS keeps one day when unset
    if retention < minimum:
        report(
            f"{label(args)} keeps {int(retention)} day(s) of backups: prod keeps at least {minimum} "
            "(backupRetentionPeriod), so a bad migration found on Monday can be undone.",
            None,
        )
    if truthy(known(props, "skipFinalSnapshot")):
        report(
            f"{label(args)} sets skipFinalSnapshot: a prod database takes a final snapshot on delete.", None
        )


prod_database_protected = ResourceValidationPolicy(
    name="prod-database-protected",
    description=(
        "Prod databases (tier=prod) have deletion protection, keep automated backups for at least "
        "minBackupRetentionDays, and take a final snapshot."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=_BACKUP_SCHEMA,
    validate=_prod_database,
)


# --- images and start-up ----------------------------------------------------------------------------------

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def containers(args: ResourceValidationArgs) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(name, container) for the containers a task definition, job or service runs, in one shape:
    image, command (list of words) and environment as the rules need them."""
    props = args.props
    if args.resource_type == ECS_TASK_DEFINITION:
        # Read directly: a definition that is only known after `pulumi up` makes the rule wait for it.
        for container in items(json_value(props.get("containerDefinitions"))):
            container = mapping(container)
            command = [*items(container.get("entryPoint")), *items(container.get("command"))]
            yield str(container.get("name")), {"image": container.get("image"), "command": command}
    elif args.resource_type in (CLOUD_RUN_JOB, CLOUD_RUN_SERVICE):
        template = (
            path(props, "template", "template")
            if args.resource_type == CLOUD_RUN_JOB
            else path(props, "template")
        )
        for container in items(mapping(template).get("containers")):
            container = mapping(container)
            command = [*items(container.get("commands")), *items(container.get("args"))]
            yield (
                str(container.get("name") or args.name),
                {"image": container.get("image"), "command": command},
            )
    elif args.resource_type == LAMBDA_FUNCTION and known(args.props, "packageType") == "Image":
        yield args.name, {"image": known(props, "imageUri"), "command": []}
    elif (spec := pod_spec(args)) is not None:  # a Kubernetes workload
        for container in pod_containers(spec):
            command = [*items(container.get("command")), *items(container.get("args"))]
            yield str(container.get("name")), {"image": container.get("image"), "command": command}


def _pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for name, container in containers(args):
        image = container["image"]
        if not isinstance(image, str) or not DIGEST.search(image):
            report(
                f"{label(args)} container {name!r} runs image {image!r}, a moving reference: pin it by "
                "digest (repository@sha256:<64 hex>) so every task runs the pre-baked image that was "
                "reviewed, and a rollback runs the old one.",
                None,
            )


image_pinned_by_digest = ResourceValidationPolicy(
    name="image-pinned-by-digest",
    description=(
        "Container images (ECS tasks, Cloud Run jobs and services, Lambda, Kubernetes workloads) are pinned "
        "by digest, never a moving tag such as :latest: a tag can change under a running fleet."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_pinned,
)

_INSTALL = re.compile(
    r"\b(pip3?|uv pip|conda|mamba|npm|yarn|apt|apt-get|yum|dnf|apk|zypper)\s+(-\S+\s+)*(install|add)\b"
    r"|\b(curl|wget)\b[^|\n]*\|\s*(ba|z)?sh\b"
)


def _user_data(props: Mapping[str, Any]) -> str:
    """A launch template's user data (base64, as the provider takes it), decoded."""
    value = known(props, "userData")
    if not isinstance(value, str):
        return ""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return value  # an instance's plain-text user data


def _no_install(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for name, container in containers(args):
        command = " ".join(str(word) for word in container["command"])
        match = _INSTALL.search(command)
        if match:
            report(
                f"{label(args)} container {name!r} runs {match.group(0)!r} at start-up: bake it into the "
                "image, so a cold start takes seconds and does not depend on a package index.",
                None,
            )
    if args.resource_type in (LAUNCH_TEMPLATE, EC2_INSTANCE):
        match = _INSTALL.search(_user_data(args.props))
        if match:
            report(
                f"{label(args)} user data runs {match.group(0)!r} on boot: GPU nodes start from the "
                "pre-baked image; put the package in the image recipe.",
                None,
            )


no_install_at_startup = ResourceValidationPolicy(
    name="no-install-at-startup",
    description=(
        "Nothing is installed at start-up (pip/apt/npm install or curl | sh in a container command or a "
        "node's user data): images are pre-baked, so cold starts are fast and repeatable."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_no_install,
)


# --- batch: Cloud Run jobs and Cloud Tasks ---------------------------------------------------------------


def _job_retries(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLOUD_RUN_JOB:
        return
    task = mapping(path(args.props, "template", "template"))
    retries = as_number(task.get("maxRetries"))
    if retries is None:
        report(
            f"{label(args)} does not set template.template.maxRetries: state how often a failed task is "
            f"retried (0-{CLOUD_RUN_MAX_RETRIES}); the default of 3 re-runs GPU work nobody asked for.",
            None,
        )
    elif not 0 <= retries <= CLOUD_RUN_MAX_RETRIES:
        report(
            f"{label(args)} sets maxRetries {int(retries)}: Cloud Run allows 0-{CLOUD_RUN_MAX_RETRIES}.", None
        )
    if not present(task, "timeout"):
        report(
            f"{label(args)} does not set template.template.timeout: state the task timeout (e.g. '3600s'); "
            "the 10-minute default kills long GPU tasks mid-batch.",
            None,
        )
        return
    timeout = _seconds(known(task, "timeout"))
    gpus, _ = job_gpus(args.props)
    limit = CLOUD_RUN_GPU_MAX_TASK_TIMEOUT_SECONDS if gpus else CLOUD_RUN_MAX_TASK_TIMEOUT_SECONDS
    if timeout is not None and timeout > limit:
        kind = "a task with a GPU" if gpus else "a task"
        report(
            f"{label(args)} sets timeout {task.get('timeout')}: Cloud Run runs {kind} at most {limit} s.",
            None,
        )


cloud_run_job_retries_timeout = ResourceValidationPolicy(
    name="cloud-run-job-retries-timeout",
    description=(
        "Cloud Run jobs state their retries per task (0-10) and their task timeout, within Cloud Run's limit "
        "(1 hour with a GPU, 168 hours without)."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_job_retries,
)


def _seconds(value: Any) -> float | None:
    """A protobuf duration such as '0.100s' or '3600s'."""
    if isinstance(value, str) and value.endswith("s"):
        return as_number(value[:-1])
    return None


def _queue_retries(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLOUD_TASKS_QUEUE:
        return
    retry = mapping(known(args.props, "retryConfig"))
    problems = []
    attempts = as_number(retry.get("maxAttempts"))
    if attempts is None and retry.get("maxRetryDuration") is None:
        problems.append("no retry limit (maxAttempts or maxRetryDuration)")
    elif attempts is not None and attempts < 0:
        problems.append("unlimited attempts (maxAttempts -1)")
    low, high = _seconds(retry.get("minBackoff")), _seconds(retry.get("maxBackoff"))
    if low is None or high is None:
        problems.append("no backoff (minBackoff and maxBackoff)")
    elif low > high:
        problems.append(f"minBackoff {retry.get('minBackoff')} above maxBackoff {retry.get('maxBackoff')}")
    if problems:
        report(
            f"{label(args)} retryConfig has {'; '.join(problems)}: a failing GPU task must back off and "
            "stop, not be re-dispatched until the queue's defaults run out.",
            None,
        )


cloud_tasks_retry_backoff = ResourceValidationPolicy(
    name="cloud-tasks-retry-backoff",
    description="Cloud Tasks queues set a retry limit and a backoff (minBackoff <= maxBackoff).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_queue_retries,
)


def _metrics_alerted_on(policy: PolicyResource, metrics: list[PolicyResource]) -> list[PolicyResource]:
    """The stack's log-based metrics an alert policy's conditions read: computed from one (a property
    dependency), or named in a filter (metric.type="logging.googleapis.com/user/<name>")."""
    linked = {d.urn for d in policy.property_dependencies.get("conditions") or []}
    named = set(re.findall(rf'{re.escape(USER_METRIC_PREFIX)}([^"\s]+)"', _strings(policy.props)))
    return [m for m in metrics if m.urn in linked or known(m.props, "name") in named]


def _strings(value: Any) -> str:
    """Every known string below a value, one per line (filters sit deep in conditions)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "\n".join(_strings(known(value, key)) for key in value)
    return "\n".join(_strings(v) for v in items(value))


def _waits_for(sleep: PolicyResource, metric: PolicyResource) -> bool:
    seconds = go_duration_seconds(str(known(sleep.props, "createDuration", "")))
    after_metric = metric.urn in {d.urn for d in sleep.dependencies}
    return after_metric and seconds is not None and seconds >= LOG_METRIC_READY_SECONDS


def _log_metric_alert_waits(args: StackValidationArgs, report: ReportViolation) -> None:
    metrics = of_types(args.resources, [LOG_METRIC])
    if not metrics:
        return
    for policy in of_types(args.resources, [ALERT_POLICY]):
        sleeps = [d for d in policy.dependencies if d.resource_type == TIME_SLEEP]
        for metric in _metrics_alerted_on(policy, metrics):
            if not any(_waits_for(sleep, metric) for sleep in sleeps):
                report(
                    f"{label(policy)} alerts on the log-based metric {label(metric)} without waiting for "
                    f"it: depend on a {TIME_SLEEP} of at least {LOG_METRIC_READY_SECONDS}s (createDuration) "
                    "that itself depends on the metric (its triggers carry the metric's name).",
                    policy.urn,
                )


log_metric_alert_waits = StackValidationPolicy(
    name="log-metric-alert-waits",
    description=(
        "An alert policy on a log-based metric the stack creates waits for it: Cloud Monitoring refuses the "
        "policy (404 'Cannot find metric(s)') for up to 10 minutes after the metric is created "
        "(terraform-provider-google#11102), so the first `pulumi up` would fail."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_log_metric_alert_waits,
)


# --- GPU pools ------------------------------------------------------------------------------------------

_POOL_SCHEMA = PolicyConfigSchema(
    properties={
        "minOnDemandBase": {
            "type": "integer",
            "minimum": 0,
            "default": 1,
            "description": "On-demand GPU nodes a prod pool with spot capacity always keeps.",
        }
    }
)


def pool_instance_types(props: Mapping[str, Any]) -> list[str]:
    """The instance types an Auto Scaling group's mixed-instances policy may launch."""
    overrides = items(path(props, "mixedInstancesPolicy", "launchTemplate", "overrides"))
    return [str(o.get("instanceType")) for o in map(mapping, overrides) if o.get("instanceType")]


def _gpu_pool(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != AUTOSCALING_GROUP or not is_prod(args):
        return
    distribution = mapping(path(args.props, "mixedInstancesPolicy", "instancesDistribution"))
    if not gpu_instance_types(pool_instance_types(args.props)) or not distribution:
        return  # not a GPU pool, or no spot capacity: every node is on-demand
    if (as_number(distribution.get("onDemandPercentageAboveBaseCapacity")) or 0) >= 100:
        return
    floor = int(setting(args, _POOL_SCHEMA, "minOnDemandBase"))
    base = as_number(distribution.get("onDemandBaseCapacity")) or 0
    if base < floor:
        report(
            f"{label(args)} keeps {int(base)} on-demand node(s) under its spot capacity: a prod GPU pool "
            f"keeps at least {floor} (instancesDistribution.onDemandBaseCapacity), so a spot reclaim of "
            "every node cannot take the model offline.",
            None,
        )
    if not truthy(known(args.props, "capacityRebalance")):
        report(
            f"{label(args)} does not set capacityRebalance: turn it on, so the group starts a replacement "
            "when AWS signals a spot node is at risk, before the two-minute notice.",
            None,
        )


prod_gpu_pool_capacity = ResourceValidationPolicy(
    name="prod-gpu-pool-capacity",
    description=(
        "Prod GPU pools that use spot keep an on-demand floor (minOnDemandBase) and capacity rebalancing, "
        "so a spot reclaim never empties a pool."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=_POOL_SCHEMA,
    validate=_gpu_pool,
)

_SPOT_SCHEMA = PolicyConfigSchema(
    properties={
        "maxSpotShare": {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
            "default": {**TIER_MAX_SPOT_SHARE, "default": 1.0},
            "description": (
                "Largest share of a GPU pool's nodes at maxSize that may run on spot, by the stack's tier "
                "tag; 'default' for any other tier."
            ),
        }
    }
)
# Strategies that spread spot over the deepest capacity pools: `lowest-price` packs a group into the
# cheapest pool, which is reclaimed all at once.
SPREADING_SPOT_STRATEGIES = frozenset(
    {"price-capacity-optimized", "capacity-optimized", "capacity-optimized-prioritized"}
)


def spot_nodes_at_max(props: Mapping[str, Any]) -> tuple[int, int] | None:
    """(spot nodes, nodes) at a mixed-instances group's max size, as Auto Scaling splits them: the
    on-demand base, then the on-demand percentage above it rounded up; None without a distribution."""
    distribution = mapping(path(props, "mixedInstancesPolicy", "instancesDistribution"))
    size = as_number(known(props, "maxSize"))
    if not distribution or size is None or size <= 0:
        return None
    base = min(int(as_number(distribution.get("onDemandBaseCapacity")) or 0), int(size))
    above = int(size) - base
    percent = as_number(distribution.get("onDemandPercentageAboveBaseCapacity"))
    on_demand = base + -(-above * int(100 if percent is None else percent) // 100)
    return int(size) - on_demand, int(size)


def _spot_share(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != AUTOSCALING_GROUP or not gpu_instance_types(pool_instance_types(args.props)):
        return
    split = spot_nodes_at_max(args.props)
    if split is None or split[0] == 0:
        return
    spot, size = split
    tier = effective_tags(args).get(TIER_KEY, "default")
    caps = setting(args, _SPOT_SCHEMA, "maxSpotShare")
    cap = float(caps.get(tier, caps.get("default", 1.0)))
    if spot / size > cap:
        report(
            f"{label(args)} runs {spot} of its {size} nodes on spot at maxSize ({spot / size:.0%}), over the "
            f"{tier} cap of {cap:.0%} (config maxSpotShare): raise onDemandBaseCapacity or "
            "onDemandPercentageAboveBaseCapacity.",
            None,
        )
    strategy = path(args.props, "mixedInstancesPolicy", "instancesDistribution", "spotAllocationStrategy")
    if strategy not in SPREADING_SPOT_STRATEGIES:
        report(
            f"{label(args)} allocates spot with {strategy or 'lowest-price (the default)'!r}: use "
            "price-capacity-optimized, so one reclaim wave does not take every spot node at once.",
            None,
        )


# --- alarms and protection ---------------------------------------------------------------------------------

CLOUDWATCH_ALARMS = (METRIC_ALARM, COMPOSITE_ALARM)


def _alarm_heard(resource: PolicyResource) -> bool:
    """Whether an alarm has an enabled action (a list whose ARNs are made on create counts as set)."""
    actions = known(resource.props, "alarmActions")
    silent = not present(resource.props, "alarmActions") or (actions is not None and not items(actions))
    return not silent and known(resource.props, "actionsEnabled") is not False


def _composite_members(composite: PolicyResource) -> set[str]:
    """The alarm names a composite alarm's rule reads (ALARM("name"), OK(...), INSUFFICIENT_DATA(...))."""
    rule = known(composite.props, "alarmRule")
    return set(_RULE_MEMBER.findall(rule)) if isinstance(rule, str) else set()


_RULE_MEMBER = re.compile(r"""(?:ALARM|OK|INSUFFICIENT_DATA)\(\s*["']?([^"')]+?)["']?\s*\)""")


def _alarm_action(args: StackValidationArgs, report: ReportViolation) -> None:
    alarms = of_types(args.resources, CLOUDWATCH_ALARMS)
    # A metric alarm without an action of its own is heard through a composite alarm that reads it (the
    # windows of a multiwindow burn-rate alert page only together): count it as heard there.
    heard_through = {
        member
        for composite in alarms
        if composite.resource_type == COMPOSITE_ALARM and _alarm_heard(composite)
        for member in _composite_members(composite)
    }
    for alarm in alarms:
        if _alarm_heard(alarm):
            continue
        name = known(alarm.props, "alarmName" if alarm.resource_type == COMPOSITE_ALARM else "name")
        if isinstance(name, str) and name in heard_through:
            continue
        report(
            f"{label(alarm)} has no alarm action (alarmActions, with actionsEnabled) and no composite alarm "
            "with one reads it: it fires and nobody hears. Notify the region's alert topic (or act: a "
            "scaling policy).",
            alarm.urn,
        )


gpu_pool_spot_share = ResourceValidationPolicy(
    name="gpu-pool-spot-share",
    description=(
        "GPU pools keep their spot share at full scale under the tier's cap (config maxSpotShare) and spread "
        "spot over capacity pools (price-capacity-optimized), so a reclaim wave leaves most nodes serving."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=_SPOT_SCHEMA,
    validate=_spot_share,
)

alarm_has_action = StackValidationPolicy(
    name="alarm-has-action",
    description=(
        "Every CloudWatch alarm has an action (an alert topic or a scaling policy), or is read by a "
        "composite alarm that has one: an alarm nobody hears is noise."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_alarm_action,
)

# --- the model store's metadata --------------------------------------------------------------------------

# How the program marks a Redis that holds a JuiceFS volume's metadata (components/model_store).
JUICEFS_METADATA_TAG = ("fleet-role", "juicefs-metadata")


def _juicefs_metadata_problems(redis: PolicyResource, groups: list[PolicyResource]) -> Iterator[str]:
    linked = referenced(redis, "parameterGroupName", groups)
    given = known(redis.props, "parameterGroupName")
    if not linked:
        which = f"the parameter group {given!r}" if given else "the default parameter group"
        yield (
            f"{label(redis)} uses {which}, "
            "which evicts keys when memory runs out (volatile-lru): give it a parameter group of this stack "
            "with maxmemory-policy noeviction (ElastiCache refuses CONFIG SET)."
        )
    else:
        values = {
            str(p.get("name")): str(p.get("value"))
            for p in items(known(linked[0].props, "parameters"))
            if isinstance(p, Mapping)
        }
        policy = values.get("maxmemory-policy") or "the default"
        if policy != "noeviction":
            yield (
                f"{label(redis)} uses {label(linked[0])}, whose maxmemory-policy is {policy}: "
                "set noeviction, or a full Redis drops inodes and files vanish from the volume."
            )
    if not is_prod(redis):
        return
    clusters = as_number(known(redis.props, "numCacheClusters")) or 1.0
    if clusters < 2 or not truthy(known(redis.props, "multiAzEnabled")):
        yield (
            f"{label(redis)} is a prod volume's metadata on one node: run a replica in another zone "
            "(numCacheClusters >= 2, multiAzEnabled, automaticFailoverEnabled)."
        )
    if (as_number(known(redis.props, "snapshotRetentionLimit")) or 0) < 1:
        yield (
            f"{label(redis)} keeps no snapshots: the chunks in the bucket are unreadable without the "
            "metadata, so keep at least a day (snapshotRetentionLimit >= 1)."
        )


def _juicefs_metadata(args: StackValidationArgs, report: ReportViolation) -> None:
    groups = of_types(args.resources, [CACHE_PARAMETER_GROUP])
    key, value = JUICEFS_METADATA_TAG
    for redis in of_types(args.resources, [REDIS_REPLICATION_GROUP]):
        if effective_tags(redis).get(key) != value:
            continue
        for message in _juicefs_metadata_problems(redis, groups):
            report(message, redis.urn)


juicefs_metadata_redis = StackValidationPolicy(
    name="juicefs-metadata-redis",
    description=(
        "A JuiceFS volume's metadata Redis (tagged fleet-role=juicefs-metadata) never evicts a key "
        "(maxmemory-policy noeviction in its parameter group), and in prod runs Multi-AZ with a replica and "
        "keeps snapshots: without its metadata the volume's chunks are unreadable."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_juicefs_metadata,
)

STATEFUL_TYPES = {
    KMS_KEY: "a KMS key (deleting it loses everything encrypted with it)",
    RDS_GLOBAL_CLUSTER: "the global database",
    RDS_CLUSTER: "an Aurora cluster",
    SECRET: "a secret",
}


def _stateful_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    what = STATEFUL_TYPES.get(args.resource_type)
    if what is None or not is_prod(args) or args.opts.protect:
        return
    report(
        f"{label(args)} is {what} in prod without `protect`: a stray `pulumi destroy` or a replacement "
        "would delete it. Declare it with ResourceOptions(protect=True).",
        None,
    )


prod_stateful_protected = ResourceValidationPolicy(
    name="prod-stateful-protected",
    description=(
        "Stateful prod resources (KMS keys, the global database, Aurora clusters, secrets) are declared "
        "with `protect`, so no update or destroy can delete them."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_stateful_protected,
)

POLICIES = [
    failover_record_health_check,
    failover_records_paired,
    prod_database_protected,
    prod_stateful_protected,
    juicefs_metadata_redis,
    alarm_has_action,
    image_pinned_by_digest,
    no_install_at_startup,
    cloud_run_job_retries_timeout,
    cloud_tasks_retry_backoff,
    log_metric_alert_waits,
    prod_gpu_pool_capacity,
    gpu_pool_spot_share,
]
