"""AWS as far as a render needs it: each resource type's name rules, ids and computed outputs.

Names: limits from the botocore service models installed with boto3 (`botocore/data/<service>/*/
service-2.json`: the shape's min/max/pattern, or its documented constraints where the shape has none).
"""

from __future__ import annotations

from typing import Any

from components.core.catalog.aws import AWS_REGIONS, region_code
from fleet.mocks.registry import MockContext, NameRule, declare, digest, invoke, register

ACCOUNT_ID = "123456789012"

# --- name rules, one per API naming convention ---------------------------------------------------------

_LB_NAME = NameRule(
    32,
    "elbv2 CreateLoadBalancer Name",
    pattern=r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?",
    what="letters, digits and hyphens, not at either end",
    forbidden_prefixes=("internal-",),
)
_TG_NAME = NameRule(
    32,
    "elbv2 CreateTargetGroup Name",
    pattern=r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?",
    what="letters, digits and hyphens, not at either end",
)
# RDS and ElastiCache identifiers: a letter first, then letters, digits and single hyphens, no hyphen last.
_IDENTIFIER = r"[A-Za-z](?:-?[A-Za-z0-9])*"
_IDENTIFIER_WORDS = "a letter, then letters, digits and single hyphens, not ending in one"
_REDIS_GROUP_ID = NameRule(
    40, "elasticache CreateReplicationGroup ReplicationGroupId", pattern=_IDENTIFIER, what=_IDENTIFIER_WORDS
)
_RDS_CLUSTER_ID = NameRule(
    63, "rds CreateDBCluster DBClusterIdentifier (Aurora)", pattern=_IDENTIFIER, what=_IDENTIFIER_WORDS
)
_RDS_INSTANCE_ID = NameRule(
    63, "rds CreateDBInstance DBInstanceIdentifier", pattern=_IDENTIFIER, what=_IDENTIFIER_WORDS
)
_RDS_PARAMETER_GROUP = NameRule(
    255,
    "rds CreateDBClusterParameterGroup DBClusterParameterGroupName",
    pattern=_IDENTIFIER,
    what=_IDENTIFIER_WORDS,
)
_RDS_SUBNET_GROUP = NameRule(
    255,
    "rds CreateDBSubnetGroup DBSubnetGroupName",
    pattern=r"[A-Za-z][A-Za-z0-9._ -]*",
    what="a letter, then letters, digits, periods, underscores, spaces or hyphens",
)
_RDS_GLOBAL_ID = NameRule(
    255, "rds CreateGlobalCluster GlobalClusterIdentifier", pattern=r"[A-Za-z][0-9A-Za-z-:._]*"
)
_CACHE_SUBNET_GROUP = NameRule(
    255, "elasticache CreateCacheSubnetGroup CacheSubnetGroupName", pattern=r"[A-Za-z0-9-]+",
    what="letters, digits or hyphens",
)  # fmt: skip
# The API model gives no constraint; the ElastiCache User Guide (Creating a parameter group) does: 1-255
# letters, digits or hyphens, a letter first, no hyphen last and no two in a row (stored lower-case).
_CACHE_PARAMETER_GROUP = NameRule(
    255,
    "elasticache CreateCacheParameterGroup CacheParameterGroupName (ElastiCache User Guide)",
    pattern=_IDENTIFIER,
    what=_IDENTIFIER_WORDS,
)
_LAMBDA_LAYER = NameRule(
    140, "lambda PublishLayerVersion LayerName (LayerNameOrArn, a bare name)", pattern=r"[a-zA-Z0-9_-]+"
)
# RBAC user and user group ids: the API model gives the pattern (a letter, then letters, digits, hyphens);
# the console states the rest (at most 40, no trailing or doubled hyphen), as the other cache ids.
_CACHE_USER_ID = NameRule(
    40, "elasticache CreateUser UserId / CreateUserGroup UserGroupId", pattern=_IDENTIFIER,
    what=_IDENTIFIER_WORDS,
)  # fmt: skip
_SSM_DOCUMENT = NameRule(
    128, "ssm CreateDocument Name (DocumentName)", min_length=3, pattern=r"[a-zA-Z0-9_\-.]+",
    what="letters, digits, _ - .", forbidden_prefixes=("aws", "amazon", "amzn"),
)  # fmt: skip
_IAM_NAME = r"[\w+=,.@-]+"
_IAM_ROLE = NameRule(64, "iam CreateRole RoleName", pattern=_IAM_NAME)
_IAM_POLICY = NameRule(128, "iam PutRolePolicy PolicyName", pattern=_IAM_NAME)
_IAM_MANAGED_POLICY = NameRule(128, "iam CreatePolicy PolicyName", pattern=_IAM_NAME)
_IAM_INSTANCE_PROFILE = NameRule(128, "iam CreateInstanceProfile InstanceProfileName", pattern=_IAM_NAME)
_LAMBDA_NAME = NameRule(64, "lambda CreateFunction FunctionName (a bare name)", pattern=r"[a-zA-Z0-9_-]+")
_ECS_NAME = r"[A-Za-z0-9_-]+"
_ECS_CLUSTER = NameRule(255, "ecs CreateCluster clusterName", pattern=_ECS_NAME)
_ECS_SERVICE = NameRule(255, "ecs CreateService serviceName", pattern=_ECS_NAME)
_ECS_FAMILY = NameRule(255, "ecs RegisterTaskDefinition family", pattern=_ECS_NAME)
_LOG_GROUP = NameRule(512, "logs CreateLogGroup logGroupName", pattern=r"[.\-_/#A-Za-z0-9]+")
_ALARM = NameRule(255, "cloudwatch PutMetricAlarm AlarmName")
_COMPOSITE_ALARM = NameRule(255, "cloudwatch PutCompositeAlarm AlarmName")
_DASHBOARD = NameRule(
    255, "cloudwatch PutDashboard DashboardName", pattern=r"[A-Za-z0-9_-]+", what="letters, digits, - and _"
)
_BUDGET = NameRule(
    100,
    "budgets CreateBudget BudgetName",
    pattern=r"(?!.*/action/)[^:\\]+",
    what="anything but ':' and '\\', without '/action/'",
)
_EVENT_RULE = NameRule(64, "events PutRule Name", pattern=r"[.\-_A-Za-z0-9]+")
_QUEUE = NameRule(80, "sqs CreateQueue QueueName", pattern=r"[A-Za-z0-9_-]+")
_TOPIC = NameRule(256, "sns CreateTopic Name", pattern=r"[A-Za-z0-9_-]+")
_PARAMETER = NameRule(
    2048,
    "ssm PutParameter Name",
    pattern=r"/?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*",
    what="letters, digits, _ . - and / between levels",
    forbidden_prefixes=("aws", "ssm", "/aws", "/ssm"),
)
_SECRET = NameRule(512, "secretsmanager CreateSecret Name", pattern=r"[A-Za-z0-9/_+=.@-]+")
_KMS_ALIAS = NameRule(
    256,
    "kms CreateAlias AliasName",
    pattern=r"alias/[a-zA-Z0-9:/_-]+",
    what="alias/ then letters, digits and : / _ -",
    forbidden_prefixes=("alias/aws/",),
)
_SECURITY_GROUP = NameRule(
    255,
    "ec2 CreateSecurityGroup GroupName",
    pattern=r"[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]+",
    forbidden_prefixes=("sg-",),
)
_SCALING_POLICY = NameRule(256, "application-autoscaling PutScalingPolicy PolicyName", pattern=r"[ -~]+")
_BUCKET = NameRule(
    63,
    "s3 CreateBucket Bucket (bucket naming rules)",
    min_length=3,
    pattern=r"[a-z0-9][a-z0-9.-]*[a-z0-9]",
    what="lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit",
    forbidden_prefixes=("xn--", "sthree-", "amzn-s3-demo-"),
)
_DNS_NAME = NameRule(253, "route53 ChangeResourceRecordSets Name (a DNS name)")
_LAUNCH_TEMPLATE = NameRule(
    128, "ec2 LaunchTemplateName", min_length=3, pattern=r"[a-zA-Z0-9().\-/_]+",
    what="letters, digits and ( ) . - / _",
)  # fmt: skip
_ASG_NAME = NameRule(
    255, "autoscaling CreateAutoScalingGroup AutoScalingGroupName", pattern=r"[!-9;-~]+",
    what="printable ASCII without spaces or ':'",
)  # fmt: skip
_LIFECYCLE_HOOK = NameRule(255, "autoscaling PutLifecycleHook LifecycleHookName", pattern=r"[A-Za-z0-9\-_/]+")
_ASG_POLICY = NameRule(255, "autoscaling PutScalingPolicy PolicyName", pattern=r"[ -~]+")
_OBJECT_KEY = NameRule(1024, "s3 PutObject Key")
# Image Builder's ResourceName shape (CreateComponent, CreateImageRecipe, CreateInfrastructureConfiguration,
# CreateDistributionConfiguration name): 3-128 characters.
_IMAGEBUILDER_NAME = NameRule(
    128,
    "imagebuilder Create* name (ResourceName)",
    min_length=3,
    pattern=r"[-_A-Za-z0-9][-_A-Za-z0-9 ]{1,126}[-_A-Za-z0-9]",
    what="letters, digits, hyphens, underscores and inner spaces",
)
_ECR_REPOSITORY = NameRule(
    256,
    "ecr CreateRepository repositoryName",
    min_length=2,
    pattern=r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*",
    what="lower-case letters and digits, separated by . _ __ - or /",
)
_ECR_CACHE_PREFIX = NameRule(
    30,
    "ecr CreatePullThroughCacheRule ecrRepositoryPrefix",
    min_length=2,
    pattern=r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*",
    what="lower-case letters and digits, separated by . _ - or /",
)


