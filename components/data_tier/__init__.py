"""The data tier capability: the gateway's Aurora PostgreSQL (a global database across the control-plane
regions) and its promotion to the standby region.

Published: `DatabaseConfig`, `DATABASE_PASSWORD`, `DataTierOutputs`, `PromotionOutputs`,
`declare_database`, `declare_promotion`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.core.config import SecretSpec
from components.core.context import StackContext
from components.data_tier.config import DATABASE_PASSWORD, DatabaseConfig
from components.data_tier.data_tier import DataTier, DataTierArgs, DataTierOutputs, DataTierRegion
from components.data_tier.promotion import AuroraPromotion, AuroraPromotionArgs
from components.network import NetworkOutputs

__all__ = [
    "DATABASE_PASSWORD",
    "SECRETS",
    "DataTierOutputs",
    "DatabaseConfig",
    "PromotionOutputs",
    "declare_database",
    "declare_promotion",
]

SECRETS: list[SecretSpec] = [DATABASE_PASSWORD]


def declare_database(
    stack: StackContext,
    config: DatabaseConfig,
    networks: NetworkOutputs,
    master_password: pulumi.Input[str],
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
                )
                for region, net in networks.regions.items()
            ],
            master_password=master_password,
        ),
    ).outputs


@dataclass(frozen=True)
class PromotionOutputs:
    """The standby's promotion of the global database: where to look when it ran, and the lossless move."""

    function_name: pulumi.Output[str] | None = None
    record_parameter: pulumi.Output[str] | None = None
    failure_queue_url: pulumi.Output[str] | None = None
    promote_after_seconds: int | None = None
    switchover_command: pulumi.Output[str] | None = None

    def exports(self) -> dict[str, Any]:
        if self.function_name is None:
            return {"promotion": {}}
        return {
            "promotion": {
                "function": self.function_name,
                "record": self.record_parameter,
                "failures": self.failure_queue_url,
                "promoteAfterSeconds": self.promote_after_seconds,
                # A planned move of the writer (no data loss), e.g. before maintenance in the primary region.
                "switchoverCommand": self.switchover_command,
            }
        }

    def budgets(self) -> dict[str, Any]:
        return {}


def declare_promotion(
    stack: StackContext,
    data: DataTierOutputs,
    primary_health_check_id: pulumi.Input[str] | None,
    promote_after_seconds: int,
    log_retention_days: int,
    alarm_region: str,
    standby_region: str | None,
) -> PromotionOutputs:
    """The promotion path where there is a standby to promote (none in a one-region stack)."""
    if standby_region is None or primary_health_check_id is None:
        return PromotionOutputs()
    assert data.global_cluster_id is not None and data.global_cluster_arn is not None
    target = data.cluster_arns[standby_region]
    promotion = AuroraPromotion(
        "promotion",
        AuroraPromotionArgs(
            stack=stack,
            primary_health_check_id=primary_health_check_id,
            promote_after_seconds=promote_after_seconds,
            log_retention_days=log_retention_days,
            alarm_side=stack.region(alarm_region),
            function_side=stack.region(standby_region),
            global_cluster_id=data.global_cluster_id,
            global_cluster_arn=data.global_cluster_arn,
            target_cluster_arn=target,
            member_cluster_arns=list(data.cluster_arns.values()),
        ),
    )
    return PromotionOutputs(
        function_name=promotion.function_name,
        record_parameter=promotion.record_parameter,
        failure_queue_url=promotion.failure_queue_url,
        promote_after_seconds=promote_after_seconds,
        switchover_command=pulumi.Output.concat(
            "aws rds switchover-global-cluster --region ",
            standby_region,
            " --global-cluster-identifier ",
            data.global_cluster_id,
            " --target-db-cluster-identifier ",
            target,
        ),
    )
