"""What the stack costs a month, per region and per part, from what the config declares and the dated price
catalogs (components/core/catalog/aws_prices.py for GPU nodes, service_prices.py for the rest).

Every line is at the stack's min (pools and gateways at their floors) and at its max (at full scale), in
USD a month of HOURS_PER_MONTH. A part whose price the catalogs lack is named in `notPriced` instead of
counted, and so are the usage-priced terms (service_prices.py lists them): the totals are what the
declared capacity costs by the hour, not a bill. The AWS Budgets budget of the stack defaults to the total
at max (budget.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from components.batch import BatchJobConfig
from components.control_plane import GatewayConfig, RedisConfig
from components.core.catalog import service_prices as prices
from components.core.catalog.service_prices import HOURS_PER_MONTH, SERVICE_PRICES_CHECKED
from components.data_tier import DatabaseConfig
from components.gpu_pools import GpuPoolConfig, pool_budget
from components.kubernetes import KubernetesConfig
from components.model_store import ModelStoreConfig
from components.network import NetworkConfig
from functions.failover_prober.settings import RUN_SECONDS as PROBER_RUN_SECONDS
from functions.fleet_controller.settings import RUN_SECONDS as CONTROLLER_RUN_SECONDS

# The fleet controller (each GPU region) and the failover prober (the standby) run every minute
# (rate(1 minute)) for at most their RUN_SECONDS, with 128 MB each (components/controller, failover).
SCHEDULED_FUNCTION_MEMORY_GB = 128 / 1024
RUNS_PER_MONTH = 60 * HOURS_PER_MONTH
USAGE_PRICED = (
    "data processed by NAT gateways and load balancers (per GB, LCU)",
    "Aurora storage and I/O",
    "S3 storage and requests (model store, logs, results)",
    "CloudWatch metrics, logs, alarms and dashboards",
    "Route53 queries and health checks",
    "data transfer between regions and to the internet",
    "KMS keys and requests, Secrets Manager secrets",
    "Cloud Tasks, Firestore and Cloud Storage (batch)",
    "serverless fallback providers (billed by them; LiteLLM's spend tracks them)",
)


@dataclass
class Line:
    """One priced part: how many, and USD a month at the stack's min and max."""

    count_at_min: float
    count_at_max: float
    usd_at_min: float
    usd_at_max: float
    unit: str

    def figures(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "countAtMin": _number(self.count_at_min),
            "countAtMax": _number(self.count_at_max),
            "usdPerMonthAtMin": round(self.usd_at_min, 2),
            "usdPerMonthAtMax": round(self.usd_at_max, 2),
        }


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 3)


@dataclass
class StackCost:
    regions: dict[str, dict[str, Line]] = field(default_factory=dict)
    gcp: dict[str, Line] = field(default_factory=dict)
    not_priced: list[str] = field(default_factory=list)

    def add(self, region: str, part: str, line: Line | None, what: str) -> None:
        if line is None:
            self.not_priced.append(f"{what} in {region} (no price in the catalog)")
            return
        self.regions.setdefault(region, {})[part] = line

    def total(self, at: str, *, aws_only: bool = False) -> float:
        lines = [*(x for parts in self.regions.values() for x in parts.values())]
        if not aws_only:
            lines += self.gcp.values()
        return round(sum(x.usd_at_min if at == "min" else x.usd_at_max for x in lines), 2)

    def figures(self) -> dict[str, Any]:
        return {
            "regions": {r: {p: x.figures() for p, x in parts.items()} for r, parts in self.regions.items()},
            **({"gcp": {p: x.figures() for p, x in self.gcp.items()}} if self.gcp else {}),
            "usdPerMonthAtMin": self.total("min"),
            "usdPerMonthAtMax": self.total("max"),
            "awsUsdPerMonthAtMax": self.total("max", aws_only=True),
            "notPriced": [*self.not_priced, *USAGE_PRICED],
            "prices": (
                f"catalogs {SERVICE_PRICES_CHECKED}: components/core/catalog/service_prices.py and "
                "aws_prices.py; figures marked UNCONFIRMED there are estimates"
            ),
        }


def _hourly_line(unit_price: float | None, at_min: float, at_max: float, unit: str) -> Line | None:
    if unit_price is None:
        return None
    return Line(
        at_min, at_max, unit_price * at_min * HOURS_PER_MONTH, unit_price * at_max * HOURS_PER_MONTH, unit
    )


def _price(kind: str, base: prices.Price, region: str) -> float | None:
    found = prices.regional(kind, base, region)
    return None if found is None else found.usd


