"""AWS: what it offers where, and the limits its APIs hold a stack to.

A curated snapshot (checked 2026-11), kept as data so that a new region or instance type is a one-line
change. Only regions this platform supports are listed: a region missing here is refused at config time
with the list of the ones that are.
"""

from __future__ import annotations

from dataclasses import dataclass

CATALOG_CHECKED = "2026-11"


@dataclass(frozen=True)
class GpuInstanceType:
    """An EC2 GPU instance type: how many GPUs it carries and which."""

    name: str
    gpus: int
    gpu_model: str
    gpu_memory_gib: int


def _family(
    prefix: str, gpu_model: str, gpu_memory_gib: int, sizes: dict[str, int]
) -> dict[str, GpuInstanceType]:
    return {
        f"{prefix}.{size}": GpuInstanceType(f"{prefix}.{size}", gpus, gpu_model, gpu_memory_gib)
        for size, gpus in sizes.items()
    }


_SINGLE_TO_EIGHT = {
    "xlarge": 1,
    "2xlarge": 1,
    "4xlarge": 1,
    "8xlarge": 1,
    "16xlarge": 1,
    "12xlarge": 4,
    "24xlarge": 4,
    "48xlarge": 8,
}

GPU_INSTANCE_TYPES: dict[str, GpuInstanceType] = {
    **_family("g5", "A10G", 24, _SINGLE_TO_EIGHT),
    **_family("g6", "L4", 24, _SINGLE_TO_EIGHT),
    **_family("g6e", "L40S", 48, _SINGLE_TO_EIGHT),
    **_family("p4d", "A100", 40, {"24xlarge": 8}),
    **_family("p4de", "A100", 80, {"24xlarge": 8}),
    **_family("p5", "H100", 80, {"4xlarge": 1, "48xlarge": 8}),
    **_family("p5e", "H200", 141, {"48xlarge": 8}),
}

# Baseline network bandwidth of each GPU type's primary network card, Gbps: what the instance sustains
# (an "up to" type bursts above it only for a while). DescribeInstanceTypes NetworkInfo.NetworkCards[0].
# BaselineBandwidthInGbps, as botocore's EC2 model names it (values read from moto 5.2.5's copy of the
# API's answer, resources/instance_types.json). It bounds how fast a node reads its model from the store.
_SIZES = ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge", "12xlarge", "24xlarge", "48xlarge")
GPU_BASELINE_GBPS: dict[str, float] = {
    **dict(zip((f"g5.{s}" for s in _SIZES), (2.5, 5.0, 10.0, 25.0, 25.0, 40.0, 50.0, 100.0), strict=True)),
    **dict(zip((f"g6.{s}" for s in _SIZES), (2.5, 5.0, 10.0, 25.0, 25.0, 40.0, 50.0, 100.0), strict=True)),
    **dict(zip((f"g6e.{s}" for s in _SIZES), (2.5, 5.0, 20.0, 25.0, 35.0, 100.0, 200.0, 400.0), strict=True)),
    "p4d.24xlarge": 100.0,
    "p4de.24xlarge": 100.0,
    "p5.4xlarge": 100.0,
    "p5.48xlarge": 100.0,
    "p5e.48xlarge": 100.0,
}


@dataclass(frozen=True)
class AwsRegion:
    """An AWS region: how many availability zones a new account can use, and its GPU families."""

    name: str
    availability_zones: int
    gpu_families: frozenset[str]

    def offers(self, instance_type: str) -> bool:
        return instance_type.split(".", 1)[0] in self.gpu_families


def _aws(name: str, azs: int, families: str) -> AwsRegion:
    return AwsRegion(name, azs, frozenset(families.split()))


AWS_REGIONS: dict[str, AwsRegion] = {
    r.name: r
    for r in (
        _aws("us-east-1", 6, "g5 g6 g6e p4d p4de p5 p5e"),
        _aws("us-east-2", 3, "g5 g6 g6e p4d p5"),
        _aws("us-west-2", 4, "g5 g6 g6e p4d p4de p5 p5e"),
        # us-west-1 gives new accounts two zones: too few for a three-zone network.
        _aws("us-west-1", 2, "g5"),
        _aws("ca-central-1", 3, "g5 g6"),
        _aws("eu-west-1", 3, "g5 g6 p4d"),
        _aws("eu-west-2", 3, "g5 g6 p5"),
        _aws("eu-central-1", 3, "g5 g6 g6e p4d p5"),
        _aws("eu-north-1", 3, "g5 g6e p5"),
        _aws("ap-northeast-1", 3, "g5 g6 g6e p4d p5"),
        _aws("ap-southeast-1", 3, "g5 g6"),
        _aws("ap-south-1", 3, "g5 g6 p5"),
    )
}

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip


