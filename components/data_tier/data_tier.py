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

from components.core.alarms import alarm
from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.data_tier.config import DatabaseConfig
from components.data_tier.gateway_role import GatewayRoleArgs, declare_gateway_role
from functions.db_bootstrap.settings import Witness
from functions.failover_prober.settings import HEARTBEAT_TABLE, HEARTBEAT_WRITER_USER, WITNESS_READER_USER

DATABASE_PORT = 5432
DATABASE_NAME = "litellm"
MASTER_USERNAME = "litellm"
ENGINE = "aurora-postgresql"
BACKUP_WINDOW = "03:00-04:00"
# One maintenance window per region, on different days: never both regions of the global database at once.
MAINTENANCE_WINDOWS = ("sun:05:00-sun:06:00", "wed:05:00-wed:06:00")
# Members of a global database: Aurora sets the secondary's source and moves both clusters' engine version
# together (and a failover swaps the roles); declaring them must never make `pulumi up` fight Aurora.
GLOBAL_MEMBER_IGNORED = ["replicationSourceIdentifier", "engineVersion"]


@dataclass(frozen=True)
class DataTierRegion:
    """What the data tier needs from one region: its provider, network and who may reach it from afar."""

    region: RegionContext
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    # Private subnets of the other control-plane regions, reaching the writer over the VPC peering.
    remote_client_cidrs: Sequence[str]
    # The region's alert topic (the replication-lag alarm notifies it).
    topic_arn: pulumi.Input[str]


@dataclass(frozen=True)
class DataTierArgs:
    database: DatabaseConfig
    stack: StackContext
    # The primary region first; a second region holds the global database's secondary cluster.
    regions: Sequence[DataTierRegion]
    master_password: pulumi.Input[str]
    gateway_password: pulumi.Input[str]
    log_retention_days: int


