"""The contract between the program and the fleet controller: what components/controller renders into the
function's environment (`ControllerSettings.to_env`) is what the handler reads (`ControllerSettings.
from_env`), and the constants both sides use are defined here once. Standard library only (and the
decision's own settings): it ships in the function's archive.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from .decision import DEFAULT_WARM_LIMIT_S, Settings

# The controller's metrics (embedded metric format) and the alarms that watch them. The Lambda cannot
# import the agent's package: these equal fleet_agent.fleet_metrics' CONTROLLER_NAMESPACE, READY_NODES and
# POOL_DIMENSION (a test holds them equal), which the pools' ReadyNodes alarms use.
METRIC_NAMESPACE = "inference-fleet/controller"
READY_NODES_METRIC = "ReadyNodes"
POOL_DIMENSION = "Pool"
# A run keeps ticking this long: past the next run's start, whenever in its minute EventBridge sends it.
# The program sizes the function's timeout and the detection budget from it (components/controller).
RUN_SECONDS = 115
# The settings as one JSON document (sorted keys), and the secret holding the Redis password.
CONFIG_VARIABLE = "CONTROLLER_CONFIG"
PASSWORD_SECRET_VARIABLE = "REDIS_PASSWORD_SECRET_ARN"
# A tick's lease on the controller's memory, in ticks.
LOCK_LEASE_TICKS = 3


@dataclass(frozen=True)
class PoolSpec:
    name: str
    group: str
    model: str
    target_group_arn: str | None = None
    # How long a node may be on its way to ready once it answers (components/gpu_pools/timings.py).
    warm_limit_s: float = DEFAULT_WARM_LIMIT_S


@dataclass(frozen=True)
class ControllerSettings:
    stack: str
    region: str
    pools: tuple[PoolSpec, ...]
    redis_host: str
    redis_port: int
    redis_tls: bool
    redis_user: str | None
    agent_port: int
    key_prefix: str
    restart_document: str
    topic_arn: str | None
    fleet_tags: Mapping[str, str]
    pool_tag: str
    tick_s: float
    confirmations: int
    poll_timeout_s: float
    restart_grace_s: float
    boot_grace_s: float
    leave_alone_s: float
    not_ready_grace_s: float
    orphan_grace_s: float
    reconcile_s: float
    max_share: float
    min_ready: Mapping[str, int] = field(default_factory=dict)
    dry_run: bool = False
    run_seconds: float = RUN_SECONDS
    # None: Redis without a password (the tests' servers).
    redis_password_secret_arn: str | None = None

    def to_env(self) -> dict[str, str]:
        config = asdict(self)
        secret = config.pop("redis_password_secret_arn")
        env = {CONFIG_VARIABLE: json.dumps(config, sort_keys=True)}
        if secret is not None:
            env[PASSWORD_SECRET_VARIABLE] = secret
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ControllerSettings:
        config = json.loads(env[CONFIG_VARIABLE])
        config["pools"] = tuple(PoolSpec(**p) for p in config["pools"])
        return cls(**config, redis_password_secret_arn=env.get(PASSWORD_SECRET_VARIABLE) or None)

    @property
    def decision(self) -> Settings:
        return Settings(
            tick_s=self.tick_s,
            confirmations=self.confirmations,
            restart_grace_s=self.restart_grace_s,
            leave_alone_s=self.leave_alone_s,
            not_ready_grace_s=self.not_ready_grace_s,
            orphan_grace_s=self.orphan_grace_s,
            max_share=self.max_share,
            min_ready=dict(self.min_ready),
        )

    @property
    def memory_key(self) -> str:
        return f"{self.key_prefix}:{self.region}:controller:memory"

    @property
    def lock_key(self) -> str:
        return f"{self.key_prefix}:{self.region}:controller:lock"

    @property
    def lock_lease_s(self) -> float:
        """How long a tick holds the controller's lock unless it renews it. A tick that outlives it
        (botocore's timeouts and retries) loses the lock and with it the right to act and to write."""
        return LOCK_LEASE_TICKS * self.tick_s

    def slot_key(self, slot: int) -> str:
        return f"{self.key_prefix}:{self.region}:controller:tick:{slot}"
