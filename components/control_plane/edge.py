"""One region's edge: the bucket for the ALB's access logs and the gateway's config, the certificate for the
API name and the region's own name, and the public ALB with its target groups and listeners.

    internet -> ALB (HTTPS 443; 80 redirects) -> gateway target group (port 4000, liveness)
                                              -> region-health target group (port 4001, the sidecar)

Only the inference API and the region-health path are forwarded; every other path gets a 404 from the ALB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.control_plane import region_health
from components.control_plane.gateway_config import GATEWAY_PORT, LIVENESS_PATH
from components.control_plane.public_api import NOT_FOUND, declare_public_rules
from components.control_plane.region import ControlPlaneRegion
from components.core.catalog.aws import ALB_CLIENT_KEEP_ALIVE_RANGE_SECONDS, LOAD_BALANCER_NAME_MAX
from components.core.context import RegionContext, StackContext
from components.core.iam import Statement
from components.core.load_balancing import http_health_check
from components.core.storage import PrivateBucket, private_bucket

HTTPS_PORT = 443
HTTP_PORT = 80
# TLS 1.3 with 1.2 for older clients, forward secrecy only.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
ACCESS_LOG_PREFIX = "alb-logs"
# The ALB closes a client's connection after this, gracefully (the request in flight completes): the
# shortest the API takes (60-604800 s, 3600 s by default). A client pooling connections to a region that
# cannot serve comes back through DNS, to the standby, within it (the failover budget's keepAliveHeld).
CLIENT_KEEP_ALIVE_SECONDS = ALB_CLIENT_KEEP_ALIVE_RANGE_SECONDS[0]


@dataclass(frozen=True)
class EdgeArgs:
    name: str
    plane: ControlPlaneRegion
    stack: StackContext
    region: RegionContext
    account: pulumi.Input[str]
    zone_id: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    public_subnet_ids: pulumi.Input[Sequence[str]]
    alb_security_group: aws.ec2.SecurityGroup
    # The API name's validation record, written by the primary (None: this region writes it).
    shared_validation_fqdns: pulumi.Input[Sequence[str]] | None


@dataclass(frozen=True)
class Edge:
    bucket: aws.s3.Bucket
    certificate: aws.acm.CertificateValidation
    # The FQDNs of the API name's validation record this region wrote (empty where it reused another's).
    shared_validation_fqdns: pulumi.Output[list[str]]
    alb: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    health_group: aws.lb.TargetGroup
    https: aws.lb.Listener


def declare_edge(args: EdgeArgs, parent: pulumi.Resource) -> Edge:
    """The bucket, the certificate and the load balancer, each a child of `parent`."""
    bucket = _bucket(args, parent)
    certificate, shared_fqdns = _certificate(args, parent)
    alb, target_group, health_group, https = _load_balancer(args, bucket, certificate, parent)
    return Edge(
        bucket=bucket.bucket,
        certificate=certificate,
        shared_validation_fqdns=shared_fqdns,
        alb=alb,
        target_group=target_group,
        health_group=health_group,
        https=https,
    )


# --- storage for access logs and the gateway's config ---------------------------------------------------


def _bucket(args: EdgeArgs, parent: pulumi.Resource) -> PrivateBucket:
    name, plane = args.name, args.plane
    elb_account = aws.elb.get_service_account_output(opts=pulumi.InvokeOutputOptions(parent=parent)).arn

    def access_logs(bucket: aws.s3.Bucket) -> list[Statement]:
        log_objects = pulumi.Output.concat(bucket.arn, f"/{ACCESS_LOG_PREFIX}/AWSLogs/", args.account, "/*")
        # Regions older than August 2022 deliver as their ELB account, newer ones as a service
        # principal: allow both, for this account's logs under the prefix only.
        return [
            {
                "Sid": "AlbAccessLogs",
                "Effect": "Allow",
                "Principal": {
                    "AWS": elb_account,
                    "Service": "logdelivery.elasticloadbalancing.amazonaws.com",
                },
                "Action": "s3:PutObject",
                "Resource": log_objects,
            }
        ]

    private = private_bucket(
        f"{name}-bucket",
        pulumi.ResourceOptions(parent=parent),
        force_destroy=not plane.deletion_protection,
        statements=access_logs,
    )
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-bucket",
        bucket=private.bucket.id,
        rules=[
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-access-logs",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=f"{ACCESS_LOG_PREFIX}/"),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                    days=plane.log_retention_days
                ),
            )
        ],
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return private


# --- TLS for the API name and this region's own name ------------------------------------------------------


def _certificate(
    args: EdgeArgs, parent: pulumi.Resource
) -> tuple[aws.acm.CertificateValidation, pulumi.Output[list[str]]]:
    """The validated certificate, and the FQDNs of the API name's record if this region wrote it."""
    name, plane = args.name, args.plane
    child = pulumi.ResourceOptions(parent=parent)
    certificate = aws.acm.Certificate(
        f"{name}-cert",
        domain_name=plane.api_name,
        subject_alternative_names=[plane.regional_name],
        validation_method="DNS",
        opts=child,
    )
    own_names = [plane.regional_name] + ([plane.api_name] if args.shared_validation_fqdns is None else [])
    records: dict[str, aws.route53.Record] = {}
    for domain in own_names:
        option = certificate.domain_validation_options.apply(
            lambda options, domain=domain: next(o for o in options if o.domain_name == domain)
        )
        records[domain] = aws.route53.Record(
            f"{name}-cert-{'api' if domain == plane.api_name else 'regional'}",
            zone_id=args.zone_id,
            name=option.apply(lambda o: o.resource_record_name or ""),
            type=option.apply(lambda o: o.resource_record_type or "CNAME"),
            records=[option.apply(lambda o: o.resource_record_value or "")],
            ttl=300,
            opts=child,
        )
    shared = [records[plane.api_name].fqdn] if plane.api_name in records else []
    shared_fqdns = pulumi.Output.all(*shared) if shared else pulumi.Output.from_input([])
    fqdns: pulumi.Input[Sequence[str]] = pulumi.Output.all(
        records[plane.regional_name].fqdn,
        *shared,
    )
    if args.shared_validation_fqdns is not None:
        fqdns = pulumi.Output.all(fqdns, args.shared_validation_fqdns).apply(lambda p: [*p[0], *p[1]])
    validation = aws.acm.CertificateValidation(
        f"{name}-cert",
        certificate_arn=certificate.arn,
        validation_record_fqdns=fqdns,
        opts=child,
    )
    return validation, shared_fqdns