@dataclass(frozen=True)
class DataTierOutputs:
    """How the control planes reach the database, and what promotion and failback act on."""

    port: int
    name: str
    master_username: str
    # The gateway's own role (never the master user), known once the bootstrap created it.
    gateway_username: pulumi.Output[str]
    writer_endpoint: pulumi.Output[str]
    global_cluster_id: pulumi.Output[str] | None
    global_cluster_arn: pulumi.Output[str] | None
    security_group_ids: dict[str, pulumi.Output[str]]
    kms_key_arns: dict[str, pulumi.Output[str]]
    cluster_arns: dict[str, pulumi.Output[str]]
    cluster_ids: dict[str, pulumi.Output[str]]
    cluster_endpoints: dict[str, pulumi.Output[str]]
    reader_endpoints: dict[str, pulumi.Output[str]]
    # What IAM database authentication names a cluster by (arn:aws:rds-db:...:dbuser:<id>/<user>).
    cluster_resource_ids: dict[str, pulumi.Output[str]]
    # The bound on a region loss's data loss (rds.global_db_rpo); None without a global database.
    global_rpo_seconds: int | None
    # The failover heartbeat's table and roles (created by the bootstrap); None without a global database.
    witness: Witness | None = None

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
        self.cluster_ids: dict[str, pulumi.Output[str]] = {}
        self.cluster_endpoints: dict[str, pulumi.Output[str]] = {}
        self.reader_endpoints: dict[str, pulumi.Output[str]] = {}
        self.cluster_resource_ids: dict[str, pulumi.Output[str]] = {}
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
                opts=region.options(self, protect=protect_data),
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
                parameters=self._parameters(db, global_database=standby is not None),
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
                opts=here.options(self, protect=protect_data),
            )

        global_member = GLOBAL_MEMBER_IGNORED if global_cluster is not None else None
        # A global database's failover witness: a heartbeat table and two roles that log in with IAM
        # database authentication (functions/failover_prober/heartbeat.py), so both clusters take it.
        witness = (
            Witness(HEARTBEAT_TABLE, HEARTBEAT_WRITER_USER, WITNESS_READER_USER)
            if global_cluster is not None
            else None
        )

        def cluster(
            side: RegionContext,
            maintenance_window: str,
            master_password: pulumi.Input[str] | None = None,
            depends_on: Sequence[pulumi.Resource] | None = None,
        ) -> aws.rds.Cluster:
            """The cluster in `side`: the writer takes the credentials, a secondary none (it replicates the
            writer). After a promotion a secondary holds the data, so it keeps a final snapshot too."""
            is_writer = master_password is not None
            return aws.rds.Cluster(
                f"{name}-{side.region}",
                engine=ENGINE,
                engine_version=db.engine_version,
                engine_mode="provisioned",
                global_cluster_identifier=global_cluster.id if global_cluster else None,
                database_name=DATABASE_NAME if is_writer else None,
                master_username=MASTER_USERNAME if is_writer else None,
                master_password=master_password,
                db_subnet_group_name=subnet_groups[side.region].name,
                db_cluster_parameter_group_name=parameter_groups[side.region].name,
                vpc_security_group_ids=[self.security_group_ids[side.region]],
                storage_encrypted=True,
                kms_key_id=keys[side.region].arn,
                port=DATABASE_PORT,
                backup_retention_period=db.backup_retention_days,
                preferred_backup_window=BACKUP_WINDOW,
                preferred_maintenance_window=maintenance_window,
                copy_tags_to_snapshot=True,
                deletion_protection=protect_data,
                skip_final_snapshot=not protect_data,
                final_snapshot_identifier=(
                    f"{PROJECT}-{stack.stack}-{side.region}-final" if protect_data else None
                ),
                enabled_cloudwatch_logs_exports=["postgresql"],
                iam_database_authentication_enabled=witness is not None,
                opts=side.options(
                    self, depends_on=depends_on, protect=protect_data, ignore_changes=global_member
                ),
            )

        writer = cluster(here, MAINTENANCE_WINDOWS[0], master_password=args.master_password)
        writer_instances = self._instances(
            name, here, writer, db.instances, keys, subnet_groups, db.instance_class
        )
        self._export_cluster(here.region, writer)

        if standby is not None and global_cluster is not None:
            there = standby.region
            # A secondary can join only once the writer has an instance to replicate from.
            secondary = cluster(there, MAINTENANCE_WINDOWS[1], depends_on=writer_instances)
            self._instances(
                name, there, secondary, db.standby_instances, keys, subnet_groups, db.instance_class
            )
            self._export_cluster(there.region, secondary)
            self._lag_alarm(name, standby, secondary, db)

        writer_endpoint = global_cluster.endpoint if global_cluster else writer.endpoint
        gateway_username = declare_gateway_role(
            self,
            f"{name}-gateway-role",
            GatewayRoleArgs(
                stack=stack,
                region=here,
                vpc_id=primary.vpc_id,
                private_subnet_ids=primary.private_subnet_ids,
                database_security_group_id=self.security_group_ids[here.region],
                remote_database_cidrs=primary.remote_client_cidrs,
                writer_endpoint=writer_endpoint,
                port=DATABASE_PORT,
                database=DATABASE_NAME,
                master_username=MASTER_USERNAME,
                master_password=args.master_password,
                gateway_password=args.gateway_password,
                log_retention_days=args.log_retention_days,
                depends_on=writer_instances,
                witness=witness,
            ),
        )

        self.outputs = DataTierOutputs(
            port=DATABASE_PORT,
            name=DATABASE_NAME,
            master_username=MASTER_USERNAME,
            gateway_username=gateway_username,
            writer_endpoint=writer_endpoint,
            global_cluster_id=global_cluster.id if global_cluster else None,
            global_cluster_arn=global_cluster.arn if global_cluster else None,
            security_group_ids=self.security_group_ids,
            kms_key_arns=self.kms_key_arns,
            cluster_arns=self.cluster_arns,
            cluster_ids=self.cluster_ids,
            cluster_endpoints=self.cluster_endpoints,
            reader_endpoints=self.reader_endpoints,
            cluster_resource_ids=self.cluster_resource_ids,
            global_rpo_seconds=db.global_rpo_seconds if global_cluster is not None else None,
            witness=witness,
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

    @staticmethod
    def _parameters(
        db: DatabaseConfig, global_database: bool
    ) -> list[aws.rds.ClusterParameterGroupParameterArgs]:
        """TLS forced; in a global database, the RPO bound (both regions: it must hold after a failover)."""
        parameters = [
            aws.rds.ClusterParameterGroupParameterArgs(
                name="rds.force_ssl", value="1", apply_method="pending-reboot"
            )
        ]
        if global_database:
            parameters.append(
                aws.rds.ClusterParameterGroupParameterArgs(
                    name="rds.global_db_rpo", value=str(db.global_rpo_seconds), apply_method="pending-reboot"
                )
            )
        return parameters

    def _lag_alarm(
        self, name: str, side: DataTierRegion, cluster: aws.rds.Cluster, db: DatabaseConfig
    ) -> None:
        """Replication to the standby falling behind: half the RPO bound, for three minutes."""
        threshold_ms = db.global_rpo_seconds * 1000 / 2
        alarm(
            f"{name}-{side.region.region}-replication-lag",
            side.topic_arn,
            side.region.options(self),
            description=(
                f"Aurora global replication to {side.region.region} is over {threshold_ms / 1000:g} s "
                "behind: "
                f"at {db.global_rpo_seconds} s (rds.global_db_rpo) the writer holds commits."
            ),
            namespace="AWS/RDS",
            metric_name="AuroraGlobalDBReplicationLag",
            dimensions={"DBClusterIdentifier": cluster.cluster_identifier},
            statistic="Maximum",
            period=60,
            evaluation_periods=3,
            comparison_operator="GreaterThanThreshold",
            threshold=threshold_ms,
        )

    def _export_cluster(self, region: str, cluster: aws.rds.Cluster) -> None:
        self.cluster_ids[region] = cluster.cluster_identifier
        self.cluster_arns[region] = cluster.arn
        self.cluster_endpoints[region] = cluster.endpoint
        self.reader_endpoints[region] = cluster.reader_endpoint
        self.cluster_resource_ids[region] = cluster.cluster_resource_id
