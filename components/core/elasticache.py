"""A Redis replication group as the fleet runs every one (the gateway's, the model store's metadata),
written once: encrypted at rest with the region's key, TLS required in transit, a client always
authenticated, Multi-AZ with automatic failover as soon as it has a replica, minor versions patched in
its maintenance window."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

REDIS_PORT = 6379  # every replication group's port: the clients' rules and URLs name this one
REDIS_ENGINE_VERSION = "7.1"


def hardened_replication_group(
    name: str,
    *,
    description: str,
    node_type: str,
    replicas: int,
    parameter_group_name: pulumi.Input[str],
    subnet_group_name: pulumi.Input[str],
    security_group_id: pulumi.Input[str],
    kms_key_arn: pulumi.Input[str],
    maintenance_window: str,
    opts: pulumi.ResourceOptions,
    user_group_id: pulumi.Input[str] | None = None,
    auth_token: pulumi.Input[str] | None = None,
    snapshot_retention_days: int | None = None,
    snapshot_window: str | None = None,
    final_snapshot_identifier: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> aws.elasticache.ReplicationGroup:
    """A primary and `replicas` replicas. Clients authenticate either as users of an RBAC user group
    (`user_group_id`) or with one token (`auth_token`): exactly one of the two."""
    if (user_group_id is None) == (auth_token is None):
        raise ValueError(f"{name}: give the Redis either a user group or an auth token")
    replicated = replicas > 0
    return aws.elasticache.ReplicationGroup(
        name,
        description=description,
        engine="redis",
        engine_version=REDIS_ENGINE_VERSION,
        parameter_group_name=parameter_group_name,
        node_type=node_type,
        num_cache_clusters=1 + replicas,
        # With a replica in another zone, losing the primary's zone promotes the replica.
        automatic_failover_enabled=replicated,
        multi_az_enabled=replicated,
        port=REDIS_PORT,
        subnet_group_name=subnet_group_name,
        security_group_ids=[security_group_id],
        at_rest_encryption_enabled=True,
        kms_key_id=kms_key_arn,
        transit_encryption_enabled=True,
        transit_encryption_mode="required",
        user_group_ids=[user_group_id] if user_group_id is not None else None,
        auth_token=auth_token,
        snapshot_retention_limit=snapshot_retention_days,
        snapshot_window=snapshot_window,
        final_snapshot_identifier=final_snapshot_identifier,
        auto_minor_version_upgrade=True,
        maintenance_window=maintenance_window,
        tags=dict(tags) if tags is not None else None,
        opts=opts,
    )
