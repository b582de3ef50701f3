"""The gateway's own database role: created at deploy by a function inside the primary region's VPC
(functions/db_bootstrap), connecting as the master user through the writer endpoint.

    Pulumi (aws.lambda_.Invocation) -> Lambda in the private subnets -> Aurora writer (TLS, 5432)
      -> role `litellm_gateway` with the gateway's password, owner of the `litellm` database
    -> with a global database, the failover heartbeat: its table and its two IAM-authenticated roles

The invocation's input carries both passwords: it is a secret in Pulumi's state, and the function logs
and returns neither. It runs again when the gateway's password or the function's code changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.core.functions import function_log_group, vpc_function
from components.core.iam import LAMBDA_VPC_ACCESS, log_statement, scoped_role
from components.core.security import SecurityGroups
from functions.db_bootstrap.settings import BootstrapRequest, Witness

GATEWAY_USERNAME = "litellm_gateway"
PACKAGE = "db_bootstrap"
HTTPS_PORT = 443


@dataclass(frozen=True)
class GatewayRoleArgs:
    stack: StackContext
    region: RegionContext
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    database_security_group_id: pulumi.Input[str]
    # Where the writer may be: this region's private subnets (in its own group) and the other regions'.
    remote_database_cidrs: Sequence[str]
    writer_endpoint: pulumi.Input[str]
    port: int
    database: str
    master_username: str
    master_password: pulumi.Input[str]
    gateway_password: pulumi.Input[str]
    log_retention_days: int
    depends_on: Sequence[pulumi.Resource]
    # A global database's failover heartbeat, created with the gateway's role (None: one region).
    witness: Witness | None = None


def declare_gateway_role(parent: pulumi.Resource, name: str, args: GatewayRoleArgs) -> pulumi.Output[str]:
    """The gateway's role name, known once the role exists (an Output that depends on the invocation)."""
    opts = args.region.options(parent)
    groups = SecurityGroups(name, args.vpc_id, opts)
    group = groups.group("sg", "database bootstrap function: to the Aurora writer only")
    database = args.database_security_group_id
    groups.allow("out", "to-db", group.id, args.port, "to the Aurora writer here", peer=database)
    for i, cidr in enumerate(args.remote_database_cidrs):
        groups.allow(
            "out",
            f"to-remote-db-{i}",
            group.id,
            args.port,
            "to the Aurora writer in another region, after a failover",
            cidr=cidr,
        )
    groups.allow(
        "in", "db-from-bootstrap", database, args.port, "from the database bootstrap function", peer=group.id
    )

    function_name = f"{PROJECT}-{args.stack.stack}-db-bootstrap"
    logs = function_log_group(f"{name}-logs", function_name, args.log_retention_days, opts)
    account = aws.get_caller_identity_output(
        opts=pulumi.InvokeOutputOptions(parent=parent, provider=args.region.provider)
    ).account_id
    role = scoped_role(
        f"{name}-function",
        "lambda.amazonaws.com",
        account,
        [log_statement(logs.arn), LAMBDA_VPC_ACCESS],
        opts,
    )
    function = vpc_function(
        f"{name}-function",
        PACKAGE,
        function_name=function_name,
        description="Creates the gateway's own database role (never the master user)",
        role=role,
        logs=logs,
        subnet_ids=args.private_subnet_ids,
        security_group_id=group.id,
        timeout=60,
        memory_size=256,  # the SCRAM key derivation is CPU-bound; CPU comes with memory
        opts=opts,
    )
    request = pulumi.Output.all(
        host=args.writer_endpoint,
        master_password=args.master_password,
        gateway_password=args.gateway_password,
    ).apply(
        lambda known: BootstrapRequest(
            **known,
            port=args.port,
            database=args.database,
            master_user=args.master_username,
            gateway_user=GATEWAY_USERNAME,
            witness=args.witness,
        ).to_event()
    )
    invocation = aws.lambda_.Invocation(
        f"{name}-run",
        function_name=function.name,
        input=pulumi.Output.secret(pulumi.Output.json_dumps(request)),
        triggers={"code": function.source_code_hash},
        opts=args.region.options(parent, depends_on=list(args.depends_on)),
    )
    return invocation.id.apply(lambda _: GATEWAY_USERNAME)
