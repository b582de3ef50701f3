"""The `controller` section: the fleet controller's periods, graces, disruption limit and dry-run, the
fewest ready replicas per model, and the password of its Redis user."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from components.core.config import Problem, SecretSpec, Section, StackView, TopKey, rule, stack_rule
from components.core.fields import elasticache_password
from components.gpu_pools import GpuPoolConfig

# A tick must finish (every poll, the cloud reads, the calls) well before the next one starts.
TICK_WORK_SHARE = 0.5


class ControllerConfig(Section):
    """`controller`: the fleet controller that runs in every region with GPU pools."""

    tick_seconds: int = Field(default=10, ge=2, le=30, description="one look at every node this often")
    confirmations: int = Field(
        default=2, ge=1, le=6, description="ticks in a row a node must look dead before it is repaired"
    )
    poll_timeout_seconds: float = Field(default=3.0, gt=0, le=10, description="the agent poll's timeout")
    restart_grace_seconds: int = Field(
        default=60, ge=20, le=900, description="how long a restarted agent has to beat again"
    )
    boot_grace_seconds: int = Field(
        default=600, ge=60, le=3600, description="a new instance is left alone this long"
    )
    leave_alone_seconds: int = Field(
        default=300, ge=60, le=3600, description="a node seen draining is left alone this long"
    )
    not_ready_grace_seconds: int = Field(
        default=180,
        ge=30,
        le=3600,
        description="a node that has served and answers not ready (degraded) this long is replaced",
    )
    orphan_grace_seconds: int = Field(
        default=600, ge=60, le=86400, description="an orphan is reported this long before it is terminated"
    )
    reconcile_seconds: int = Field(default=300, ge=60, le=3600, description="orphans and ghosts this often")
    max_disruption_share: float = Field(
        default=0.34, gt=0, le=1, description="share of a pool under repair at once (at least one node)"
    )
    # Model id -> the fewest ready nodes it keeps in each region that has pools for it (default: the sum
    # of those pools' minSize).
    min_ready_replicas: dict[str, int] = Field(default_factory=dict)
    dry_run: bool = False


CONTROLLER_REDIS_PASSWORD = SecretSpec(
    "controllerRedisPassword",
    "password of the fleet controller's own Redis user (openssl rand -hex 32)",
    check=elasticache_password("a user password"),
    needed=lambda view: bool(view.all(GpuPoolConfig)),  # a controller runs where pools do
)


@rule(ControllerConfig)
def _tick_fits(c: ControllerConfig, view: StackView) -> Iterator[Problem]:
    if c.poll_timeout_seconds > c.tick_seconds * TICK_WORK_SHARE:
        yield (
            "pollTimeoutSeconds",
            f"got {c.poll_timeout_seconds:g}; at most half of tickSeconds ({c.tick_seconds}): a tick must "
            "finish before the next one",
        )
    if c.not_ready_grace_seconds < 2 * c.tick_seconds:
        yield (
            "notReadyGraceSeconds",
            f"got {c.not_ready_grace_seconds}; at least two ticks ({2 * c.tick_seconds} s): one tick's "
            "reading never replaces a node",
        )
    if c.restart_grace_seconds < 2 * c.tick_seconds:
        yield (
            "restartGraceSeconds",
            f"got {c.restart_grace_seconds}; at least two ticks ({2 * c.tick_seconds} s): the restarted "
            "agent's first heartbeat must be seen",
        )


def pool_minimums(pools: list[GpuPoolConfig]) -> dict[tuple[str, str], int]:
    """(region, model) -> the sum of its pools' minSize there: the default fewest ready replicas."""
    minimums: dict[tuple[str, str], int] = {}
    for pool in pools:
        key = (pool.region, pool.model)
        minimums[key] = minimums.get(key, 0) + pool.min_size
    return minimums


@stack_rule
def _minimums_reachable(view: StackView) -> Iterator[Problem]:
    found = view.all(ControllerConfig)
    if not found:
        return
    path, controller = found[0]
    pools = [p for _, p in view.all(GpuPoolConfig)]
    for model, replicas in controller.min_ready_replicas.items():
        key = TopKey(f"{path}.minReadyReplicas.{model}")
        serving = [p for p in pools if p.model == model]
        if not serving:
            models = sorted({p.model for p in pools})
            yield key, f"no GPU pool serves {model!r}; pool models: {', '.join(models) or '(none)'}"
            continue
        if replicas < 1:
            yield key, f"got {replicas}; at least 1"
        for region in sorted({p.region for p in serving}):
            most = sum(p.max_size for p in serving if p.region == region)
            if replicas > most:
                yield (
                    key,
                    f"got {replicas}; the pools serving it in {region} reach {most} nodes at maxSize",
                )