# --- control plane ------------------------------------------------------------------------------------

# Fargate task sizes: CPU units -> the memory values (MiB) a task with that CPU may take.
FARGATE_CPU_MEMORY: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}

# Where Route53 health checkers run, and how many of them a health check names at the least: the Route53
# API's HealthCheckRegion enum and HealthCheckRegionList's minimum (botocore route53 service model;
# Route53 Developer Guide, "Values that you specify when you create or update health checks": "You must
# specify at least three regions").
ROUTE53_CHECKER_REGIONS: tuple[str, ...] = (
    "us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-southeast-1", "ap-southeast-2",
    "ap-northeast-1", "sa-east-1",
)  # fmt: skip
ROUTE53_MIN_CHECKER_REGIONS = 3
# Route53 considers an endpoint healthy while more than this share of its checkers report it healthy
# (Route53 Developer Guide, "How Amazon Route 53 determines whether a health check is healthy").
ROUTE53_HEALTHY_CHECKER_SHARE = 0.18
# Route53 health checks probe every 10 s (fast) or 30 s (standard); nothing else.
ROUTE53_HEALTH_CHECK_INTERVALS: tuple[int, ...] = (10, 30)
# A Route53 HTTP(S) health checker must connect within 4 s and get a status within 2 s of connecting
# (Route53 Developer Guide, "How Amazon Route 53 determines whether a health check is healthy").
ROUTE53_PROBE_TIMEOUT_SECONDS = 4 + 2
# An alias record to a load balancer answers with the load balancer's own TTL, which is 60 s.
ALIAS_TO_ALB_TTL_SECONDS = 60
# A client whose resolver ignores a record's TTL: the JVM. AWS: "On some Java configurations, the JVM
# default TTL is set so that it will never refresh DNS entries until the JVM is restarted" (AWS SDK for
# Java Developer Guide, "Set the JVM TTL for DNS name lookups"); without a security manager OpenJDK caches
# an answer for 30 s (networkaddress.cache.ttl, sun.net.InetAddressCachePolicy). A JVM that caches for
# ever never follows a failover until it restarts: no budget can hold it (the README says to set 5 s).
JVM_DNS_CACHE_SECONDS = 30
# An ALB closes a client's connection after its client keep-alive: 60-604800 s, 3600 s by default
# (ELBv2 API, LoadBalancerAttribute client_keep_alive.seconds). Until then a client reuses it, whatever
# DNS now answers.
ALB_CLIENT_KEEP_ALIVE_RANGE_SECONDS = (60, 604800)
# EventBridge: "minimum precision for a schedule is one minute. Your scheduled rule runs within that
# minute, but not on the precise 0th second" (EventBridge User Guide, "Creating a rule that runs on a
# schedule").
EVENTBRIDGE_SCHEDULE_PRECISION_SECONDS = 60
# Lambda cold starts: "under 100 ms to over 1 second" (typical), and the INIT phase is capped at 10 s
# (Lambda Developer Guide, "Understanding the Lambda execution environment lifecycle").
LAMBDA_COLD_START_TYPICAL_SECONDS = 1
LAMBDA_INIT_MAX_SECONDS = 10

# ElastiCache node types offered for the gateway's Redis (Graviton; TLS and auth supported on all).
ELASTICACHE_NODE_TYPES: tuple[str, ...] = (
    "cache.t4g.micro", "cache.t4g.small", "cache.t4g.medium",
    "cache.m7g.large", "cache.m7g.xlarge", "cache.m7g.2xlarge",
    "cache.r7g.large", "cache.r7g.xlarge", "cache.r7g.2xlarge",
)  # fmt: skip