def _arn(ctx: MockContext, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{ctx.region}:{ACCOUNT_ID}:{resource}"


# --- network ---------------------------------------------------------------------------------------------

for _token, _prefix in {
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce-",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg-",
    "aws:ec2/flowLog:FlowLog": "fl-",
    "aws:ec2/vpcPeeringConnection:VpcPeeringConnection": "pcx-",
    "aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter": "pcx-",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr-",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr-",
}.items():
    declare(_token, name_input=None, id_prefix=_prefix)
for _token in ("aws:ec2/route:Route", "aws:ec2/routeTableAssociation:RouteTableAssociation"):
    declare(_token, name_input=None)

declare("aws:ec2/securityGroup:SecurityGroup", rule=_SECURITY_GROUP, id_prefix="sg-")


# --- compute -----------------------------------------------------------------------------------------------


@register(
    "aws:ec2/launchTemplate:LaunchTemplate", prefix_input="namePrefix", rule=_LAUNCH_TEMPLATE, id_prefix="lt-"
)
def _launch_template(ctx: MockContext) -> dict[str, Any]:
    return {"arn": _arn(ctx, "ec2", f"launch-template/{ctx.id}"), "latestVersion": 1, "defaultVersion": 1}


@register("aws:autoscaling/group:Group", prefix_input="namePrefix", rule=_ASG_NAME, id_is_name=True)
def _autoscaling_group(ctx: MockContext) -> dict[str, Any]:
    arn = f"autoScalingGroup:{_uuid(ctx.id)}:autoScalingGroupName/{ctx.physical_name}"
    return {"arn": _arn(ctx, "autoscaling", arn)}


declare("aws:autoscaling/lifecycleHook:LifecycleHook", autonamed=False, rule=_LIFECYCLE_HOOK)


@register("aws:autoscaling/policy:Policy", rule=_ASG_POLICY, id_is_name=True)
def _autoscaling_policy(ctx: MockContext) -> dict[str, Any]:
    group = ctx.inputs.get("autoscalingGroupName")
    policy = f"scalingPolicy:{_uuid(ctx.id)}:autoScalingGroupName/{group}:policyName/{ctx.physical_name}"
    return {"arn": _arn(ctx, "autoscaling", policy)}


declare("aws:ec2/instance:Instance", name_input=None, id_prefix="i-")


# --- images (EC2 Image Builder) ----------------------------------------------------------------------------

# Distribution configuration ARN -> the regions it copies AMIs to (an image's outputs name one AMI each).
_DISTRIBUTION_REGIONS: dict[str, list[str]] = {}


def _imagebuilder_arn(ctx: MockContext, kind: str, suffix: str = "") -> str:
    return _arn(ctx, "imagebuilder", f"{kind}/{ctx.physical_name.lower()}{suffix}")


@register("aws:imagebuilder/component:Component", rule=_IMAGEBUILDER_NAME)
def _component(ctx: MockContext) -> dict[str, Any]:
    return {
        "arn": _imagebuilder_arn(ctx, "component", f"/{ctx.inputs.get('version')}/1"),
        "owner": ACCOUNT_ID,
    }


@register("aws:imagebuilder/imageRecipe:ImageRecipe", rule=_IMAGEBUILDER_NAME)
def _image_recipe(ctx: MockContext) -> dict[str, Any]:
    return {
        "arn": _imagebuilder_arn(ctx, "image-recipe", f"/{ctx.inputs.get('version')}"),
        "owner": ACCOUNT_ID,
    }


@register("aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration", rule=_IMAGEBUILDER_NAME)
def _infrastructure_configuration(ctx: MockContext) -> dict[str, Any]:
    return {"arn": _imagebuilder_arn(ctx, "infrastructure-configuration")}


@register("aws:imagebuilder/distributionConfiguration:DistributionConfiguration", rule=_IMAGEBUILDER_NAME)
def _distribution_configuration(ctx: MockContext) -> dict[str, Any]:
    arn = _imagebuilder_arn(ctx, "distribution-configuration")
    _DISTRIBUTION_REGIONS[arn] = [str(d.get("region")) for d in ctx.inputs.get("distributions") or []]
    return {"arn": arn}


@register("aws:imagebuilder/image:Image", name_input=None)
def _image(ctx: MockContext) -> dict[str, Any]:
    recipe = str(ctx.inputs.get("imageRecipeArn", "")).split("/")[1:2] or ["image"]
    regions = _DISTRIBUTION_REGIONS.get(str(ctx.inputs.get("distributionConfigurationArn")), [ctx.region])
    amis = [
        {"region": region, "image": f"ami-{digest(ctx.id + region)[:17]}", "accountId": ACCOUNT_ID}
        for region in regions
    ]
    return {
        "arn": _arn(ctx, "imagebuilder", f"image/{recipe[0]}/1.0.0/1"),
        "version": "1.0.0/1",
        "outputResources": [{"amis": amis, "containers": []}],
    }


@register("aws:ec2/vpc:Vpc", name_input=None, id_prefix="vpc-")
def _vpc(ctx: MockContext) -> dict[str, Any]:
    table = f"rtb-{digest(ctx.id)[:17]}"
    return {"defaultRouteTableId": table, "mainRouteTableId": table}


@register("aws:ec2/eip:Eip", name_input=None, id_prefix="eipalloc-")
def _eip(ctx: MockContext) -> dict[str, Any]:
    octet = int(digest(ctx.args.name)[:2], 16)
    return {"publicIp": f"203.0.113.{octet}", "allocationId": ctx.id}


# --- load balancers, certificates, DNS ----------------------------------------------------------------------


@register("aws:lb/loadBalancer:LoadBalancer", rule=_LB_NAME)
def _load_balancer(ctx: MockContext) -> dict[str, Any]:
    suffix = f"app/{ctx.physical_name}/{digest(ctx.id)[:16]}"
    return {
        "arn": _arn(ctx, "elasticloadbalancing", f"loadbalancer/{suffix}"),
        "arnSuffix": suffix,
        "dnsName": f"{ctx.physical_name}-{int(digest(ctx.id)[:8], 16)}.{ctx.region}.elb.amazonaws.com",
        "zoneId": _ALB_ZONE_IDS.get(ctx.region, "Z" + digest(ctx.region)[:13].upper()),
    }


@register("aws:lb/targetGroup:TargetGroup", rule=_TG_NAME)
def _target_group(ctx: MockContext) -> dict[str, Any]:
    suffix = f"targetgroup/{ctx.physical_name}/{digest(ctx.id)[:16]}"
    return {"arn": _arn(ctx, "elasticloadbalancing", suffix), "arnSuffix": suffix}


declare("aws:lb/listener:Listener", name_input=None)
declare("aws:lb/listenerRule:ListenerRule", name_input=None)


@register("aws:acm/certificate:Certificate", name_input=None)
def _certificate(ctx: MockContext) -> dict[str, Any]:
    # ACM asks for the same validation record for a name in every region of an account.
    names = [ctx.inputs.get("domainName"), *(ctx.inputs.get("subjectAlternativeNames") or [])]
    return {
        "arn": _arn(ctx, "acm", f"certificate/{_uuid(ctx.id)}"),
        "domainValidationOptions": [
            {
                "domainName": name,
                "resourceRecordName": f"_{digest(ACCOUNT_ID + str(name))[:32]}.{name}.",
                "resourceRecordType": "CNAME",
                "resourceRecordValue": f"_{digest(str(name))[:32]}.validations.aws.",
            }
            for name in names
        ],
    }


declare("aws:acm/certificateValidation:CertificateValidation", name_input=None)


@register("aws:route53/record:Record", autonamed=False, rule=_DNS_NAME)
def _record(ctx: MockContext) -> dict[str, Any]:
    name = ctx.inputs.get("name")
    return {"fqdn": name.rstrip(".") if isinstance(name, str) else name}


@register("aws:route53/healthCheck:HealthCheck", name_input=None)
def _health_check(ctx: MockContext) -> dict[str, Any]:
    return {"arn": f"arn:aws:route53:::healthcheck/{ctx.id}"}


# --- databases and caches -------------------------------------------------------------------------------


@register(
    "aws:rds/globalCluster:GlobalCluster", name_input="globalClusterIdentifier", autonamed=False,
    rule=_RDS_GLOBAL_ID, id_is_name=True,
)  # fmt: skip
def _global_cluster(ctx: MockContext) -> dict[str, Any]:
    return {
        "arn": f"arn:aws:rds::{ACCOUNT_ID}:global-cluster:{ctx.id}",
        "endpoint": f"{ctx.id}.global-{digest(ctx.id)[:10]}.global.rds.amazonaws.com",
        "globalClusterResourceId": f"cluster-{digest(ctx.id)[:20]}",
    }


@register(
    "aws:rds/cluster:Cluster", name_input="clusterIdentifier", lowercase=True, rule=_RDS_CLUSTER_ID,
    id_is_name=True,
)  # fmt: skip
def _rds_cluster(ctx: MockContext) -> dict[str, Any]:
    host = f"{digest(ACCOUNT_ID + ctx.region)[:12]}.{ctx.region}.rds.amazonaws.com"
    return {
        "arn": _arn(ctx, "rds", f"cluster:{ctx.id}"),
        "clusterIdentifier": ctx.id,
        "endpoint": f"{ctx.id}.cluster-{host}",
        "readerEndpoint": f"{ctx.id}.cluster-ro-{host}",
        # RDS's DbClusterResourceId: "cluster-" and 26 upper-case letters and digits.
        "clusterResourceId": f"cluster-{digest(ctx.region + ctx.id)[:26].upper()}",
    }


declare(
    "aws:rds/clusterInstance:ClusterInstance", name_input="identifier", lowercase=True, rule=_RDS_INSTANCE_ID,
    id_is_name=True,
)  # fmt: skip
declare("aws:rds/clusterParameterGroup:ClusterParameterGroup", lowercase=True, rule=_RDS_PARAMETER_GROUP)
declare("aws:rds/subnetGroup:SubnetGroup", lowercase=True, rule=_RDS_SUBNET_GROUP)


@register(
    "aws:elasticache/replicationGroup:ReplicationGroup", name_input="replicationGroupId", lowercase=True,
    rule=_REDIS_GROUP_ID, id_is_name=True,
)  # fmt: skip
def _replication_group(ctx: MockContext) -> dict[str, Any]:
    host = f"{ctx.id}.{digest(ctx.id)[:6]}.{region_code(ctx.region)}.cache.amazonaws.com"
    return {
        "arn": _arn(ctx, "elasticache", f"replicationgroup:{ctx.id}"),
        "primaryEndpointAddress": f"master.{host}",
        "readerEndpointAddress": f"replica.{host}",
    }


declare("aws:elasticache/subnetGroup:SubnetGroup", lowercase=True, rule=_CACHE_SUBNET_GROUP)
declare("aws:elasticache/parameterGroup:ParameterGroup", lowercase=True, rule=_CACHE_PARAMETER_GROUP)


@register(
    "aws:elasticache/user:User", name_input="userId", autonamed=False, rule=_CACHE_USER_ID, id_is_name=True
)
def _cache_user(ctx: MockContext) -> dict[str, Any]:
    return {"arn": _arn(ctx, "elasticache", f"user:{ctx.id}")}


@register(
    "aws:elasticache/userGroup:UserGroup", name_input="userGroupId", autonamed=False, rule=_CACHE_USER_ID,
    id_is_name=True,
)  # fmt: skip
def _cache_user_group(ctx: MockContext) -> dict[str, Any]:
    return {"arn": _arn(ctx, "elasticache", f"usergroup:{ctx.id}")}


@register("aws:kms/key:Key", name_input=None)
def _kms_key(ctx: MockContext) -> dict[str, Any]:
    key_id = _uuid(ctx.id)
    return {"keyId": key_id, "arn": _arn(ctx, "kms", f"key/{key_id}")}


declare("aws:kms/alias:Alias", autonamed=False, rule=_KMS_ALIAS)


@register("aws:secretsmanager/secret:Secret", rule=_SECRET)
def _secret(ctx: MockContext) -> dict[str, Any]:
    return {"arn": _arn(ctx, "secretsmanager", f"secret:{ctx.physical_name}-{ctx.id[-6:]}")}


declare("aws:secretsmanager/secretVersion:SecretVersion", name_input=None)


# --- storage ---------------------------------------------------------------------------------------------


@register("aws:s3/bucket:Bucket", name_input="bucket", lowercase=True, rule=_BUCKET, id_is_name=True)
def _bucket(ctx: MockContext) -> dict[str, Any]:
    return {"arn": f"arn:aws:s3:::{ctx.id}", "bucketDomainName": f"{ctx.id}.s3.amazonaws.com"}


for _token in (
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketVersioning:BucketVersioning",
):
    declare(_token, name_input=None)
declare("aws:s3/bucketObjectv2:BucketObjectv2", name_input="key", autonamed=False, rule=_OBJECT_KEY)


# --- containers and functions -------------------------------------------------------------------------------

declare("aws:ecs/cluster:Cluster", rule=_ECS_CLUSTER)
declare("aws:ecs/service:Service", rule=_ECS_SERVICE)
declare("aws:ecs/taskDefinition:TaskDefinition", name_input="family", autonamed=False, rule=_ECS_FAMILY)
declare("aws:appautoscaling/target:Target", name_input=None)
declare("aws:appautoscaling/policy:Policy", rule=_SCALING_POLICY)


@register("aws:lambda/function:Function", rule=_LAMBDA_NAME, id_is_name=True)
def _function(ctx: MockContext) -> dict[str, Any]:
    arn = _arn(ctx, "lambda", f"function:{ctx.physical_name}")
    return {
        "arn": arn,
        "invokeArn": f"arn:aws:apigateway:{ctx.region}:lambda:path/2015-03-31/functions/{arn}",
    }


declare("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig", name_input=None)


@register("aws:lambda/layerVersion:LayerVersion", name_input="layerName", autonamed=False, rule=_LAMBDA_LAYER)
def _layer_version(ctx: MockContext) -> dict[str, Any]:
    layer = _arn(ctx, "lambda", f"layer:{ctx.physical_name}")
    return {"layerArn": layer, "arn": f"{layer}:1", "version": "1"}


declare("aws:lambda/permission:Permission", name_input=None)


@register("aws:lambda/invocation:Invocation", name_input=None)
def _invocation(ctx: MockContext) -> dict[str, Any]:
    # What the function answered; the offline render does not run it.
    return {"result": "{}"}


@register(
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule", name_input="ecrRepositoryPrefix", autonamed=False,
    rule=_ECR_CACHE_PREFIX,
)  # fmt: skip
def _pull_through_cache_rule(ctx: MockContext) -> dict[str, Any]:
    return {"registryId": ACCOUNT_ID}


@register("aws:ecr/repository:Repository", autonamed=False, rule=_ECR_REPOSITORY, id_is_name=True)
def _repository(ctx: MockContext) -> dict[str, Any]:
    return {
        "arn": _arn(ctx, "ecr", f"repository/{ctx.physical_name}"),
        "registryId": ACCOUNT_ID,
        "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{ctx.region}.amazonaws.com/{ctx.physical_name}",
    }


# --- identity -------------------------------------------------------------------------------------------

declare("aws:iam/role:Role", rule=_IAM_ROLE, id_is_name=True)
declare("aws:iam/rolePolicy:RolePolicy", rule=_IAM_POLICY)
declare("aws:iam/instanceProfile:InstanceProfile", rule=_IAM_INSTANCE_PROFILE, id_is_name=True)
declare("aws:iam/rolePolicyAttachment:RolePolicyAttachment", name_input=None)


@register("aws:iam/policy:Policy", rule=_IAM_MANAGED_POLICY)
def _managed_policy(ctx: MockContext) -> dict[str, Any]:
    return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:policy/{ctx.physical_name}", "policyId": f"ANPA{ctx.id[-17:]}"}


# --- events, alarms, queues, parameters, logs --------------------------------------------------------------


@register("aws:cloudwatch/metricAlarm:MetricAlarm", rule=_ALARM, id_is_name=True)
def _metric_alarm(ctx: MockContext) -> dict[str, Any]:
    return {"arn": _arn(ctx, "cloudwatch", f"alarm:{ctx.physical_name}")}


@register(
    "aws:cloudwatch/compositeAlarm:CompositeAlarm",
    name_input="alarmName",
    autonamed=False,
    rule=_COMPOSITE_ALARM,
    id_is_name=True,
)
def _composite_alarm(ctx: MockContext) -> dict[str, Any]:
    return {"arn": _arn(ctx, "cloudwatch", f"alarm:{ctx.physical_name}")}


@register(
    "aws:cloudwatch/dashboard:Dashboard",
    name_input="dashboardName",
    autonamed=False,
    rule=_DASHBOARD,
    id_is_name=True,
)
def _dashboard(ctx: MockContext) -> dict[str, Any]:
    return {"dashboardArn": f"arn:aws:cloudwatch::{ACCOUNT_ID}:dashboard/{ctx.physical_name}"}


@register("aws:budgets/budget:Budget", rule=_BUDGET)
def _budget(ctx: MockContext) -> dict[str, Any]:
    return {"arn": f"arn:aws:budgets::{ACCOUNT_ID}:budget/{ctx.physical_name}", "accountId": ACCOUNT_ID}


@register("aws:cloudwatch/eventRule:EventRule", rule=_EVENT_RULE)
def _event_rule(ctx: MockContext) -> dict[str, Any]:
    return {"arn": _arn(ctx, "events", f"rule/{ctx.physical_name}")}


declare("aws:cloudwatch/eventTarget:EventTarget", name_input=None)
declare("aws:cloudwatch/logGroup:LogGroup", rule=_LOG_GROUP)


@register("aws:sqs/queue:Queue", rule=_QUEUE)
def _queue(ctx: MockContext) -> dict[str, Any]:
    return {
        "arn": _arn(ctx, "sqs", ctx.physical_name),
        "url": f"https://sqs.{ctx.region}.amazonaws.com/{ACCOUNT_ID}/{ctx.physical_name}",
    }


@register("aws:sns/topic:Topic", rule=_TOPIC)
def _topic(ctx: MockContext) -> dict[str, Any]:
    return {"arn": _arn(ctx, "sns", ctx.physical_name)}


declare("aws:sns/topicSubscription:TopicSubscription", name_input=None)
declare("aws:sns/topicPolicy:TopicPolicy", name_input=None)


@register("aws:ssm/document:Document", autonamed=False, rule=_SSM_DOCUMENT, id_is_name=True)
def _document(ctx: MockContext) -> dict[str, Any]:
    return {"arn": _arn(ctx, "ssm", f"document/{ctx.physical_name}")}


@register("aws:ssm/parameter:Parameter", rule=_PARAMETER, id_is_name=True)
def _parameter(ctx: MockContext) -> dict[str, Any]:
    return {"arn": _arn(ctx, "ssm", f"parameter{ctx.physical_name}")}


# --- functions (invokes) --------------------------------------------------------------------------------

# Route53 zone ids of ALBs per region (an alias record names the target's zone).
_ALB_ZONE_IDS = {
    "us-east-1": "Z35SXDOTRQ7X7K",
    "us-east-2": "Z3AADJGX6KTTL2",
    "us-west-1": "Z368ELLRRE2KJ0",
    "us-west-2": "Z1H1FL5HABSF5",
    "eu-west-1": "Z32O12XQLNTSW2",
    "eu-central-1": "Z215JYRZR1TBD5",
}
# The account ELB writes access logs from, in regions older than August 2022.
_ELB_ACCOUNTS = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "eu-west-1": "156460612806",
    "eu-central-1": "054676820928",
}


