"""The data tier capability: the gateway's Aurora PostgreSQL (a global database across the control-plane
regions) and the gateway's own role in it.

Published: `DatabaseConfig`, `DATABASE_PASSWORD`, `GATEWAY_DATABASE_PASSWORD`, `SECRETS`, `DataTierOutputs`,
`declare`.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from components.core.config import SecretSpec
from components.core.context import StackContext
from components.data_tier.config import DATABASE_PASSWORD, GATEWAY_DATABASE_PASSWORD, DatabaseConfig
from components.data_tier.data_tier import DataTier, DataTierArgs, DataTierOutputs, DataTierRegion
from components.network import NetworkOutputs

__all__ = [
    "DATABASE_PASSWORD",
    "GATEWAY_DATABASE_PASSWORD",
    "SECRETS",
    "DataTierOutputs",
    "DatabaseConfig",
    "declare",
]

SECRETS: list[SecretSpec] = [DATABASE_PASSWORD, GATEWAY_DATABASE_PASSWORD]


def declare(
    stack: StackContext,
    *,
    config: DatabaseConfig,
    networks: NetworkOutputs,
    master_password: pulumi.Input[str],
    gateway_password: pulumi.Input[str],
    log_retention_days: int,
    topic_arns: Mapping[str, pulumi.Input[str]],
) -> DataTierOutputs:
    return DataTier(
        "data",
        DataTierArgs(
            database=config,
            stack=stack,
            regions=[
                DataTierRegion(
                    region=net.region,
                    vpc_id=net.vpc_id,
                    private_subnet_ids=net.private_subnet_ids,
                    remote_client_cidrs=networks.remote_private_cidrs(region),
                    topic_arn=topic_arns[region],
                )
                for region, net in networks.regions.items()
            ],
            master_password=master_password,
            gateway_password=gateway_password,
            log_retention_days=log_retention_days,
        ),
    ).outputs
