"""Python code the program deploys to Lambda, from `functions/<package>/`: the package's modules, shipped
under the package's name so the handler is `<package>.handler.handle` (or another module's `handle`) and
relative imports work. A module two packages share is a symbolic link in the second package to the
first's file (functions/failover_prober/pgwire.py): each archive then carries it, and one copy exists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pulumi
import pulumi_aws as aws

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
LAMBDA_RUNTIME = "python3.12"


def _modules(package: str) -> list[Path]:
    """The package's `.py` files (nothing else: no caches, no tests)."""
    directory = FUNCTIONS_DIR / package
    modules = sorted(directory.glob("*.py"))
    if not modules:
        raise FileNotFoundError(f"no Python modules in {directory}")
    return modules


def function_code(package: str) -> pulumi.AssetArchive:
    """The package's modules as a Lambda deployment archive."""
    return pulumi.AssetArchive({f"{package}/{m.name}": pulumi.FileAsset(str(m)) for m in _modules(package)})


def function_sources(package: str) -> dict[str, str]:
    """The package's modules as text, by file name: for code shipped in a container's environment."""
    return {m.name: m.read_text() for m in _modules(package)}


def handler(package: str, module: str = "handler") -> str:
    return f"{package}.{module}.handle"


def run_on_schedule(
    name: str,
    function: aws.lambda_.Function,
    schedule_expression: str,
    description: str,
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.EventRule:
    """An EventBridge schedule invoking `function` (rule `<name>-schedule`, permission `<name>-invoke`,
    target `<name>-function`), allowed to invoke it from that rule only."""
    schedule = aws.cloudwatch.EventRule(
        f"{name}-schedule", description=description, schedule_expression=schedule_expression, opts=opts
    )
    aws.lambda_.Permission(
        f"{name}-invoke",
        action="lambda:InvokeFunction",
        function=function.name,
        principal="events.amazonaws.com",
        source_arn=schedule.arn,
        opts=opts,
    )
    aws.cloudwatch.EventTarget(f"{name}-function", rule=schedule.name, arn=function.arn, opts=opts)
    return schedule


def scheduled_runs_not_retried(
    name: str,
    function: aws.lambda_.Function,
    max_event_age_seconds: int,
    opts: pulumi.ResourceOptions,
    on_failure: pulumi.Input[str] | None = None,
) -> aws.lambda_.FunctionEventInvokeConfig:
    """A scheduled function's runs are never retried: the next scheduled run is the retry, and an event
    older than `max_event_age_seconds` is dropped (`<name>-retries`); a failed run's event goes to
    `on_failure` (a queue's ARN) where given."""
    destination = (
        aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
            on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(
                destination=on_failure
            )
        )
        if on_failure is not None
        else None
    )
    return aws.lambda_.FunctionEventInvokeConfig(
        f"{name}-retries",
        function_name=function.name,
        maximum_retry_attempts=0,
        maximum_event_age_in_seconds=max_event_age_seconds,
        destination_config=destination,
        opts=opts,
    )


def function_log_group(
    name: str, function_name: str, retention_days: int, opts: pulumi.ResourceOptions
) -> aws.cloudwatch.LogGroup:
    """The function's log group, declared ahead of it: it then has a retention, and the function's role
    can be scoped to it."""
    return aws.cloudwatch.LogGroup(
        name, name=f"/aws/lambda/{function_name}", retention_in_days=retention_days, opts=opts
    )


def vpc_function(
    name: str,
    package: str,
    *,
    function_name: str,
    description: str,
    role: aws.iam.Role,
    logs: aws.cloudwatch.LogGroup,
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]],
    security_group_id: pulumi.Input[str],
    timeout: int,
    memory_size: int,
    environment: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None,
    log_format: str = "JSON",
    architecture: str = "arm64",
    layers: Sequence[pulumi.Input[str]] | None = None,
    module: str = "handler",
    opts: pulumi.ResourceOptions,
) -> aws.lambda_.Function:
    """`functions/<package>` as a Lambda in the VPC's private subnets behind one security group, logging
    to `logs` (from `function_log_group`); its entry point is `handle` in `module`."""
    return aws.lambda_.Function(
        name,
        name=function_name,
        description=description,
        runtime=LAMBDA_RUNTIME,
        architectures=[architecture],
        handler=handler(package, module),
        code=function_code(package),
        layers=layers,
        role=role.arn,
        timeout=timeout,
        memory_size=memory_size,
        environment=None
        if environment is None
        else aws.lambda_.FunctionEnvironmentArgs(variables=environment),
        vpc_config=aws.lambda_.FunctionVpcConfigArgs(
            subnet_ids=subnet_ids, security_group_ids=[security_group_id]
        ),
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format=log_format, log_group=logs.name),
        opts=opts,
    )