@invoke("aws:index/getAvailabilityZones:getAvailabilityZones")
def _availability_zones(args: dict[str, Any], region: str) -> dict[str, Any]:
    count = AWS_REGIONS[region].availability_zones
    return {
        "names": [f"{region}{s}" for s in "abcdef"[:count]],
        "zoneIds": [f"{region_code(region)}-az{i + 1}" for i in range(count)],
        "id": region,
        "region": region,
    }


@invoke("aws:index/getCallerIdentity:getCallerIdentity")
def _caller_identity(args: dict[str, Any], region: str) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT_ID,
        "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/inference-fleet-deployer/pulumi",
        "userId": "AROAEXAMPLEDEPLOYER:pulumi",
        "id": ACCOUNT_ID,
    }


@invoke("aws:index/getRegion:getRegion")
def _region(args: dict[str, Any], region: str) -> dict[str, Any]:
    return {"name": region, "region": region, "id": region, "endpoint": f"ec2.{region}.amazonaws.com"}


@invoke("aws:route53/getZone:getZone")
def _zone(args: dict[str, Any], region: str) -> dict[str, Any]:
    name = str(args.get("name", "")).rstrip(".")
    zone_id = "Z" + digest(name)[:20].upper()
    return {"zoneId": zone_id, "id": zone_id, "name": name, "privateZone": False}