def stack_cost(
    *,
    tier: str,
    regions: Sequence[str],
    network: NetworkConfig,
    gateway: GatewayConfig,
    redis: RedisConfig,
    database: DatabaseConfig,
    pools: Sequence[GpuPoolConfig],
    model_store: ModelStoreConfig,
    store_regions: Sequence[str],
    kubernetes: KubernetesConfig,
    batch_jobs: Sequence[BatchJobConfig],
    gcp_region: str,
) -> StackCost:
    """The stack's cost lines from its config (`regions`: the control-plane regions, primary first)."""
    cost = StackCost()
    for index, region in enumerate(regions):
        primary = index == 0
        nats = network.availability_zones if network.nat_per_az(tier) else 1
        cost.add(
            region,
            "natGateways",
            _hourly_line(_price("nat", prices.NAT_GATEWAY_HOUR, region), nats, nats, "NAT gateway-hours"),
            "NAT gateways",
        )
        albs = 1 + sum(1 for p in pools if p.region == region)
        cost.add(
            region,
            "loadBalancers",
            _hourly_line(
                _price("alb", prices.ALB_HOUR, region),
                albs,
                albs,
                "ALB-hours (the public one, one per GPU pool)",
            ),
            "load balancers",
        )
        tasks = (
            (gateway.min_tasks, gateway.max_tasks)
            if primary
            else (gateway.standby_min_tasks, gateway.standby_max_tasks)
        )
        vcpu = _price("fargate", prices.FARGATE_VCPU_HOUR, region)
        gb = _price("fargate", prices.FARGATE_GB_HOUR, region)
        task_hour = (
            None if vcpu is None or gb is None else vcpu * gateway.cpu / 1024 + gb * gateway.memory_mib / 1024
        )
        cost.add(
            region,
            "gatewayTasks",
            _hourly_line(
                task_hour, *tasks, f"Fargate tasks ({gateway.cpu} CPU units, {gateway.memory_mib} MiB)"
            ),
            "gateway tasks (Fargate)",
        )
        instances = database.instances if primary else database.standby_instances
        cost.add(
            region,
            "aurora",
            _hourly_line(
                prices.hourly(prices.AURORA_INSTANCE_HOUR, database.instance_class, region),
                instances,
                instances,
                f"{database.instance_class} instance-hours",
            ),
            f"Aurora {database.instance_class}",
        )
        redis_nodes = 1 + redis.replicas
        cost.add(
            region,
            "gatewayRedis",
            _hourly_line(
                prices.hourly(prices.ELASTICACHE_NODE_HOUR, redis.node_type, region),
                redis_nodes,
                redis_nodes,
                f"{redis.node_type} node-hours",
            ),
            f"ElastiCache {redis.node_type}",
        )
        if region in store_regions:
            meta = model_store.metadata
            nodes = 1 + meta.replicas
            cost.add(
                region,
                "modelStoreRedis",
                _hourly_line(
                    prices.hourly(prices.ELASTICACHE_NODE_HOUR, meta.node_type, region),
                    nodes,
                    nodes,
                    f"{meta.node_type} node-hours",
                ),
                f"ElastiCache {meta.node_type} (model store)",
            )
        functions = _functions(region, controller=any(p.region == region for p in pools), prober=not primary)
        if functions is not None:
            cost.add(region, "functions", functions, "scheduled functions (Lambda)")
        served = sum(1 for c, _ in kubernetes.models if c.region == region)
        if served:
            cost.not_priced.append(
                f"{served} Kubernetes-served model(s) in {region}: the cluster's nodes and load balancers"
            )
    for pool in pools:
        figures = pool_budget(pool)
        if "usdPerHourAtMax" not in figures:
            cost.not_priced.append(
                f"GPU pool {pool.name} in {pool.region}: {', '.join(figures['unpricedTypes'])}"
            )
            continue
        cost.regions.setdefault(pool.region, {})[f"gpuPool:{pool.name}"] = Line(
            pool.min_size,
            pool.max_size,
            figures["usdPerHourAtMin"] * HOURS_PER_MONTH,
            figures["usdPerHourAtMax"] * HOURS_PER_MONTH,
            "GPU nodes (on-demand floor, spot above)",
        )
    for job in batch_jobs:
        line = _cloud_run_job(job, gcp_region)
        if line is None:
            cost.not_priced.append(f"Cloud Run job {job.name} in {gcp_region} ({job.gpu})")
        else:
            cost.gcp[f"cloudRunJob:{job.name}"] = line
    return cost


def _functions(region: str, *, controller: bool, prober: bool) -> Line | None:
    seconds = (CONTROLLER_RUN_SECONDS if controller else 0) + (PROBER_RUN_SECONDS if prober else 0)
    if not seconds:
        return None
    gb_second = _price("lambda", prices.LAMBDA_GB_SECOND, region)
    request = _price("lambda", prices.LAMBDA_REQUEST, region)
    if gb_second is None or request is None:
        return None
    runs = RUNS_PER_MONTH * (int(controller) + int(prober))
    usd = seconds * RUNS_PER_MONTH * SCHEDULED_FUNCTION_MEMORY_GB * gb_second + runs * request
    names = [n for n, on in (("fleet controller", controller), ("failover prober", prober)) if on]
    return Line(len(names), len(names), usd, usd, f"functions run every minute: {', '.join(names)}")


def _cloud_run_job(job: BatchJobConfig, region: str) -> Line | None:
    """A batch job's GPU tasks at full concurrency for the whole month (at min: none run; jobs are paid per
    second of work, so the max is the ceiling, not a forecast)."""
    gpu = prices.CLOUD_RUN_GPU_SECOND.get(job.gpu)
    if gpu is None or region not in prices.CLOUD_RUN_PRICED_REGIONS:
        return None
    per_task_second = (
        gpu.usd
        + job.cpu * prices.CLOUD_RUN_VCPU_SECOND.usd
        + job.memory_gib * prices.CLOUD_RUN_GIB_SECOND.usd
    )
    tasks = job.max_concurrent_executions * job.parallel
    usd = per_task_second * tasks * 3600 * HOURS_PER_MONTH
    return Line(
        0, tasks, 0.0, usd, f"Cloud Run GPU tasks at once ({job.gpu}, {job.cpu} vCPU, {job.memory_gib} GiB)"
    )


def monthly_limit(cost: StackCost) -> int:
    """The budget's default limit: the AWS part of the estimate at full scale (AWS Budgets sees AWS costs
    only), rounded up to the next 10 USD."""
    return int(math.ceil(cost.total("max", aws_only=True) / 10) * 10)
