"""Python code the program deploys to Lambda, from `functions/<package>/`: the package's modules, shipped
under the package's name so the handler is `<package>.handler.handle` and relative imports work."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_aws as aws

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
LAMBDA_RUNTIME = "python3.12"


def function_code(package: str) -> pulumi.AssetArchive:
    """The package's `.py` files (nothing else: no caches, no tests) as a Lambda deployment archive."""
    directory = FUNCTIONS_DIR / package
    modules = sorted(directory.glob("*.py"))
    if not modules:
        raise FileNotFoundError(f"no Python modules in {directory}")
    return pulumi.AssetArchive({f"{package}/{m.name}": pulumi.FileAsset(str(m)) for m in modules})


def handler(package: str) -> str:
    return f"{package}.handler.handle"


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