# Aurora PostgreSQL instance classes. A global database (two regions) takes memory-optimized classes only.
AURORA_INSTANCE_CLASSES: tuple[str, ...] = (
    "db.t4g.medium", "db.t4g.large",
    "db.r6g.large", "db.r6g.xlarge", "db.r6g.2xlarge", "db.r6g.4xlarge",
    "db.r7g.large", "db.r7g.xlarge", "db.r7g.2xlarge", "db.r7g.4xlarge",
    "db.r8g.large", "db.r8g.xlarge", "db.r8g.2xlarge", "db.r8g.4xlarge",
)  # fmt: skip
AURORA_GLOBAL_INSTANCE_FAMILIES: frozenset[str] = frozenset({"db.r6g", "db.r7g", "db.r8g"})
AURORA_POSTGRES_MAJOR_VERSIONS: tuple[int, ...] = (15, 16, 17)
# How long promoting a global database's secondary takes. AWS's disaster-recovery workshop (AWS
# Well-Architected Labs, "Failover: Aurora") says a secondary region is promoted "in under a minute": the
# typical figure. For the worst case AWS gives no bound: the Aurora User Guide ("Recovering an Amazon Aurora
# global database from an unplanned outage") says only that RTO "can be in the order of minutes". The
# worst case is therefore our allowance, three minutes, not an AWS figure: measure it in a drill.
AURORA_GLOBAL_FAILOVER_TYPICAL_SECONDS = 60
AURORA_GLOBAL_FAILOVER_ALLOWANCE_SECONDS = 180
# rds.global_db_rpo (Aurora PostgreSQL): the bound on a global database's RPO, in seconds, at least 20.
# With it set, the writer holds commits while no secondary is within it (Aurora User Guide, "Managing
# RPOs for Aurora PostgreSQL-based global databases").
AURORA_GLOBAL_DB_RPO_MIN_SECONDS = 20


# --- limits the APIs hold every stack to --------------------------------------------------------------

# Tags (Tagging Best Practices and every service's TagResource): at most 50 per resource, counting the
# provider's default tags; keys 1-128 and values 0-256 characters of letters, digits, spaces and
# `_ . : / = + - @`; the `aws:` prefix is AWS's own.
MAX_TAGS_PER_RESOURCE = 50
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
TAG_SPECIAL_CHARACTERS = "_.:/=+-@"
RESERVED_TAG_PREFIX = "aws:"

# Name limits explicit names must meet (the offline render checks every name against its API's rule, in
# fleet/mocks/aws.py): load balancers and target groups (elbv2) 32; ElastiCache replication groups, users
# and user groups 40.
LOAD_BALANCER_NAME_MAX = 32
ELASTICACHE_ID_MAX = 40

# DNS (RFC 1035, Route53): a name is at most 253 characters, a label at most 63.
MAX_DNS_NAME_LENGTH = 253
# ACM puts a certificate's first name in its subject's Common Name, which RFC 5280 caps at 64 characters
# (RequestCertificate's DomainName; the other names go in the SAN extension, up to 253).
MAX_CERTIFICATE_COMMON_NAME_LENGTH = 64

# Aurora's master password (CreateDBCluster MasterUserPassword): 8-41 printable ASCII characters, none of
# `/ " @`.
AURORA_PASSWORD_LENGTH = (8, 41)
AURORA_PASSWORD_FORBIDDEN = '/"@'
# ElastiCache's AUTH token (CreateReplicationGroup AuthToken): 16-128 printable ASCII characters, whose only
# specials are `! & # $ ^ < > -`.
ELASTICACHE_AUTH_TOKEN_LENGTH = (16, 128)
ELASTICACHE_AUTH_TOKEN_SPECIALS = "!&#$^<>-"

# What a tier may run at full scale: the config refuses more, and the policy pack's gpu-count-cap takes
# these as its defaults (config maxGpus raises them deliberately).
TIER_MAX_GPUS: dict[str, int] = {"dev": 8, "prod": 64}
TIER_MAX_POOL_NODES: dict[str, int] = {"dev": 4, "prod": 64}
# The largest share of a pool's nodes at full scale that may run on spot: the config refuses more, and
# the policy pack's gpu-pool-spot-share takes these as its defaults. Prod keeps a tenth on-demand so one
# spot reclaim wave cannot take a whole model offline; dev may run all spot.
TIER_MAX_SPOT_SHARE: dict[str, float] = {"dev": 1.0, "prod": 0.9}


def region_code(region: str) -> str:
    """us-east-1 -> use1: how AWS itself abbreviates a region (ElastiCache endpoints, zone ids).

    Physical names carry it where the API's length limit leaves no room for the full region.
    """
    area, direction, number = region.split("-")
    return f"{area[:2]}{direction[0]}{number}"