@invoke("aws:elb/getServiceAccount:getServiceAccount")
def _elb_service_account(args: dict[str, Any], region: str) -> dict[str, Any]:
    account = _ELB_ACCOUNTS.get(region, "000000000000")
    return {"arn": f"arn:aws:iam::{account}:root", "id": account, "region": region}


@invoke("aws:index/getPartition:getPartition")
def _partition(args: dict[str, Any], region: str) -> dict[str, Any]:
    return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}


@invoke("aws:eks/getCluster:getCluster")
def _eks_cluster(args: dict[str, Any], region: str) -> dict[str, Any]:
    name = str(args.get("name", ""))
    host = digest(f"{region}:{name}")[:32].upper()
    return {
        "name": name,
        "id": name,
        "arn": f"arn:aws:eks:{region}:{ACCOUNT_ID}:cluster/{name}",
        "endpoint": f"https://{host}.gr7.{region}.eks.amazonaws.com",
        "certificateAuthorities": [{"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}],
        "version": "1.33",
        "status": "ACTIVE",
    }


@invoke("aws:ecr/getAuthorizationToken:getAuthorizationToken")
def _ecr_token(args: dict[str, Any], region: str) -> dict[str, Any]:
    # A stand-in for the 12-hour token the deployer's login gets (user AWS).
    registry = str(args.get("registryId") or ACCOUNT_ID)
    return {
        "userName": "AWS",
        "password": "ecr-offline-render-token",
        "authorizationToken": "QVdTOmVjci1vZmZsaW5lLXJlbmRlci10b2tlbg==",
        "proxyEndpoint": f"https://{registry}.dkr.ecr.{region}.amazonaws.com",
        "expiresAt": "2026-12-01T00:00:00Z",
        "id": region,
    }


@invoke("aws:ec2/getSubnet:getSubnet")
def _subnet(args: dict[str, Any], region: str) -> dict[str, Any]:
    # A subnet of someone else's VPC (the cluster's): a plausible /24 derived from its id.
    subnet_id = str(args.get("id", ""))
    d = digest(subnet_id)
    return {
        "id": subnet_id,
        "cidrBlock": f"10.{int(d[:2], 16)}.{int(d[2:4], 16)}.0/24",
        "vpcId": f"vpc-{d[4:21]}",
        "availabilityZone": f"{region}a",
    }


def common_outputs(token: str, physical: str, region: str) -> dict[str, Any]:
    """What every AWS resource reports: an ARN and its region."""
    module = token.split(":")[1]
    service, _, kind = module.partition("/")
    kebab = "".join(f"-{c.lower()}" if c.isupper() else c for c in kind)
    scope = "" if service == "iam" else region
    return {"arn": f"arn:aws:{service}:{scope}:{ACCOUNT_ID}:{kebab}/{physical}", "region": region}


def _uuid(text: str) -> str:
    d = digest(text)
    return f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}"
