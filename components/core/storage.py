"""A private S3 bucket, written once: owner-enforced, every public access blocked, encrypted, TLS only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.core.iam import Statement, policy_document


@dataclass(frozen=True)
class PrivateBucket:
    bucket: aws.s3.Bucket
    # What writes that the policy allows must wait for (e.g. a load balancer delivering its logs).
    policy: aws.s3.BucketPolicy


def private_bucket(
    name: str,
    opts: pulumi.ResourceOptions,
    force_destroy: bool,
    statements: Callable[[aws.s3.Bucket], Sequence[Statement]] = lambda bucket: (),
) -> PrivateBucket:
    """A bucket (auto-named from `name`) and the settings every private bucket of the fleet carries.

    `statements`: what the bucket's policy allows besides (given the bucket, for its ARN); TLS-only is added.
    S3-managed encryption, because some writers (ALB access logs) refuse a bucket encrypted with KMS.
    """
    bucket = aws.s3.Bucket(name, force_destroy=force_destroy, opts=opts)
    aws.s3.BucketOwnershipControls(
        name,
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=opts,
    )
    aws.s3.BucketPublicAccessBlock(
        name,
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        name,
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"
                )
            )
        ],
        opts=opts,
    )
    tls_only: Statement = {
        "Sid": "TlsOnly",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket.arn, pulumi.Output.concat(bucket.arn, "/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    policy = aws.s3.BucketPolicy(
        name, bucket=bucket.id, policy=policy_document([*statements(bucket), tls_only]), opts=opts
    )
    return PrivateBucket(bucket, policy)
