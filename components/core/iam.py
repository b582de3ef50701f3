"""IAM documents and roles, written once: a service's trust policy with its confused-deputy guard, a
role whose only permissions are the statements given (an inline policy, deleted with the role), and an
EC2 instance's role with its instance profile."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

Statement = dict[str, Any]


def policy_document(statements: Sequence[Statement]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def service_trust_policy(
    service: str, account: pulumi.Input[str], source_arn_like: pulumi.Input[str] | None = None
) -> pulumi.Output[str]:
    """The service may assume the role only for this account (and, given, only from matching sources)."""
    condition: dict[str, Any] = {"StringEquals": {"aws:SourceAccount": account}}
    if source_arn_like is not None:
        condition["ArnLike"] = {"aws:SourceArn": source_arn_like}
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": condition,
            }
        ]
    )


def scoped_role(
    name: str,
    service: str,
    account: pulumi.Input[str],
    statements: Sequence[Statement],
    opts: pulumi.ResourceOptions,
    source_arn_like: pulumi.Input[str] | None = None,
) -> aws.iam.Role:
    """A role `service` assumes, holding exactly `statements` (Role and RolePolicy both named `name`)."""
    role = aws.iam.Role(
        name, assume_role_policy=service_trust_policy(service, account, source_arn_like), opts=opts
    )
    aws.iam.RolePolicy(name, role=role.id, policy=policy_document(statements), opts=opts)
    return role


def instance_role(
    name: str,
    statements: Sequence[Statement],
    opts: pulumi.ResourceOptions,
    managed_policy_arns: Sequence[str] = (),
) -> aws.iam.InstanceProfile:
    """A role EC2 instances assume through an instance profile (all three named `name`), holding exactly
    `statements` and the AWS-managed policies given.

    The trust policy has no aws:SourceAccount condition: EC2 assumes an instance profile's role itself,
    and only principals of this account can attach the profile to an instance (iam:PassRole).
    """
    role = aws.iam.Role(
        name,
        assume_role_policy=policy_document(
            [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
        ),
        opts=opts,
    )
    if statements:
        aws.iam.RolePolicy(name, role=role.id, policy=policy_document(statements), opts=opts)
    for arn in managed_policy_arns:
        aws.iam.RolePolicyAttachment(
            f"{name}-{arn.rsplit('/', 1)[-1]}", role=role.name, policy_arn=arn, opts=opts
        )
    return aws.iam.InstanceProfile(name, role=role.name, opts=opts)


# What a Lambda function attached to a VPC needs to manage its network interfaces (the AWS managed
# policy AWSLambdaVPCAccessExecutionRole). EC2 defines no resource-level permissions for these: `*`.
LAMBDA_VPC_ACCESS: Statement = {
    "Sid": "VpcNetworkInterfaces",
    "Effect": "Allow",
    "Action": [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ],
    "Resource": "*",
}


def secret_read_statements(
    secret_arn: pulumi.Input[str],
    kms_key_arn: pulumi.Input[str],
    region: str,
    *,
    read_sid: str,
    decrypt_sid: str,
) -> list[Statement]:
    """Read one Secrets Manager secret, and decrypt it with its KMS key only as Secrets Manager in `region`
    asks (kms:ViaService): the key itself decrypts nothing else for this role."""
    return [
        {
            "Sid": read_sid,
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": secret_arn,
        },
        {
            "Sid": decrypt_sid,
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": kms_key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
        },
    ]


def database_connect_statement(
    sid: str,
    region: str,
    account: pulumi.Input[str],
    cluster_resource_id: pulumi.Input[str],
    user: str,
) -> Statement:
    """Log in to one Aurora cluster as one database user with IAM database authentication (a token the
    role signs; the user must be a member of `rds_iam`)."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": "rds-db:connect",
        "Resource": pulumi.Output.concat(
            "arn:aws:rds-db:", region, ":", account, ":dbuser:", cluster_resource_id, "/", user
        ),
    }


def log_statement(log_group_arn: pulumi.Input[str]) -> Statement:
    """Write to one log group's streams."""
    return {
        "Sid": "Logs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": pulumi.Output.concat(log_group_arn, ":*"),
    }
