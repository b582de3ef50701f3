"""Security: nothing public that should not be, everything encrypted, no admin-by-accident."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from components.core.catalog.resource_types import (
    CLOUD_RUN_JOB,
    CLOUD_RUN_SERVICE,
    EBS_VOLUME,
    EC2_INSTANCE,
    ECS_TASK_DEFINITION,
    GCS_BUCKET,
    GCS_BUCKET_IAM_BINDING,
    GCS_BUCKET_IAM_MEMBER,
    IAM_GROUP_POLICY,
    IAM_GROUP_POLICY_ATTACHMENT,
    IAM_POLICY,
    IAM_POLICY_ATTACHMENT,
    IAM_ROLE,
    IAM_ROLE_POLICY,
    IAM_ROLE_POLICY_ATTACHMENT,
    IAM_USER_POLICY,
    IAM_USER_POLICY_ATTACHMENT,
    IMAGE_BUILDER_INFRASTRUCTURE,
    IMAGE_RECIPE,
    KMS_KEY,
    LAMBDA_FUNCTION,
    LAUNCH_TEMPLATE,
    LISTENER,
    LISTENER_RULE,
    LOAD_BALANCER,
    RDS_CLUSTER,
    RDS_CLUSTER_PARAMETER_GROUP,
    RDS_GLOBAL_CLUSTER,
    RDS_INSTANCE,
    RDS_PARAMETER_GROUP,
    REDIS_CLUSTER,
    REDIS_REPLICATION_GROUP,
    S3_ACCOUNT_PUBLIC_ACCESS_BLOCK,
    S3_BUCKET,
    S3_BUCKET_ACL,
    S3_BUCKET_ACL_V2,
    S3_BUCKET_POLICY,
    S3_BUCKET_V2,
    S3_ENCRYPTION,
    S3_ENCRYPTION_V2,
    S3_PUBLIC_ACCESS_BLOCK,
    SECRET_POLICY,
    SECURITY_GROUP,
    SECURITY_GROUP_INGRESS_RULE,
    SECURITY_GROUP_RULE,
    SQS_QUEUE_POLICY,
)
from policies.linking import of_types, referenced
from policies.support import (
    items,
    json_value,
    known,
    label,
    mapping,
    path,
    pod_containers,
    pod_spec,
    present,
    setting,
    truthy,
)

S3_BUCKETS = (S3_BUCKET, S3_BUCKET_V2)
S3_ACLS = (S3_BUCKET_ACL, S3_BUCKET_ACL_V2)
S3_ENCRYPTION = (
    S3_ENCRYPTION,
    S3_ENCRYPTION_V2,
)
PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
PUBLIC_CANNED_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
SSE_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})


# --- object storage -----------------------------------------------------------------------------------


def _blocks_all(props: Mapping[str, Any]) -> list[str]:
    """The public-access flags a block leaves off (AWS treats an unset flag as false)."""
    return [flag for flag in PUBLIC_ACCESS_FLAGS if not truthy(known(props, flag))]


def _s3_public_access(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = args.resources
    blocks = of_types(resources, [S3_PUBLIC_ACCESS_BLOCK])
    account_blocks = of_types(resources, [S3_ACCOUNT_PUBLIC_ACCESS_BLOCK])
    account_covers = any(not _blocks_all(b.props) for b in account_blocks)

    for block in [*blocks, *account_blocks]:
        missing = _blocks_all(block.props)
        if missing:
            report(
                f"{label(block)} leaves {', '.join(missing)} off: set all four of "
                f"{', '.join(PUBLIC_ACCESS_FLAGS)} to true.",
                block.urn,
            )
    for bucket in of_types(resources, S3_BUCKETS):
        acl = known(bucket.props, "acl")
        if acl in PUBLIC_CANNED_ACLS:
            report(
                f"{label(bucket)} has the canned ACL {acl!r}: remove it (access goes through IAM).",
                bucket.urn,
            )
        if account_covers:
            continue
        own = [b for b in blocks if bucket in referenced(b, "bucket", [bucket])]
        if not own:
            report(
                f"{label(bucket)} has no aws.s3.BucketPublicAccessBlock: declare one for it with all four "
                "flags true, so no ACL or bucket policy can ever make it public.",
                bucket.urn,
            )
    for acl_resource in of_types(resources, S3_ACLS):
        acl = known(acl_resource.props, "acl")
        if acl in PUBLIC_CANNED_ACLS:
            report(f"{label(acl_resource)} grants {acl!r}: remove the ACL.", acl_resource.urn)


s3_bucket_public_access_blocked = StackValidationPolicy(
    name="s3-bucket-public-access-blocked",
    description=(
        "Every S3 bucket has a public access block with all four flags on, and no public canned ACL: "
        "objects such as access logs or model weights must never be readable from the internet."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_s3_public_access,
)


def _sse_algorithms(props: Mapping[str, Any]) -> list[str]:
    """The default-encryption algorithms an encryption configuration (or inline bucket config) sets."""
    rules = items(props.get("rules")) or items(props.get("rule")) or [props.get("rule")]
    found = []
    for rule in rules:
        algorithm = path(mapping(rule), "applyServerSideEncryptionByDefault", "sseAlgorithm")
        if isinstance(algorithm, str):
            found.append(algorithm)
    return found


def _s3_encrypted(args: StackValidationArgs, report: ReportViolation) -> None:
    configs = of_types(args.resources, S3_ENCRYPTION)
    for config in configs:
        bad = [a for a in _sse_algorithms(config.props) if a not in SSE_ALGORITHMS]
        if bad or not _sse_algorithms(config.props):
            report(
                f"{label(config)} sets no valid default encryption (got {bad or 'none'}); "
                f"use one of {', '.join(sorted(SSE_ALGORITHMS))}.",
                config.urn,
            )
    for bucket in of_types(args.resources, S3_BUCKETS):
        inline = mapping(known(bucket.props, "serverSideEncryptionConfiguration"))
        if inline and any(a in SSE_ALGORITHMS for a in _sse_algorithms(inline)):
            continue
        if not any(bucket in referenced(c, "bucket", [bucket]) for c in configs):
            report(
                f"{label(bucket)} declares no default encryption: add an "
                "aws.s3.BucketServerSideEncryptionConfiguration (AES256, or aws:kms where the writer "
                "supports it; ALB access logs need AES256).",
                bucket.urn,
            )


s3_bucket_encrypted = StackValidationPolicy(
    name="s3-bucket-encrypted",
    description=(
        "Every S3 bucket declares its default encryption (SSE-S3 or SSE-KMS), so the encryption at rest "
        "is stated in the program and drift from it shows up in a preview."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_s3_encrypted,
)


def _gcs_public_access_prevention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != GCS_BUCKET:
        return
    value = known(args.props, "publicAccessPrevention")
    if value != "enforced":
        report(
            f"{label(args)} sets publicAccessPrevention to {value!r}: set it to 'enforced' so no IAM "
            "binding or ACL can expose its objects to allUsers.",
            None,
        )


gcs_public_access_prevention = ResourceValidationPolicy(
    name="gcs-public-access-prevention",
    description="GCS buckets enforce public access prevention: batch inputs and results are never public.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_gcs_public_access_prevention,
)


def _gcs_uniform_access(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != GCS_BUCKET:
        return
    if not truthy(known(args.props, "uniformBucketLevelAccess")):
        report(
            f"{label(args)} does not set uniformBucketLevelAccess: turn it on so access is granted only "
            "through IAM, never through per-object ACLs.",
            None,
        )


gcs_uniform_bucket_access = ResourceValidationPolicy(
    name="gcs-uniform-bucket-access",
    description="GCS buckets use uniform bucket-level access: IAM alone decides who reads an object.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_gcs_uniform_access,
)


GCS_BUCKET_GRANTS = (
    GCS_BUCKET_IAM_MEMBER,
    GCS_BUCKET_IAM_BINDING,
)
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})


def _gcs_public_members(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in GCS_BUCKET_GRANTS:
        return
    members = [known(args.props, "member"), *items(known(args.props, "members"))]
    public = [m for m in members if m in PUBLIC_MEMBERS]
    if public:
        report(
            f"{label(args)} grants {known(args.props, 'role')} to {', '.join(public)}: batch inputs and "
            "results are never public; grant a group or service account instead.",
            None,
        )


gcs_no_public_members = ResourceValidationPolicy(
    name="gcs-no-public-members",
    description="No GCS bucket grant names allUsers or allAuthenticatedUsers: results buckets stay private.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_gcs_public_members,
)


# --- databases and caches -----------------------------------------------------------------------------


def _rds_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (RDS_CLUSTER, RDS_GLOBAL_CLUSTER, RDS_INSTANCE):
        return
    props = args.props
    # A secondary of a global database takes its encryption from the global cluster's source.
    if not truthy(known(props, "storageEncrypted")):
        report(f"{label(args)} does not set storageEncrypted: set it to true (with a KMS key).", None)
        return
    secondary = present(props, "globalClusterIdentifier") and not (
        present(props, "masterUsername") or truthy(known(props, "manageMasterUserPassword"))
    )
    if args.resource_type == RDS_CLUSTER and secondary and not present(props, "kmsKeyId"):
        report(
            f"{label(args)} is an encrypted secondary of a global database without kmsKeyId: RDS needs a "
            "KMS key in the secondary's own region to create it.",
            None,
        )


rds_storage_encrypted = ResourceValidationPolicy(
    name="rds-storage-encrypted",
    description="Databases (Aurora clusters, global clusters, RDS instances) are encrypted at rest with KMS.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_rds_encrypted,
)

# The parameter that makes each engine refuse unencrypted connections, and the values that mean "on".
_TLS_PARAMETER = {
    "postgres": ("rds.force_ssl", {"1"}),
    "mysql": ("require_secure_transport", {"1", "ON", "on"}),
}


def _tls_parameter(engine: Any) -> tuple[str, set[str]] | None:
    engine = str(engine or "")
    if "postgres" in engine:
        return _TLS_PARAMETER["postgres"]
    if "mysql" in engine or "mariadb" in engine:
        return _TLS_PARAMETER["mysql"]
    return None


def _rds_tls(args: StackValidationArgs, report: ReportViolation) -> None:
    pairs = (
        (RDS_CLUSTER, "dbClusterParameterGroupName", RDS_CLUSTER_PARAMETER_GROUP),
        (RDS_INSTANCE, "parameterGroupName", RDS_PARAMETER_GROUP),
    )
    for resource_type, group_prop, group_type in pairs:
        groups = of_types(args.resources, [group_type])
        for database in of_types(args.resources, [resource_type]):
            tls = _tls_parameter(known(database.props, "engine"))
            if tls is None:
                continue
            parameter, on_values = tls
            linked = referenced(database, group_prop, groups)
            if not linked:
                report(
                    f"{label(database)} uses no parameter group of this stack: give it one that sets "
                    f"{parameter} = 1, so clients cannot connect without TLS.",
                    database.urn,
                )
                continue
            group: PolicyResource = linked[0]
            values = {
                str(p.get("name")): str(p.get("value"))
                for p in items(known(group.props, "parameters"))
                if isinstance(p, Mapping)
            }
            if values.get(parameter) not in on_values:
                report(
                    f"{label(database)} uses {label(group)}, which does not set {parameter} = 1 "
                    f"(got {values.get(parameter)!r}): unencrypted connections would be accepted.",
                    database.urn,
                )


rds_tls_required = StackValidationPolicy(
    name="rds-tls-required",
    description=(
        "Databases refuse connections without TLS (rds.force_ssl / require_secure_transport in their "
        "parameter group): credentials and prompts never cross the VPC in clear."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_rds_tls,
)


def _redis_problems(args: ResourceValidationArgs) -> Iterator[str]:
    props = args.props
    if args.resource_type == REDIS_CLUSTER:
        if str(known(props, "engine", "")) in ("redis", "valkey") and not present(
            props, "replicationGroupId"
        ):
            yield (
                f"{label(args)} is a standalone Redis node, which cannot encrypt at rest or take an auth "
                "token: declare an aws.elasticache.ReplicationGroup instead."
            )
        return
    if not truthy(known(props, "atRestEncryptionEnabled")):
        yield f"{label(args)} does not set atRestEncryptionEnabled: turn it on."
    if not truthy(known(props, "transitEncryptionEnabled")):
        yield f"{label(args)} does not set transitEncryptionEnabled: turn on TLS."
    elif known(props, "transitEncryptionMode", "required") != "required":
        yield (
            f"{label(args)} sets transitEncryptionMode {known(props, 'transitEncryptionMode')!r}, which "
            "still accepts plain-text clients: use 'required'."
        )
    if not (
        present(props, "authToken") or present(props, "authTokenWo") or items(known(props, "userGroupIds"))
    ):
        yield (
            f"{label(args)} has neither an authToken nor RBAC userGroupIds: any client in the VPC "
            "could use it."
        )


def _redis(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in (REDIS_REPLICATION_GROUP, REDIS_CLUSTER):
        for message in _redis_problems(args):
            report(message, None)


redis_encrypted_with_auth = ResourceValidationPolicy(
    name="redis-encrypted-with-auth",
    description=(
        "Redis (ElastiCache) is encrypted at rest and in transit (TLS required) and needs an auth token "
        "or RBAC users: it holds the gateway's routing state and node heartbeats."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_redis,
)


# --- compute and network ------------------------------------------------------------------------------


_METADATA_OPTIONS = {
    LAUNCH_TEMPLATE: "metadataOptions",
    EC2_INSTANCE: "metadataOptions",
    # The build and test instances of a baked image.
    IMAGE_BUILDER_INFRASTRUCTURE: "instanceMetadataOptions",
}


def _imdsv2(args: ResourceValidationArgs, report: ReportViolation) -> None:
    key = _METADATA_OPTIONS.get(args.resource_type)
    if key is None:
        return
    options = mapping(known(args.props, key))
    if options.get("httpEndpoint") == "disabled":
        return  # no metadata service at all
    tokens = options.get("httpTokens")
    if tokens != "required":
        report(
            f"{label(args)} sets {key}.httpTokens to {tokens!r}: set it to 'required' (IMDSv2), "
            "so a request forged through a workload cannot read the node's role credentials.",
            None,
        )


launch_template_imdsv2 = ResourceValidationPolicy(
    name="launch-template-imdsv2",
    description=(
        "Launch templates, instances and image build instances require IMDSv2 session tokens "
        "(httpTokens = required); the node agent reads spot notices with IMDSv2 too."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_imdsv2,
)


def _unencrypted_volumes(args: ResourceValidationArgs) -> Iterator[str]:
    """Where a resource creates an EBS volume without encryption."""
    props = args.props
    if args.resource_type in (LAUNCH_TEMPLATE, IMAGE_RECIPE):
        for i, device in enumerate(map(mapping, items(known(props, "blockDeviceMappings")))):
            ebs = mapping(device.get("ebs"))
            if ebs and not truthy(ebs.get("encrypted")) and not ebs.get("snapshotId"):
                yield f"blockDeviceMappings[{i}] ({device.get('deviceName')})"
    elif args.resource_type == EC2_INSTANCE:
        root = mapping(known(props, "rootBlockDevice"))
        if not truthy(root.get("encrypted")):
            yield "rootBlockDevice"
        for i, device in enumerate(map(mapping, items(known(props, "ebsBlockDevices")))):
            if not truthy(device.get("encrypted")):
                yield f"ebsBlockDevices[{i}]"
    elif args.resource_type == EBS_VOLUME and not truthy(known(props, "encrypted")):
        yield "encrypted"


def _ebs_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where in _unencrypted_volumes(args):
        report(
            f"{label(args)} {where} is not encrypted: set encrypted to true. A GPU node's disk holds model "
            "weights and the engine's caches, and an unencrypted image snapshot copies into every region.",
            None,
        )


ebs_volumes_encrypted = ResourceValidationPolicy(
    name="ebs-volumes-encrypted",
    description=(
        "EBS volumes are encrypted at rest: launch templates' and image recipes' block devices, instances' "
        "root and data volumes, standalone volumes."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_ebs_encrypted,
)

_INGRESS_SCHEMA = PolicyConfigSchema(
    properties={
        "allowedPorts": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": 65535},
            "default": [80, 443],
            "description": "TCP ports the load balancers listen on: the only ports open to the internet.",
        }
    }
)


def _internet(cidr: Any) -> bool:
    """Whether a CIDR reaches (a large part of) the internet: 0.0.0.0/0, ::/0, or a public /8 or wider."""
    try:
        network = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return False
    return network.prefixlen == 0 or (network.prefixlen <= 8 and not network.is_private)


def _port_problem(protocol: Any, from_port: Any, to_port: Any, allowed: set[int]) -> str | None:
    protocol = str(protocol).lower()
    if protocol in ("-1", "all"):
        return "all protocols and ports"
    if protocol not in ("tcp", "6"):
        return f"protocol {protocol}"
    try:
        low, high = int(float(from_port)), int(float(to_port))
    except (TypeError, ValueError):
        return "an unstated port range"
    ports = set(range(low, high + 1)) if high - low < 1024 else None
    if ports is None or not ports <= allowed:
        return f"TCP {low}-{high}" if low != high else f"TCP {low}"
    return None


def _ingress_rules(args: ResourceValidationArgs) -> Iterator[tuple[str, Any, Any, Any, list[Any]]]:
    """(where, protocol, from, to, cidrs) for each ingress rule the resource declares."""
    props = args.props
    if args.resource_type == SECURITY_GROUP:
        for i, rule in enumerate(items(known(props, "ingress"))):
            rule = mapping(rule)
            cidrs = items(rule.get("cidrBlocks")) + items(rule.get("ipv6CidrBlocks"))
            yield f"ingress[{i}]", rule.get("protocol"), rule.get("fromPort"), rule.get("toPort"), cidrs
    elif args.resource_type == SECURITY_GROUP_RULE:
        if known(props, "type") == "ingress":
            cidrs = items(known(props, "cidrBlocks")) + items(known(props, "ipv6CidrBlocks"))
            yield "rule", known(props, "protocol"), known(props, "fromPort"), known(props, "toPort"), cidrs
    elif args.resource_type == SECURITY_GROUP_INGRESS_RULE:
        cidrs = [c for c in (known(props, "cidrIpv4"), known(props, "cidrIpv6")) if c]
        protocol = known(props, "ipProtocol")
        yield "rule", protocol, known(props, "fromPort", 0), known(props, "toPort", 65535), cidrs


def _ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    allowed = {int(p) for p in setting(args, _INGRESS_SCHEMA, "allowedPorts")}
    for where, protocol, from_port, to_port, cidrs in _ingress_rules(args):
        open_to = [str(c) for c in cidrs if _internet(c)]
        if not open_to:
            continue
        problem = _port_problem(protocol, from_port, to_port, allowed)
        if problem:
            report(
                f"{label(args)} {where} opens {problem} to {', '.join(open_to)}: only the load balancer's "
                f"ports ({', '.join(str(p) for p in sorted(allowed))}) may face the internet; reach "
                "anything else through the load balancer or from inside the VPC.",
                None,
            )


internet_ingress_lb_ports_only = ResourceValidationPolicy(
    name="internet-ingress-lb-ports-only",
    description=(
        "No security group opens anything to the internet but the load balancer's listener ports "
        "(config allowedPorts, default 80 and 443)."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=_INGRESS_SCHEMA,
    validate=_ingress,
)

# Resources that carry an IAM (or resource-based) policy document, and where in them.
_POLICY_DOCUMENTS = {
    IAM_POLICY: "policy",
    IAM_ROLE_POLICY: "policy",
    IAM_USER_POLICY: "policy",
    IAM_GROUP_POLICY: "policy",
    S3_BUCKET_POLICY: "policy",
    KMS_KEY: "policy",
    SECRET_POLICY: "policy",
    SQS_QUEUE_POLICY: "policy",
}
_ATTACHMENTS = (
    IAM_ROLE_POLICY_ATTACHMENT,
    IAM_USER_POLICY_ATTACHMENT,
    IAM_GROUP_POLICY_ATTACHMENT,
    IAM_POLICY_ATTACHMENT,
)
_ADMIN_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/AdministratorAccess$")


def _as_list(value: Any) -> list[Any]:
    return items(value) if not isinstance(value, str) else [value]


def _statements(document: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    statements = mapping(json_value(document)).get("Statement")
    for i, statement in enumerate(
        _as_list(statements) if not isinstance(statements, Mapping) else [statements]
    ):
        yield i, mapping(statement)


def _admin_statements(document: Any) -> Iterator[str]:
    for i, statement in _statements(document):
        if statement.get("Effect") != "Allow":
            continue
        resources = _as_list(statement.get("Resource"))
        if "*" not in resources:
            continue
        actions = _as_list(statement.get("Action"))
        if "*" in actions or "*:*" in actions:
            yield f"Statement[{i}] allows Action '*' on Resource '*'"
        elif statement.get("NotAction") is not None:
            yield f"Statement[{i}] allows everything but {statement.get('NotAction')} on Resource '*'"


def _policy_documents(args: ResourceValidationArgs) -> list[tuple[str, Any]]:
    """(where, document) for every policy document the resource carries."""
    props = args.props
    documents: list[tuple[str, Any]] = []
    if args.resource_type in _POLICY_DOCUMENTS:
        key = _POLICY_DOCUMENTS[args.resource_type]
        if present(props, key):
            documents.append((key, props[key]))
    if args.resource_type == IAM_ROLE:
        for i, inline in enumerate(items(known(props, "inlinePolicies"))):
            inline = mapping(inline)
            if inline.get("policy") is not None:
                documents.append((f"inlinePolicies[{i}]", inline["policy"]))
    return documents


def _iam_wildcards(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    documents = _policy_documents(args)
    if args.resource_type == IAM_ROLE:
        for arn in items(known(props, "managedPolicyArns")):
            if isinstance(arn, str) and _ADMIN_POLICY.match(arn):
                report(f"{label(args)} attaches {arn}, which allows '*' on '*'.", None)
    if args.resource_type in _ATTACHMENTS:
        arn = known(props, "policyArn")
        if isinstance(arn, str) and _ADMIN_POLICY.match(arn):
            report(f"{label(args)} attaches {arn}, which allows '*' on '*'.", None)
    for where, document in documents:
        for finding in _admin_statements(document):
            report(f"{label(args)} {where}: {finding}; grant the actions and resources it needs.", None)


# What the fleet controller may do to nodes, and anything else that replaces, resizes, restarts or
# terminates instances: granted on named groups, or on instances with a tag condition, never on '*'.
FLEET_NODE_ACTIONS = (
    "autoscaling:SetInstanceHealth",
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:DetachInstances",
    "autoscaling:SetInstanceProtection",  # holds or opens a node to scale-in (the agents, their own group)
    "ec2:TerminateInstances",
    "ec2:StopInstances",
    "ec2:RebootInstances",
    "ssm:SendCommand",
)


def _node_actions(pattern: Any) -> list[str]:
    """The node actions an Action entry (perhaps a wildcard such as ec2:Terminate* or *) covers."""
    text = str(pattern).lower()
    return [a for a in FLEET_NODE_ACTIONS if fnmatch.fnmatchcase(a.lower(), text)]


def _unscoped_node_actions(document: Any) -> Iterator[str]:
    for i, statement in _statements(document):
        if statement.get("Effect") != "Allow":
            continue
        actions = sorted({a for pattern in _as_list(statement.get("Action")) for a in _node_actions(pattern)})
        if not actions:
            continue
        resources = [str(r) for r in _as_list(statement.get("Resource"))]
        if "*" in resources:
            yield f"Statement[{i}] allows {', '.join(actions)} on Resource '*'"
        elif not statement.get("Condition") and any(r.endswith(("/*", ":*")) for r in resources):
            yield (
                f"Statement[{i}] allows {', '.join(actions)} on every instance or group of the account "
                "without a Condition (scope it with the fleet's tags, e.g. aws:ResourceTag/stack)"
            )


def _fleet_actions(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, document in _policy_documents(args):
        for finding in _unscoped_node_actions(document):
            report(
                f"{label(args)} {where}: {finding}; name the pools' groups (their ARNs) or condition the "
                "instances on the fleet's tags.",
                None,
            )


fleet_actions_scoped = ResourceValidationPolicy(
    name="fleet-actions-scoped",
    description=(
        "Permissions that replace, resize, restart or terminate nodes (the fleet controller's: "
        "SetInstanceHealth, SetDesiredCapacity, SendCommand, TerminateInstances, ...) name their groups or "
        "tag-scoped instances, never Resource '*': a broken or borrowed role must not reach other fleets."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_fleet_actions,
)

iam_no_star_on_star = ResourceValidationPolicy(
    name="iam-no-star-on-star",
    description=(
        "No IAM or resource policy allows every action on every resource ('*' on '*', NotAction on '*', "
        "or AdministratorAccess): each role gets the actions and resources it uses."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_iam_wildcards,
)

# --- secrets in environment values -------------------------------------------------------------------

_SECRET_WORDS = frozenset({"SECRET", "PASSWORD", "PASSWD", "TOKEN", "CREDENTIAL", "CREDENTIALS"})
_SECRET_SUFFIXES = (
    "API_KEY",
    "APIKEY",
    "MASTER_KEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "SECRET_KEY",
    "SIGNING_KEY",
)
_SECRET_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{20,}|xox[abp]-|-----BEGIN [A-Z ]*PRIVATE KEY"
    r"|^esc-standin:)"
)
# Values that name where a secret lives rather than holding it.
_REFERENCE = re.compile(r"^(arn:aws[a-z-]*:(secretsmanager|ssm):|os\.environ/|projects/[^/]+/secrets/)")


def secret_looking(name: str, value: Any) -> bool:
    if not isinstance(value, str) or not value or _REFERENCE.match(value):
        return False
    if _SECRET_SHAPES.search(value):
        return True
    upper = name.upper()
    words = set(re.split(r"[^A-Z0-9]+", upper))
    return bool(words & _SECRET_WORDS) or upper.endswith(_SECRET_SUFFIXES)


def _environment(args: ResourceValidationArgs) -> Iterator[tuple[str, str, Any]]:
    """(container, variable, value) for every plain environment value the resource sets."""
    props = args.props
    if args.resource_type == ECS_TASK_DEFINITION:
        for container in items(json_value(props.get("containerDefinitions"))):
            container = mapping(container)
            for variable in items(container.get("environment")):
                variable = mapping(variable)
                yield str(container.get("name")), str(variable.get("name")), variable.get("value")
    elif args.resource_type == LAMBDA_FUNCTION:
        variables = mapping(path(props, "environment", "variables"))
        for name, value in variables.items():
            yield args.name, str(name), value
    elif args.resource_type in (CLOUD_RUN_JOB, CLOUD_RUN_SERVICE):
        template = (
            path(props, "template", "template")
            if args.resource_type.endswith("Job")
            else path(props, "template")
        )
        for container in items(mapping(template).get("containers")):
            container = mapping(container)
            for variable in items(container.get("envs")):
                variable = mapping(variable)
                yield (
                    str(container.get("name") or args.name),
                    str(variable.get("name")),
                    variable.get("value"),
                )


def _secrets_in_env(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for container, name, value in _environment(args):
        if secret_looking(name, value):
            report(
                f"{label(args)} container {container!r} sets {name} to a literal value that looks like a "
                "secret: anyone who can read the task or job definition sees it. Inject it from Secrets "
                "Manager (ECS `secrets`) or Secret Manager (Cloud Run `valueSource.secretKeyRef`).",
                None,
            )


no_secrets_in_environment = ResourceValidationPolicy(
    name="no-secrets-in-environment",
    description=(
        "No container, job or function environment value holds what looks like a secret in clear: "
        "secrets come from Secrets Manager / Secret Manager references."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_secrets_in_env,
)

# --- Kubernetes pods -------------------------------------------------------------------------------

# Capabilities Pod Security's baseline profile lets a container add; anything else (SYS_ADMIN, NET_ADMIN,
# ALL, ...) reaches past the container.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
        "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
_HOST_NAMESPACES = {"hostNetwork": "network", "hostPID": "process IDs", "hostIPC": "IPC"}


def _privileged_pod_problems(spec: Mapping[str, Any]) -> Iterator[str]:
    for key, what in _HOST_NAMESPACES.items():
        if truthy(known(spec, key)):
            yield f"shares the node's {what} ({key})"
    for volume in map(mapping, items(spec.get("volumes"))):
        if present(volume, "hostPath"):
            yield f"mounts the node's filesystem (volume {volume.get('name')!r} is a hostPath)"
    for container in pod_containers(spec):
        name = container.get("name")
        context = mapping(known(container, "securityContext"))
        if truthy(known(context, "privileged")):
            yield f"runs container {name!r} privileged"
        if truthy(known(context, "allowPrivilegeEscalation")):
            yield f"lets container {name!r} gain privileges (allowPrivilegeEscalation)"
        added = [str(c) for c in items(path(context, "capabilities", "add"))]
        beyond = [c for c in added if c.upper().removeprefix("CAP_") not in BASELINE_CAPABILITIES]
        if beyond:
            yield f"adds capabilities {', '.join(beyond)} to container {name!r}"


def _no_privileged_pods(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = pod_spec(args)
    if spec is None:
        return
    for problem in _privileged_pod_problems(spec):
        report(f"{label(args)} {problem}: a pod escapes to its node this way; drop it.", None)


no_privileged_pods = ResourceValidationPolicy(
    name="no-privileged-pods",
    description=(
        "Kubernetes workloads run no privileged pods: no privileged container, no privilege escalation, no "
        "host network, PID or IPC namespace, no host path, no capability beyond Pod Security's baseline."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_no_privileged_pods,
)

# --- the gateway's admin routes -----------------------------------------------------------------------

_ADMIN_SCHEMA = PolicyConfigSchema(
    properties={
        "adminPaths": {
            "type": "array",
            "items": {"type": "string"},
            # LiteLLM's admin UI and management API (litellm.proxy._types.LiteLLMRoutes), one of each kind.
            "default": [
                "/ui/", "/login", "/key/generate", "/user/new", "/team/new", "/model/new", "/config/update",
                "/spend/logs", "/global/spend/report", "/sso/key/generate", "/organization/new",
                "/customer/new", "/budget/new", "/credentials", "/v1/agents", "/v1/mcp/server",
                "/management/v1/users/bulk",
            ],
            "description": "Paths no internet-facing listener may forward (the gateway's admin routes).",
        }
    }
)  # fmt: skip


def _alb_matches(pattern: str, path: str) -> bool:
    """An ALB path pattern: case-sensitive, the whole path, `*` any characters, `?` exactly one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, path) is not None


