"""The failover capability: the API name clients use, health-checked per region and following the database
writer; the standby's prober, which promotes the database when the primary region is lost, and the
heartbeat the primary writes for it; and what all of it costs in time and data.

Published: `DnsConfig`, `FailoverConfig`, `FailoverOutputs`, `declare`, and the budget arithmetic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.control_plane import GATEWAY_TIMINGS, ControlPlaneOutputs
from components.core.context import StackContext
from components.data_tier import DataTierOutputs
from components.failover.budget import (
    PLANNING_FAILOVER_TARGET_SECONDS,
    Budget,
    Term,
    region_loss_inference_budget,
    standby_capacity_budget,
    witness_spread_seconds,
)
from components.failover.config import DnsConfig, FailoverConfig, region_loss_writes
from components.failover.dns import (
    FailoverDns,
    FailoverDnsArgs,
    FailoverDnsOutputs,
    RegionEndpoint,
    WriterAlarm,
    status_record_name,
)
from components.failover.heartbeat import FailoverHeartbeat, FailoverHeartbeatArgs
from components.failover.prober import FailoverProber, FailoverProberArgs
from components.network import NetworkOutputs

__all__ = [
    "Budget",
    "DnsConfig",
    "FailoverConfig",
    "FailoverOutputs",
    "declare",
]


@dataclass(frozen=True)
class RegionLossBudgets:
    """A region loss, three ways: clients served by the standby, the standby at the primary's size, and
    the database writing again."""

    inference: Budget
    capacity: Budget
    writes: Budget


@dataclass(frozen=True)
class FailoverOutputs:
    dns: FailoverDnsOutputs
    config: FailoverConfig
    checker_regions: list[str] = field(default_factory=list)
    region_loss: RegionLossBudgets | None = None
    rpo_seconds: int | None = None
    function_name: pulumi.Output[str] | None = None
    record_parameter: pulumi.Output[str] | None = None
    failure_queue_url: pulumi.Output[str] | None = None
    switchover_command: pulumi.Output[str] | None = None
    failback_command: pulumi.Output[str] | None = None

    @property
    def health_check_ids(self) -> dict[str, pulumi.Output[str]]:
        return self.dns.health_check_ids

    def exports(self) -> dict[str, Any]:
        out: dict[str, Any] = {"apiUrl": self.dns.api_url, "healthCheckIds": self.dns.health_check_ids}
        if self.dns.budget is None or self.region_loss is None:
            return {**out, "failover": {}, "promotion": {}}
        out["failover"] = {
            "checkerRegions": self.checker_regions,
            "statusRecord": self.dns.status_record,
            "rpoSeconds": self.rpo_seconds,
            "serverlessOnly": self.config.serverless_only,
        }
        out["promotion"] = {
            "function": self.function_name,
            "record": self.record_parameter,
            "failures": self.failure_queue_url,
            "promoteAfterSeconds": self.config.promote_after_seconds,
            # Planned, lossless moves of the writer: to the standby (maintenance), and back (failback).
            "switchoverCommand": self.switchover_command,
            "failbackCommand": self.failback_command,
        }
        return out

    def budgets(self) -> dict[str, Any]:
        if self.dns.budget is None or self.region_loss is None:
            return {}
        fo, loss = self.config, self.region_loss
        return {
            "dnsFailoverWorstCaseSeconds": self.dns.budget.worst_seconds,
            "dnsFailoverRtoTargetSeconds": fo.rto_seconds,
            "regionLossRtoSeconds": loss.writes.worst_seconds,
            "regionLossRtoTargetSeconds": fo.region_loss_rto_seconds,
            "rpoSeconds": self.rpo_seconds,
            "rpoTargetSeconds": fo.rpo_seconds,
            # Each budget term by term (best, typical, worst, source); inference and writes apart, each
            # against the planning documents' failover target.
            "failover": {
                "planningTargetSeconds": PLANNING_FAILOVER_TARGET_SECONDS,
                "gatewayFailureInference": self.dns.budget.report(fo.rto_seconds),
                "regionLossInference": loss.inference.report(),
                "regionLossCapacity": loss.capacity.report(),
                "regionLossWrites": loss.writes.report(fo.region_loss_rto_seconds),
            },
        }


def declare(
    stack: StackContext,
    *,
    domain: str,
    dns: DnsConfig,
    failover: FailoverConfig,
    planes: ControlPlaneOutputs,
    networks: NetworkOutputs,
    data: DataTierOutputs,
    topic_arns: Mapping[str, pulumi.Input[str]],
    log_retention_days: int,
) -> FailoverOutputs:
    """The API record (`dns`): a plain one for one region; with a standby, a health-checked failover pair
    that follows the database writer, the prober (`promotion`) in the standby region and the writer's
    heartbeat (`heartbeat`) in the primary."""
    endpoints = [
        RegionEndpoint(cp.region, cp.regional_name, cp.alb_dns_name, cp.alb_zone_id, cp.health_check_path)
        for cp in planes.regions.values()
    ]
    primary = endpoints[0]
    standby = endpoints[1] if len(endpoints) > 1 else None
    checker_regions = failover.checkers(primary.region, standby.region if standby else None)
    dns_args = FailoverDnsArgs(
        domain=domain,
        api_name=f"api.{domain}",
        primary=primary,
        standby=standby,
        dns=dns,
        failover=failover,
        checker_regions=checker_regions,
    )
    dns_opts = pulumi.ResourceOptions(providers=[stack.region(primary.region).provider])
    if standby is None:
        dns_outputs = FailoverDns("dns", dns_args, opts=dns_opts).outputs
        return FailoverOutputs(dns=dns_outputs, config=failover, checker_regions=checker_regions)
    assert data.global_cluster_id is not None and data.global_cluster_arn is not None
    assert data.global_rpo_seconds is not None and data.witness is not None
    # Computed from what was declared: the checks and records, the prober's window and timings, the
    # gateways' ALB, takeover alarm and database watchdog, the database's RPO bound.
    region_loss = _region_loss(failover, dns)
    here, there = networks.regions[primary.region], networks.regions[standby.region]
    target = data.cluster_arns[standby.region]
    FailoverHeartbeat(
        "heartbeat",
        FailoverHeartbeatArgs(
            stack=stack,
            primary=stack.region(primary.region),
            vpc_id=here.vpc_id,
            private_subnet_ids=here.private_subnet_ids,
            writer_host=data.cluster_endpoints[primary.region],
            database_port=data.port,
            database_name=data.name,
            database_security_group_id=data.security_group_ids[primary.region],
            cluster_resource_id=data.cluster_resource_ids[primary.region],
            topic_arn=topic_arns[primary.region],
            log_retention_days=log_retention_days,
        ),
    )
    prober = FailoverProber(
        "promotion",
        FailoverProberArgs(
            stack=stack,
            standby=stack.region(standby.region),
            vpc_id=there.vpc_id,
            private_subnet_ids=there.private_subnet_ids,
            primary_private_cidrs=here.private_cidrs,
            global_cluster_id=data.global_cluster_id,
            global_cluster_arn=data.global_cluster_arn,
            target_cluster_arn=target,
            standby_cluster_id=data.cluster_ids[standby.region],
            member_cluster_arns=list(data.cluster_arns.values()),
            primary_writer_host=data.cluster_endpoints[primary.region],
            database_port=data.port,
            standby_reader_host=data.reader_endpoints[standby.region],
            standby_database_security_group_id=data.security_group_ids[standby.region],
            standby_cluster_resource_id=data.cluster_resource_ids[standby.region],
            database_name=data.name,
            status_record=status_record_name(primary),
            topic_arn=topic_arns[standby.region],
            promote_after_seconds=failover.promote_after_seconds,
            rpo_seconds=failover.rpo_seconds,
            detection_seconds=witness_spread_seconds(region_loss.writes),
            log_retention_days=log_retention_days,
        ),
    )
    dns_outputs = FailoverDns(
        "dns",
        dataclasses.replace(dns_args, writer_alarm=WriterAlarm(prober.writer_alarm_name, standby.region)),
        opts=dns_opts,
    ).outputs
    assert dns_outputs.status_record == status_record_name(primary)
    return FailoverOutputs(
        dns=dns_outputs,
        config=failover,
        checker_regions=checker_regions,
        region_loss=region_loss,
        rpo_seconds=data.global_rpo_seconds,
        function_name=prober.function_name,
        record_parameter=prober.record_parameter,
        failure_queue_url=prober.failure_queue_url,
        switchover_command=_switchover(standby.region, data.global_cluster_id, target),
        failback_command=_switchover(
            primary.region, data.global_cluster_id, data.cluster_arns[primary.region]
        ),
    )


def _switchover(
    region: str, global_cluster_id: pulumi.Input[str], target: pulumi.Input[str]
) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        "aws rds switchover-global-cluster --region ",
        region,
        " --global-cluster-identifier ",
        global_cluster_id,
        " --target-db-cluster-identifier ",
        target,
    )


def _region_loss(fo: FailoverConfig, dns: DnsConfig) -> RegionLossBudgets:
    interval, threshold = fo.health_check_interval_seconds, fo.failure_threshold
    inference = region_loss_inference_budget(interval, threshold, dns.record_type, dns.ttl_seconds)
    timings = GATEWAY_TIMINGS
    task_start = Term(*timings.task_start_seconds, timings.task_start_source)
    capacity = standby_capacity_budget(
        inference, timings.takeover_alarm_seconds, task_start, timings.registration_seconds
    )
    return RegionLossBudgets(inference=inference, capacity=capacity, writes=region_loss_writes(fo))
