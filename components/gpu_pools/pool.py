"""GpuNodePool: one pool's GPU nodes in a region, from the baked image, behind an internal load balancer.

gateway (its SG) --HTTP 80--> internal ALB (pool LB SG) --8080--> node agents (node SG)
node agents --6379 TLS--> the region's Redis (heartbeats, as the nodes' own ACL user); --443--> AWS APIs
the fleet controller (its security group) --8080--> node agents (it opens that way in itself)
engines listen on 127.0.0.1 only; the agent is the node's one open port

launch template: the baked AMI, IMDSv2 required (hop limit 2, for containers on the node), encrypted
  gp3 root, the instance id as hostname, an instance profile with only the node's own calls, user data
  that writes the agent's config
Auto Scaling group across the private subnets: on-demand base + spot above it (price-capacity-
  optimized), capacity rebalancing, launch-before-terminate maintenance; its launch and termination
  lifecycle hooks, instance refresh with its rollback, its health checks and ReadyNodes alarm: lifecycle.py
target group: the agent's readiness every 5 s, out after 2 failures (a dead node leaves in 10 s: the API's
  minimums), round robin (a node failing fast gets no more than its share), deregistration delay = the
  gateway's request timeout (a request the gateway waits for is never cut)
Timings and their sources: timings.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.core.config import PROJECT
from components.core.context import RegionContext, StackContext
from components.core.elasticache import REDIS_PORT
from components.core.iam import instance_role, secret_read_statements
from components.core.load_balancing import http_health_check
from components.core.security import SecurityGroups
from components.gpu_pools.config import GpuPoolConfig
from components.gpu_pools.lifecycle import (
    DRAIN_HOOK_NAME,
    HEALTH_CHECK_GRACE_S,
    HEALTH_CHECK_TYPE,
    LAUNCH_HOOK_NAME,
    METRICS_WARMUP_S,
    declare_lifecycle_hooks,
    instance_refresh,
    launch_hook,
    ready_nodes_alarm,
)
from components.gpu_pools.scaling import PoolScaling, PoolScalingArgs, node_statements, scales
from components.gpu_pools.timings import (
    HEALTH_CHECK_INTERVAL_S,
    HEALTH_CHECK_TIMEOUT_S,
    HEALTHY_THRESHOLD,
    UNHEALTHY_THRESHOLD,
    PoolTimings,
)
from components.gpu_pools.user_data import (
    API_KEY_SECRET_KEY,
    REDIS_PASSWORD_SECRET_KEY,
    NodeSettings,
    user_data,
)
from components.model_store import MountSpec, StoreAccess
from fleet_agent import constants as agent_constants

LB_PORT = 80
AGENT_PORT = agent_constants.DEFAULT_SERVING_PORT
READINESS_PATH = agent_constants.READINESS_PATH
HTTPS_PORT = 443
ROOT_DEVICE = "/dev/sda1"
SSM_MANAGED_INSTANCE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"


@dataclass(frozen=True)
class GpuNodePoolArgs:
    pool: GpuPoolConfig
    stack: StackContext
    region: RegionContext
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    ami_id: pulumi.Input[str]
    # The region's control plane: who may call the pool, and where heartbeats go.
    gateway_security_group_id: pulumi.Input[str]
    redis_security_group_id: pulumi.Input[str]
    redis_host: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    api_key: pulumi.Input[str]
    # The nodes' own Redis user and its password (never the gateway's token).
    redis_user: str
    redis_password: pulumi.Input[str]
    zone_id: pulumi.Input[str]
    hostname: str  # the pool's name for the gateway, `<pool>.pools.<domain>`
    request_timeout_s: int
    deletion_protection: bool
    # The pool's readiness, dead-node and drain budgets (timings.py), and where its alarm tells.
    timings: PoolTimings
    topic_arn: pulumi.Input[str]
    # The model's mount from the region's model store, and what a node needs to reach the store.
    mount: MountSpec | None = None
    store_access: StoreAccess | None = None


@dataclass(frozen=True)
class GpuNodePoolOutputs:
    name: str
    region: str
    model: str
    hostname: str
    group_name: str
    load_balancer_dns_name: pulumi.Output[str]
    target_group_arn: pulumi.Output[str]
    launch_template_id: pulumi.Output[str]
    # Who may reach the agents: the fleet controller opens its own way in.
    node_security_group_id: pulumi.Output[str]
    # How long a node that answers may be on its way to ready (the fleet controller's warm-up limit).
    warm_limit_s: float
    timings: PoolTimings


class GpuNodePool(pulumi.ComponentResource):
    outputs: GpuNodePoolOutputs

    def __init__(self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            "inference-fleet:gpu_pools:GpuNodePool",
            name,
            None,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[args.region.provider])),
        )
        self._name, self._args = name, args
        pool, stack, region = args.pool, args.stack, args.region
        child = pulumi.ResourceOptions(parent=self)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        # Known before anything exists: the node's config and its role name the group.
        group_name = stack.physical_name(f"pool-{pool.name}", region)

        lb_sg, node_sg = self._security_groups()
        secret = self._secret()
        load_balancer, target_group = self._load_balancer(lb_sg)
        store_statements = list(args.store_access.statements) if args.store_access else []
        profile = instance_role(
            f"{name}-node",
            [*self._node_statements(account, group_name, secret, target_group), *store_statements],
            child,
            # Systems Manager's agent on the node: how the fleet controller restarts a silent agent.
            managed_policy_arns=[SSM_MANAGED_INSTANCE_POLICY],
        )
        mount = args.mount
        settings = pulumi.Output.all(
            secret.arn,
            args.redis_host,
            mount.metadata_url if mount else None,
            mount.metadata_password.secret_id if mount and mount.metadata_password else None,
            target_group.arn,
        ).apply(
            lambda values: NodeSettings(
                region=region.region,
                group_name=group_name,
                hook_name=DRAIN_HOOK_NAME,
                secret_arn=values[0],
                redis_host=values[1],
                redis_user=args.redis_user,
                target_group_arn=values[4],
                lifecycle_drain_s=args.timings.drain.lifecycle_drain_s,
                hook_heartbeat_timeout_s=args.timings.drain.hook_heartbeat_s,
                # The agent completes the launch hook once ready; it abandons the node past the same budget.
                launch_hook_name=LAUNCH_HOOK_NAME,
                launch_heartbeat_timeout_s=args.timings.readiness.launch_hook_timeout_s,
                launch_ready_timeout_s=args.timings.readiness.launch_hook_timeout_s,
                model_store=mount.agent_settings(values[2], values[3]) if mount else None,
            )
        )
        template = self._launch_template(node_sg, profile, settings.apply(lambda s: user_data(pool, s)))
        ready_alarm = ready_nodes_alarm(f"{name}-ready-nodes", pool, args.topic_arn, child)
        group = self._group(group_name, template, target_group, ready_alarm)
        if scales(pool):
            PoolScaling(
                f"{name}-scaling",
                PoolScalingArgs(pool, group.name, load_balancer.arn_suffix),
                opts=child,
            )
        declare_lifecycle_hooks(name, group.name, args.timings, child)
        aws.route53.Record(
            f"{name}-dns",
            zone_id=args.zone_id,
            name=args.hostname,
            type="A",
            aliases=[
                aws.route53.RecordAliasArgs(
                    name=load_balancer.dns_name, zone_id=load_balancer.zone_id, evaluate_target_health=False
                )
            ],
            opts=child,
        )
        self.outputs = GpuNodePoolOutputs(
            name=pool.name,
            region=region.region,
            model=pool.model,
            hostname=args.hostname,
            group_name=group_name,
            load_balancer_dns_name=load_balancer.dns_name,
            target_group_arn=target_group.arn,
            launch_template_id=template.id,
            node_security_group_id=node_sg.id,
            warm_limit_s=args.timings.readiness.warm_limit_s,
            timings=args.timings,
        )
        self.register_outputs({"groupName": group_name, "loadBalancer": load_balancer.dns_name})

    # --- who may talk to whom -------------------------------------------------------------------------

    def _security_groups(self) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        name, args = self._name, self._args
        groups = SecurityGroups(name, args.vpc_id, pulumi.ResourceOptions(parent=self))
        group, rule = groups.group, groups.allow
        lb = group("lb-sg", "GPU pool load balancer: from the gateway only")
        node = group("node-sg", "GPU pool nodes: the agent's port from the pool's load balancer only")

        gateway, redis = args.gateway_security_group_id, args.redis_security_group_id
        rule("in", "lb-from-gateway", lb.id, LB_PORT, "from the gateway", peer=gateway)
        rule("out", "lb-to-nodes", lb.id, AGENT_PORT, "to the nodes' agents", peer=node.id)
        rule(
            "in", "node-from-lb", node.id, AGENT_PORT, "agent port from the pool's load balancer", peer=lb.id
        )
        rule("out", "node-to-redis", node.id, REDIS_PORT, "heartbeats to the region's Redis", peer=redis)
        # Auto Scaling (the lifecycle action), Secrets Manager and the model store's bucket.
        rule("out", "node-https", node.id, HTTPS_PORT, "HTTPS to AWS APIs", cidr="0.0.0.0/0")
        # The gateway's and Redis's groups belong to the control plane; the pool opens its own way in.
        rule("out", "gateway-to-lb", gateway, LB_PORT, f"to GPU pool {args.pool.name}", peer=lb.id)
        rule(
            "in",
            "redis-from-nodes",
            redis,
            REDIS_PORT,
            f"heartbeats from GPU pool {args.pool.name}",
            peer=node.id,
        )
        return lb, node

    # --- the node's secrets and permissions --------------------------------------------------------------

    def _secret(self) -> aws.secretsmanager.Secret:
        name, args = self._name, self._args
        child = pulumi.ResourceOptions(parent=self)
        secret = aws.secretsmanager.Secret(
            f"{name}-node-secret",
            description=f"{PROJECT}/{args.stack.stack}: GPU pool {args.pool.name} agent API key, Redis token",
            kms_key_id=args.kms_key_arn,
            recovery_window_in_days=30 if args.deletion_protection else 7,
            # As the gateway's secret: prod keeps it from a stray destroy (prod-stateful-protected).
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-node-secret",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret(
                pulumi.Output.json_dumps(
                    {API_KEY_SECRET_KEY: args.api_key, REDIS_PASSWORD_SECRET_KEY: args.redis_password}
                )
            ),
            opts=child,
        )
        return secret

    def _node_statements(
        self,
        account: pulumi.Output[str],
        group_name: str,
        secret: aws.secretsmanager.Secret,
        target_group: aws.lb.TargetGroup,
    ) -> list[dict[str, object]]:
        region = self._args.region.region
        group_arn = pulumi.Output.concat(
            f"arn:aws:autoscaling:{region}:",
            account,
            f":autoScalingGroup:*:autoScalingGroupName/{group_name}",
        )
        return [
            {
                # Its own group only: a node cannot release another pool's nodes, nor hold them.
                "Sid": "CompleteOwnLifecycleAction",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:CompleteLifecycleAction",
                    "autoscaling:RecordLifecycleActionHeartbeat",
                ],
                "Resource": group_arn,
            },
            {
                # A leaving node takes itself out of its own pool's target group before it refuses work.
                "Sid": "LeaveOwnTargetGroup",
                "Effect": "Allow",
                "Action": "elasticloadbalancing:DeregisterTargets",
                "Resource": target_group.arn,
            },
            # Its metrics and its scale-in protection (components/gpu_pools/scaling.py).
            *node_statements(group_arn),
            *secret_read_statements(
                secret.arn,
                self._args.kms_key_arn,
                region,
                read_sid="ReadNodeSecret",
                decrypt_sid="DecryptNodeSecret",
            ),
        ]

    # --- the load balancer ---------------------------------------------------------------------------------

    def _load_balancer(self, lb_sg: aws.ec2.SecurityGroup) -> tuple[aws.lb.LoadBalancer, aws.lb.TargetGroup]:
        name, args = self._name, self._args
        child = pulumi.ResourceOptions(parent=self)
        load_balancer = aws.lb.LoadBalancer(
            f"{name}-lb",
            load_balancer_type="application",
            internal=True,
            security_groups=[lb_sg.id],
            subnets=args.private_subnet_ids,
            # A completion may stay silent until done: a connection may idle as long as a request runs.
            idle_timeout=args.request_timeout_s,
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection,
            opts=child,
        )
        target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            port=AGENT_PORT,
            protocol="HTTP",
            target_type="instance",
            vpc_id=args.vpc_id,
            # Round robin: each node gets its share whatever its answers. Least outstanding requests sends
            # most to a node that fails fast (it never has requests in flight), so the gateway's retries land
            # on the dead node until its checks fail; weighted random's anomaly mitigation acts only with at
            # least three healthy targets (AWS, "Improving availability with ALB automatic target weights"),
            # and most pools run fewer.
            load_balancing_algorithm_type="round_robin",
            # A leaving node keeps what it serves for as long as the gateway waits for a request.
            deregistration_delay=args.timings.drain.deregistration_delay_s,
            # Readiness, not liveness: the agent answers 200 only with the model loaded, the GPU healthy and
            # the node not draining. The API's fastest: a dead node is out in interval x threshold = 10 s.
            health_check=http_health_check(
                READINESS_PATH,
                interval=HEALTH_CHECK_INTERVAL_S,
                timeout=HEALTH_CHECK_TIMEOUT_S,
                healthy_threshold=HEALTHY_THRESHOLD,
                unhealthy_threshold=UNHEALTHY_THRESHOLD,
            ),
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=load_balancer.arn,
            port=LB_PORT,
            protocol="HTTP",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)
            ],
            opts=child,
        )
        return load_balancer, target_group

    # --- the nodes --------------------------------------------------------------------------------------

    def _launch_template(
        self, node_sg: aws.ec2.SecurityGroup, profile: aws.iam.InstanceProfile, data: pulumi.Output[str]
    ) -> aws.ec2.LaunchTemplate:
        name, args, pool = self._name, self._args, self._args.pool
        tags = {**dict(args.stack.tags), "Name": f"{name}-node", "pool": pool.name}
        return aws.ec2.LaunchTemplate(
            f"{name}-lt",
            description=f"{PROJECT}/{args.stack.stack} GPU pool {pool.name} ({pool.engine}, {pool.model})",
            image_id=args.ami_id,
            # One type: in the template. Several: the group's mixed instances policy lists them.
            instance_type=pool.instance_types[0] if len(pool.instance_types) == 1 else None,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            # The store's client group is the node's way to the model store's metadata Redis.
            vpc_security_group_ids=[
                node_sg.id,
                *([args.store_access.client_security_group_id] if args.store_access else []),
            ],
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                # Containers on the node (one network hop further) still reach IMDS with a token.
                http_put_response_hop_limit=2,
                instance_metadata_tags="disabled",
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=ROOT_DEVICE,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=pool.disk_gib,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            # The instance id as hostname: the agent's node id, heartbeat key and Auto Scaling agree.
            private_dns_name_options=aws.ec2.LaunchTemplatePrivateDnsNameOptionsArgs(
                hostname_type="resource-name"
            ),
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            user_data=data,
            update_default_version=True,
            # Default tags reach the template, not what it launches: its volumes carry them from here.
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="volume", tags=tags)
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _group(
        self,
        group_name: str,
        template: aws.ec2.LaunchTemplate,
        target_group: aws.lb.TargetGroup,
        ready_alarm: aws.cloudwatch.MetricAlarm | None,
    ) -> aws.autoscaling.Group:
        name, args, pool = self._name, self._args, self._args.pool
        # A numbered version, never $Latest: a new version starts the refresh, and rollback needs one.
        spec = {"launch_template_id": template.id, "version": template.latest_version.apply(str)}
        mixed: aws.autoscaling.GroupMixedInstancesPolicyArgs | None = None
        single: aws.autoscaling.GroupLaunchTemplateArgs | None = None
        if pool.warm_pool is None:
            mixed = aws.autoscaling.GroupMixedInstancesPolicyArgs(
                instances_distribution=aws.autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
                    on_demand_base_capacity=pool.on_demand_base,
                    on_demand_percentage_above_base_capacity=100 - pool.spot_percentage,
                    # The listed order is the on-demand preference; spot goes where capacity is deepest at a
                    # low price, so a reclaim wave takes fewer nodes at once.
                    on_demand_allocation_strategy="prioritized",
                    spot_allocation_strategy="price-capacity-optimized",
                ),
                launch_template=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                    launch_template_specification=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                        **spec
                    ),
                    overrides=[
                        aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(instance_type=t)
                        for t in pool.instance_types
                    ],
                ),
            )
        else:
            single = aws.autoscaling.GroupLaunchTemplateArgs(id=template.id, version=spec["version"])
        warm = pool.warm_pool
        tags = {**dict(args.stack.tags), "Name": f"{name}-node", "pool": pool.name}
        return aws.autoscaling.Group(
            f"{name}-asg",
            name=group_name,
            min_size=pool.min_size,
            max_size=pool.max_size,
            vpc_zone_identifiers=args.private_subnet_ids,
            mixed_instances_policy=mixed,
            launch_template=single,
            # A rebalance recommendation starts a replacement before the interruption notice.
            capacity_rebalance=pool.uses_spot,
            target_group_arns=[target_group.arn],
            # Replacement on readiness is the fleet controller's (lifecycle.py says why); the group replaces
            # what EC2 reports impaired.
            health_check_type=HEALTH_CHECK_TYPE,
            health_check_grace_period=HEALTH_CHECK_GRACE_S,
            default_instance_warmup=METRICS_WARMUP_S,
            # Its first nodes too are held until ready (a hook added after them would not hold them).
            initial_lifecycle_hooks=[launch_hook(args.timings)],
            # A new launch template version (new AMI, new agent config) rolls every node, new ones first.
            instance_refresh=instance_refresh(ready_alarm),
            instance_maintenance_policy=aws.autoscaling.GroupInstanceMaintenancePolicyArgs(
                min_healthy_percentage=100, max_healthy_percentage=200
            ),
            warm_pool=None
            if warm is None
            else aws.autoscaling.GroupWarmPoolArgs(
                pool_state=warm.state,
                min_size=warm.min_size,
                instance_reuse_policy=aws.autoscaling.GroupWarmPoolInstanceReusePolicyArgs(
                    reuse_on_scale_in=True
                ),
            ),
            # Provider default tags do not reach a group or what it launches.
            tags=[
                aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=True)
                for k, v in tags.items()
            ],
            # GPU nodes take minutes to become ready (and spot may be short): `pulumi up` does not wait.
            wait_for_capacity_timeout="0",
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCapacity"]),
        )