# --- the load balancer ------------------------------------------------------------------------------------


def _load_balancer(
    args: EdgeArgs,
    bucket: PrivateBucket,
    certificate: aws.acm.CertificateValidation,
    parent: pulumi.Resource,
) -> tuple[aws.lb.LoadBalancer, aws.lb.TargetGroup, aws.lb.TargetGroup, aws.lb.Listener]:
    name, plane = args.name, args.plane
    child = pulumi.ResourceOptions(parent=parent)
    timeout = plane.gateway.request_timeout_seconds
    alb = aws.lb.LoadBalancer(
        f"{name}-alb",
        # Auto-names would not fit the API's 32 characters: the stack and region say whose it is.
        name=args.stack.physical_name("gateway", args.region, max_length=LOAD_BALANCER_NAME_MAX),
        load_balancer_type="application",
        internal=False,
        security_groups=[args.alb_security_group.id],
        subnets=args.public_subnet_ids,
        # A completion may stay silent until done: let a connection idle as long as a request may run.
        idle_timeout=timeout,
        client_keep_alive=CLIENT_KEEP_ALIVE_SECONDS,
        drop_invalid_header_fields=True,
        enable_deletion_protection=plane.deletion_protection,
        access_logs=aws.lb.LoadBalancerAccessLogsArgs(
            bucket=bucket.bucket.id, prefix=ACCESS_LOG_PREFIX, enabled=True
        ),
        # The ALB checks at creation that it may write its logs: the bucket's policy must exist first.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[bucket.policy]),
    )
    target_group = aws.lb.TargetGroup(
        f"{name}-tg",
        name=args.stack.physical_name(
            "gateway",
            args.region,
            replaced_on=(GATEWAY_PORT, "HTTP", "ip"),
            max_length=LOAD_BALANCER_NAME_MAX,
        ),
        port=GATEWAY_PORT,
        protocol="HTTP",
        target_type="ip",
        vpc_id=args.vpc_id,
        # Requests last seconds to minutes: send each to the task with the fewest in flight.
        load_balancing_algorithm_type="least_outstanding_requests",
        # A task leaving (scale-in, deployment) finishes what it holds before it is stopped.
        deregistration_delay=timeout,
        # Liveness only: a task whose database is unreachable still serves (and is not replaced).
        health_check=http_health_check(LIVENESS_PATH, unhealthy_threshold=3),
        opts=child,
    )
    health_port = region_health.REGION_HEALTH_PORT
    health_group = aws.lb.TargetGroup(
        f"{name}-health-tg",
        name=args.stack.physical_name(
            "health",
            args.region,
            replaced_on=(health_port, "HTTP", "ip"),
            max_length=LOAD_BALANCER_NAME_MAX,
        ),
        port=health_port,
        protocol="HTTP",
        target_type="ip",
        vpc_id=args.vpc_id,
        deregistration_delay=5,
        # The sidecar's own liveness: its answer on the region-health path is Route53's to judge.
        health_check=http_health_check(region_health.REGION_HEALTH_LIVE_PATH, unhealthy_threshold=3),
        opts=child,
    )
    https = aws.lb.Listener(
        f"{name}-https",
        load_balancer_arn=alb.arn,
        port=HTTPS_PORT,
        protocol="HTTPS",
        ssl_policy=TLS_POLICY,
        certificate_arn=certificate.certificate_arn,
        # Nothing but the listed paths: the admin UI and management API are not public.
        default_actions=[aws.lb.ListenerDefaultActionArgs(type="fixed-response", fixed_response=NOT_FOUND)],
        opts=child,
    )
    declare_public_rules(
        f"{name}-https",
        https,
        target_group,
        health_group,
        region_health.REGION_HEALTH_PATH,
        child,
    )
    aws.lb.Listener(
        f"{name}-http",
        load_balancer_arn=alb.arn,
        port=HTTP_PORT,
        protocol="HTTP",
        default_actions=[
            aws.lb.ListenerDefaultActionArgs(
                type="redirect",
                redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                    protocol="HTTPS", port=str(HTTPS_PORT), status_code="HTTP_301"
                ),
            )
        ],
        opts=child,
    )
    return alb, target_group, health_group, https
