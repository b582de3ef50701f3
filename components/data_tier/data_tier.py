"""DataTier: the gateway's PostgreSQL, one Aurora global database across the control-plane regions.

The writer cluster lives in the primary region and a secondary cluster in the standby, each encrypted with
its region's own KMS key. Gateways connect through the global writer endpoint, which Aurora keeps
pointing at the current writer through a switchover or a failover, so a promotion needs no
reconfiguration. With one region (dev) it is a plain regional cluster and its cluster endpoint.

Security groups start closed: the gateway in the same region opens its own path (the control plane adds
that rule), and the other region's private subnets may reach port 5432 over the peering, by CIDR, because
AWS cannot reference a security group across regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.data_tier.config import DatabaseConfig

DATABASE_PORT = 5432
DATABASE_NAME = "litellm"
MASTER_USERNAME = "litellm"
ENGINE = "aurora-postgresql"
BACKUP_WINDOW = "03:00-04:00"
MAINTENANCE_WINDOW = "sun:05:00-sun:06:00"


@dataclass(frozen=True)
class DataTierRegion:
    """What the data tier needs from one region: its provider, network and who may reach it from afar."""

    region: RegionContext
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    # Private subnets of the other control-plane regions, reaching the writer over the VPC peering.
    remote_client_cidrs: Sequence[str]


@dataclass(frozen=True)
class DataTierArgs:
    database: DatabaseConfig
    stack: StackContext
    # The primary region first; a second region holds the global database's secondary cluster.
    regions: Sequence[DataTierRegion]
    master_password: pulumi.Input[str]


@dataclass(frozen=True)
class DataTierOutputs:
    """How the control planes reach the database, and what promotion and failback act on."""

    port: int
    name: str
    master_username: str
    writer_endpoint: pulumi.Output[str]
    global_cluster_id: pulumi.Output[str] | None
    global_cluster_arn: pulumi.Output[str] | None
    security_group_ids: dict[str, pulumi.Output[str]]
    kms_key_arns: dict[str, pulumi.Output[str]]
    cluster_arns: dict[str, pulumi.Output[str]]
    cluster_endpoints: dict[str, pulumi.Output[str]]
    reader_endpoints: dict[str, pulumi.Output[str]]

    def exports(self) -> dict[str, Any]:
        return {
            "database": {
                "writerEndpoint": self.writer_endpoint,
                "globalClusterId": self.global_cluster_id,
                "clusterEndpoints": self.cluster_endpoints,
                "readerEndpoints": self.reader_endpoints,
            }
        }

    def budgets(self) -> dict[str, Any]:
        return {}


class DataTier(pulumi.ComponentResource):
    """KMS key, subnet group, security group and Aurora cluster per region; one global cluster over them."""

    outputs: DataTierOutputs

    def __init__(self, name: str, args: DataTierArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inference-fleet:data_tier:DataTier", name, None, opts)
        db = args.database
        stack = args.stack
        protect_data = stack.deletion_protection
        major = db.engine_version.split(".", 1)[0]
        primary = args.regions[0]
        standby = args.regions[1] if len(args.regions) > 1 else None

        self.security_group_ids: dict[str, pulumi.Output[str]] = {}
        self.kms_key_arns: dict[str, pulumi.Output[str]] = {}
        self.cluster_arns: dict[str, pulumi.Output[str]] = {}
        self.cluster_endpoints: dict[str, pulumi.Output[str]] = {}
        self.reader_endpoints: dict[str, pulumi.Output[str]] = {}
        subnet_groups: dict[str, aws.rds.SubnetGroup] = {}
        parameter_groups: dict[str, aws.rds.ClusterParameterGroup] = {}
        keys: dict[str, aws.kms.Key] = {}
        for side in args.regions:
            region = side.region
            opts_here = region.options(self)
            key = aws.kms.Key(
                f"{name}-{region.region}-key",
                description=f"{PROJECT}/{stack.stack}: control-plane data in {region.region}",
                enable_key_rotation=True,
                deletion_window_in_days=30 if protect_data else 7,
                opts=opts_here,
            )
            aws.kms.Alias(
                f"{name}-{region.region}-key",
                name=f"alias/{PROJECT}-{stack.stack}-data",
                target_key_id=key.key_id,
                opts=opts_here,
            )
            keys[region.region] = key
            self.kms_key_arns[region.region] = key.arn

            group = aws.ec2.SecurityGroup(
                f"{name}-{region.region}-sg",
                vpc_id=side.vpc_id,
                description="Aurora PostgreSQL: the gateway only",
                revoke_rules_on_delete=True,
                tags={"Name": f"{name}-{region.region}"},
                opts=opts_here,
            )
            for i, cidr in enumerate(side.remote_client_cidrs):
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-{region.region}-remote-{i}",
                    security_group_id=group.id,
                    cidr_ipv4=cidr,
                    ip_protocol="tcp",
                    from_port=DATABASE_PORT,
                    to_port=DATABASE_PORT,
                    description="the other region's gateway, over the VPC peering",
                    opts=opts_here,
                )
            self.security_group_ids[region.region] = group.id

            subnet_groups[region.region] = aws.rds.SubnetGroup(
                f"{name}-{region.region}",
                subnet_ids=side.private_subnet_ids,
                description=f"{PROJECT}/{stack.stack} Aurora, private subnets",
                opts=opts_here,
            )
            parameter_groups[region.region] = aws.rds.ClusterParameterGroup(
                f"{name}-{region.region}",
                family=f"{ENGINE}{major}",
                description=f"{PROJECT}/{stack.stack}: TLS required",
                parameters=[
                    aws.rds.ClusterParameterGroupParameterArgs(
                        name="rds.force_ssl", value="1", apply_method="pending-reboot"
                    )
                ],
                opts=opts_here,
            )

        here = primary.region
        global_cluster: aws.rds.GlobalCluster | None = None
        if standby is not None:
            global_cluster = aws.rds.GlobalCluster(
                f"{name}-global",
                global_cluster_identifier=f"{PROJECT}-{stack.stack}",
                engine=ENGINE,
                engine_version=db.engine_version,
                database_name=DATABASE_NAME,
                storage_encrypted=True,
                deletion_protection=protect_data,
                opts=here.options(self),
            )

        writer = aws.rds.Cluster(
            f"{name}-{here.region}",
            engine=ENGINE,
            engine_version=db.engine_version,
            engine_mode="provisioned",
            global_cluster_identifier=global_cluster.id if global_cluster else None,
            database_name=DATABASE_NAME,
            master_username=MASTER_USERNAME,
            master_password=args.master_password,
            db_subnet_group_name=subnet_groups[here.region].name,
            db_cluster_parameter_group_name=parameter_groups[here.region].name,
            vpc_security_group_ids=[self.security_group_ids[here.region]],
            storage_encrypted=True,
            kms_key_id=keys[here.region].arn,
            port=DATABASE_PORT,
            backup_retention_period=db.backup_retention_days,
            preferred_backup_window=BACKUP_WINDOW,
            preferred_maintenance_window=MAINTENANCE_WINDOW,
            copy_tags_to_snapshot=True,
            deletion_protection=protect_data,
            skip_final_snapshot=not protect_data,
            final_snapshot_identifier=(
                f"{PROJECT}-{stack.stack}-{here.region}-final" if protect_data else None
            ),
            enabled_cloudwatch_logs_exports=["postgresql"],
            opts=here.options(self),
        )
        writer_instances = self._instances(
            name, here, writer, db.instances, keys, subnet_groups, db.instance_class
        )
        self._export_cluster(here.region, writer)

        if standby is not None and global_cluster is not None:
            there = standby.region
            secondary = aws.rds.Cluster(
                f"{name}-{there.region}",
                engine=ENGINE,
                engine_version=db.engine_version,
                engine_mode="provisioned",
                global_cluster_identifier=global_cluster.id,
                db_subnet_group_name=subnet_groups[there.region].name,
                db_cluster_parameter_group_name=parameter_groups[there.region].name,
                vpc_security_group_ids=[self.security_group_ids[there.region]],
                storage_encrypted=True,
                kms_key_id=keys[there.region].arn,
                port=DATABASE_PORT,
                backup_retention_period=db.backup_retention_days,
                preferred_backup_window=BACKUP_WINDOW,
                preferred_maintenance_window=MAINTENANCE_WINDOW,
                copy_tags_to_snapshot=True,
                deletion_protection=protect_data,
                # A secondary takes no credentials (it replicates the writer). After a promotion it holds the
                # data, so it keeps a final snapshot like the writer.
                skip_final_snapshot=not protect_data,
                final_snapshot_identifier=(
                    f"{PROJECT}-{stack.stack}-{there.region}-final" if protect_data else None
                ),
                enabled_cloudwatch_logs_exports=["postgresql"],
                opts=there.options(
                    self,
                    # A secondary can join only once the writer has an instance to replicate from.
                    depends_on=writer_instances,
                    # Aurora fills this in for a global secondary; declaring nothing must not fight it.
                    ignore_changes=["replicationSourceIdentifier"],
                ),
            )
            self._instances(
                name, there, secondary, db.standby_instances, keys, subnet_groups, db.instance_class
            )
            self._export_cluster(there.region, secondary)

        self.outputs = DataTierOutputs(
            port=DATABASE_PORT,
            name=DATABASE_NAME,
            master_username=MASTER_USERNAME,
            writer_endpoint=global_cluster.endpoint if global_cluster else writer.endpoint,
            global_cluster_id=global_cluster.id if global_cluster else None,
            global_cluster_arn=global_cluster.arn if global_cluster else None,
            security_group_ids=self.security_group_ids,
            kms_key_arns=self.kms_key_arns,
            cluster_arns=self.cluster_arns,
            cluster_endpoints=self.cluster_endpoints,
            reader_endpoints=self.reader_endpoints,
        )
        out = self.outputs
        self.register_outputs(
            {
                "writerEndpoint": out.writer_endpoint,
                "globalClusterId": out.global_cluster_id,
                "clusterEndpoints": out.cluster_endpoints,
                "readerEndpoints": out.reader_endpoints,
                "securityGroupIds": out.security_group_ids,
                "kmsKeyArns": out.kms_key_arns,
            }
        )

    def _instances(
        self,
        name: str,
        region: RegionContext,
        cluster: aws.rds.Cluster,
        count: int,
        keys: dict[str, aws.kms.Key],
        subnet_groups: dict[str, aws.rds.SubnetGroup],
        instance_class: str,
    ) -> list[aws.rds.ClusterInstance]:
        return [
            aws.rds.ClusterInstance(
                f"{name}-{region.region}-{i}",
                cluster_identifier=cluster.id,
                engine=aws.rds.EngineType.AURORA_POSTGRESQL,
                engine_version=cluster.engine_version,
                instance_class=instance_class,
                db_subnet_group_name=subnet_groups[region.region].name,
                publicly_accessible=False,
                # Minor versions move deliberately, with the config, in both regions of the global database.
                auto_minor_version_upgrade=False,
                performance_insights_enabled=True,
                performance_insights_kms_key_id=keys[region.region].arn,
                performance_insights_retention_period=7,
                promotion_tier=i,
                opts=region.options(self),
            )
            for i in range(count)
        ]

    def _export_cluster(self, region: str, cluster: aws.rds.Cluster) -> None:
        self.cluster_arns[region] = cluster.arn
        self.cluster_endpoints[region] = cluster.endpoint
        self.reader_endpoints[region] = cluster.reader_endpoint