def _forwards(actions: Any) -> bool:
    return any(str(mapping(a).get("type")) == "forward" for a in items(actions))


def _public_listener_admin(args: StackValidationArgs, report: ReportViolation) -> None:
    admin = list(setting(args, _ADMIN_SCHEMA, "adminPaths"))
    resources = args.resources
    public_lbs = [
        lb for lb in of_types(resources, [LOAD_BALANCER]) if known(lb.props, "internal") is not True
    ]
    rules = of_types(resources, [LISTENER_RULE])
    for listener in of_types(resources, [LISTENER]):
        if not referenced(listener, "loadBalancerArn", public_lbs):
            continue
        if known(listener.props, "protocol") not in ("HTTP", "HTTPS"):
            continue
        if _forwards(known(listener.props, "defaultActions")):
            report(
                f"{label(listener)} on an internet-facing load balancer forwards every path by default, the "
                "gateway's admin UI and management API included: answer unlisted paths with a fixed 404 and "
                "forward only the API's paths in listener rules.",
                listener.urn,
            )
        for rule in rules:
            if not referenced(rule, "listenerArn", [listener]) or not _forwards(known(rule.props, "actions")):
                continue
            patterns = [
                str(p)
                for condition in items(known(rule.props, "conditions"))
                for p in items(path(mapping(condition), "pathPattern", "values"))
            ]
            if not patterns:
                report(
                    f"{label(rule)} forwards from a public listener without a path condition: it exposes the "
                    "gateway's admin routes. Name the API's paths.",
                    rule.urn,
                )
                continue
            exposed = [p for p in admin if any(_alb_matches(pattern, p) for pattern in patterns)]
            if exposed:
                report(
                    f"{label(rule)} forwards admin routes from a public listener: its paths {patterns} match "
                    f"{', '.join(exposed)}. List the inference API's paths only.",
                    rule.urn,
                )


public_listener_no_admin = StackValidationPolicy(
    name="public-listener-no-admin",
    description=(
        "Internet-facing load balancer listeners forward only the inference API, never the gateway's admin "
        "UI or management routes (config adminPaths): a leaked or guessed key must not reach /key or /ui."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=_ADMIN_SCHEMA,
    validate=_public_listener_admin,
)

POLICIES = [
    s3_bucket_public_access_blocked,
    s3_bucket_encrypted,
    gcs_public_access_prevention,
    gcs_uniform_bucket_access,
    gcs_no_public_members,
    rds_storage_encrypted,
    rds_tls_required,
    redis_encrypted_with_auth,
    launch_template_imdsv2,
    ebs_volumes_encrypted,
    internet_ingress_lb_ports_only,
    iam_no_star_on_star,
    fleet_actions_scoped,
    no_secrets_in_environment,
    public_listener_no_admin,
    no_privileged_pods,
]
