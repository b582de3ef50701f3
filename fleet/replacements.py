"""Which input changes make the engine replace a resource rather than update it, per resource type.

Pulumi replaces a resource when its provider's Diff says a changed property cannot be updated in place.
The provider schemas that say so are not installed here (no plugins), and the Python SDKs do not carry it,
so this is a small table for the types the program declares whose replacement matters, each entry taken
from the provider's own source:

- pulumi-aws and pulumi-gcp are bridged from the Terraform providers: a property marked `ForceNew: true`
  in the Terraform schema forces a replacement. AWS entries cite `hashicorp/terraform-provider-aws`
  `internal/service/<service>/<file>.go` (checked there: ElastiCache replication group, Route53 health
  check, RDS global cluster, KMS key, Image Builder component); GCP entries are the resources' immutable
  identity fields (name, location, project), as `hashicorp/terraform-provider-google`'s generated resources
  mark them.
- pulumi-kubernetes decides in its own provider: `metadata.name` and `metadata.namespace` for every kind,
  and per kind the list in `pulumi/pulumi-kubernetes` `provider/pkg/provider/diff.go` (`forceNew`).

A type not in the table is diffed, and its changes are marked "replacement not known offline" rather than
guessed. Paths are Pulumi's input names (camelCase), dotted for nested fields.
"""

from __future__ import annotations

# Pulumi type token -> input paths whose change forces a replacement.
FORCE_NEW: dict[str, tuple[str, ...]] = {
    # internal/service/ec2/vpc_.go, vpc_subnet.go, vpc_security_group.go
    "aws:ec2/vpc:Vpc": ("cidrBlock", "ipv4IpamPoolId", "ipv4NetmaskLength"),
    "aws:ec2/subnet:Subnet": ("vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"),
    "aws:ec2/securityGroup:SecurityGroup": ("name", "namePrefix", "description", "vpcId"),
    "aws:ec2/launchTemplate:LaunchTemplate": ("name", "namePrefix"),
    # internal/service/kms/key.go
    "aws:kms/key:Key": ("customerMasterKeySpec", "keyUsage", "multiRegion", "customKeyStoreId", "xksKeyId"),
    # internal/service/rds/global_cluster.go, cluster.go, cluster_instance.go
    "aws:rds/globalCluster:GlobalCluster": (
        "globalClusterIdentifier", "databaseName", "engine", "sourceDbClusterIdentifier", "storageEncrypted",
    ),
    "aws:rds/cluster:Cluster": (
        "clusterIdentifier", "clusterIdentifierPrefix", "databaseName", "dbSubnetGroupName", "engine",
        "engineMode", "kmsKeyId", "masterUsername", "storageEncrypted", "snapshotIdentifier",
    ),
    "aws:rds/clusterInstance:ClusterInstance": (
        "identifier", "identifierPrefix", "clusterIdentifier", "engine", "dbSubnetGroupName",
        "availabilityZone",
    ),
    # internal/service/elasticache/replication_group.go
    "aws:elasticache/replicationGroup:ReplicationGroup": (
        "replicationGroupId", "atRestEncryptionEnabled", "kmsKeyId", "port", "subnetGroupName",
        "dataTieringEnabled", "globalReplicationGroupId", "networkType", "securityGroupNames", "snapshotArns",
        "snapshotName",
    ),
    # internal/service/secretsmanager/secret.go, s3/bucket.go, logs/group.go, sns/topic.go, ecr/repository.go
    "aws:secretsmanager/secret:Secret": ("name", "namePrefix"),
    "aws:s3/bucket:Bucket": ("bucket", "bucketPrefix", "objectLockEnabled"),
    "aws:s3/bucketObjectv2:BucketObjectv2": ("bucket", "key"),  # s3/object.go
    # imagebuilder/component.go: a component is immutable (checked there: data ForceNew)
    "aws:imagebuilder/component:Component": (
        "name", "version", "platform", "data", "uri", "changeDescription",
    ),
    "aws:cloudwatch/logGroup:LogGroup": ("name", "namePrefix"),
    "aws:sns/topic:Topic": ("name", "namePrefix", "fifoTopic"),
    "aws:ecr/repository:Repository": ("name",),
    # internal/service/elbv2/load_balancer.go, target_group.go
    "aws:lb/loadBalancer:LoadBalancer": ("name", "namePrefix", "internal", "loadBalancerType"),
    "aws:lb/targetGroup:TargetGroup": ("name", "namePrefix", "port", "protocol", "vpcId", "targetType"),
    # internal/service/iam/role.go, lambda/function.go, autoscaling/group.go, ecs/cluster.go, ecs/service.go
    "aws:iam/role:Role": ("name", "namePrefix", "path"),
    "aws:lambda/function:Function": ("name", "packageType"),
    "aws:autoscaling/group:Group": ("name", "namePrefix"),
    "aws:ecs/cluster:Cluster": ("name",),
    "aws:ecs/service:Service": ("name", "cluster"),
    # internal/service/route53/health_check.go, record.go
    "aws:route53/healthCheck:HealthCheck": ("type", "requestInterval", "measureLatency", "referenceName"),
    "aws:route53/record:Record": ("zoneId",),
    # terraform-provider-google: the identity of each resource
    "gcp:storage/bucket:Bucket": ("name", "location", "project"),
    "gcp:firestore/database:Database": ("name", "locationId", "project"),
    "gcp:cloudrunv2/job:Job": ("name", "location", "project"),
    "gcp:cloudtasks/queue:Queue": ("name", "location", "project"),
    "gcp:serviceaccount/account:Account": ("accountId", "project"),
    "gcp:artifactregistry/repository:Repository": ("repositoryId", "location", "format", "project"),
    # provider/pkg/provider/diff.go (apps/v1 Deployment, core/v1 ConfigMap, Secret, Service,
    # PersistentVolume, PersistentVolumeClaim); metadata.name and metadata.namespace for every kind.
    "kubernetes:apps/v1:Deployment": ("spec.selector",),
    "kubernetes:core/v1:ConfigMap": ("binaryData", "data"),
    "kubernetes:core/v1:Secret": ("type", "stringData", "data"),
    "kubernetes:core/v1:Service": ("spec.clusterIP",),
    "kubernetes:core/v1:PersistentVolume": ("spec.csi", "spec.hostPath", "spec.local", "spec.nfs"),
    "kubernetes:core/v1:PersistentVolumeClaim": ("spec",),
}  # fmt: skip
KUBERNETES_FORCE_NEW = ("metadata.name", "metadata.namespace")


def known(resource_type: str) -> bool:
    """Whether the table knows which of this type's changes replace it."""
    return resource_type in FORCE_NEW or resource_type.startswith("kubernetes:")


def forces_replacement(resource_type: str, path: str) -> bool:
    """Whether changing the input at `path` (dotted) replaces a resource of this type: the path, a field
    inside it, or a field that holds it is in the table."""
    paths = FORCE_NEW.get(resource_type, ())
    if resource_type.startswith("kubernetes:"):
        paths = (*paths, *KUBERNETES_FORCE_NEW)
    return any(path == p or path.startswith(f"{p}.") or p.startswith(f"{path}.") for p in paths)
