"""The agent's configuration: one pydantic model, read from a TOML file plus environment overrides.

Validated once at start. Every problem comes back as one line naming the key and what is allowed,
so `fleet-agent` can print them and exit 2 instead of showing a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from fleet_agent import constants as c
from fleet_agent import fleet_metrics
from fleet_agent.kubernetes import detect as detect_pod

EngineKind = Literal["vllm", "ollama", "llamacpp"]
PositiveSeconds = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]


class ConfigError(Exception):
    """The configuration is unusable; `lines` holds one message per bad key."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeConfig(_Section):
    id: str = Field(default_factory=socket.gethostname, min_length=1)
    region: str = "local"
    pool: str = "default"
    # A CPU node says so here; a GPU node without a healthy GPU is never ready.
    accelerator: Literal["gpu", "cpu"] = "gpu"


class EngineConfig(_Section):
    kind: EngineKind
    # spawn: the agent starts and supervises the engine. attach: a host unit runs it (Ollama).
    mode: Literal["spawn", "attach"] = "spawn"
    models: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    port: Port | None = None  # on 127.0.0.1; default per engine
    # The program and its leading arguments, when not the engine's usual one on PATH.
    executable: list[str] | None = None
    args: list[str] = []  # appended to the engine's command line
    env: dict[str, str] = {}
    # llama.cpp loads a GGUF file; models[0] is the name it serves it under.
    model_path: Path | None = None
    gpu_layers: int = Field(default=999, ge=0)  # llama.cpp -ngl
    parallel: int = Field(default=4, ge=1)  # concurrent sequences (llama.cpp -np, Ollama NUM_PARALLEL)
    # attach mode: how to restart the host-managed engine when it is wedged.
    restart_command: list[str] | None = None
    # Ollama: pull a model that is not on disk before preloading it (images normally bake them in).
    pull_missing: bool = False

    @property
    def bind_port(self) -> int:
        return self.port or c.DEFAULT_ENGINE_PORTS[self.kind]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.bind_port}"

    @model_validator(mode="after")
    def _engine_specifics(self) -> EngineConfig:
        if self.kind == "llamacpp" and self.model_path is None:
            raise ValueError("model_path: required when engine.kind is 'llamacpp' (path to a .gguf file)")
        if self.mode == "attach" and self.executable is not None:
            raise ValueError("executable: only used when engine.mode is 'spawn'")
        if self.kind == "vllm" and len(self.models) > 1:
            raise ValueError("models: vllm serves exactly one model per engine")
        return self


class ServerConfig(_Section):
    host: str = "0.0.0.0"
    port: Port = c.DEFAULT_SERVING_PORT
    # One key per line; several lines let a key be rotated without downtime.
    api_key_file: Path | None = None
    # A stream the engine stops feeding for this long is broken off, visibly to the client.
    stream_stall_timeout_s: PositiveSeconds = c.STREAM_STALL_TIMEOUT_S
    _api_keys: tuple[SecretStr, ...] = PrivateAttr(default=())

    @property
    def api_keys(self) -> tuple[SecretStr, ...]:
        return self._api_keys


class ProbeConfig(_Section):
    health_period_s: PositiveSeconds = c.ENGINE_HEALTH_PERIOD_S
    health_timeout_s: PositiveSeconds = c.ENGINE_HEALTH_TIMEOUT_S
    health_failure_threshold: int = Field(default=c.ENGINE_HEALTH_FAILURE_THRESHOLD, ge=1)
    model_period_s: PositiveSeconds = c.MODEL_CHECK_PERIOD_S
    model_timeout_s: PositiveSeconds = c.MODEL_CHECK_TIMEOUT_S
    preload_timeout_s: PositiveSeconds = c.MODEL_PRELOAD_TIMEOUT_S
    canary_period_s: PositiveSeconds = c.CANARY_PERIOD_S
    canary_timeout_s: PositiveSeconds = c.CANARY_TIMEOUT_S
    canary_failure_threshold: int = Field(default=c.CANARY_FAILURE_THRESHOLD, ge=1)
    gpu_period_s: PositiveSeconds = c.GPU_CHECK_PERIOD_S
    progress_period_s: PositiveSeconds = c.PROGRESS_CHECK_PERIOD_S
    progress_window_s: PositiveSeconds = c.PROGRESS_WINDOW_S
    wedge_restart_after_s: PositiveSeconds = c.WEDGE_RESTART_AFTER_S
    startup_timeout_s: PositiveSeconds = c.STARTUP_TIMEOUT_S


class SupervisorConfig(_Section):
    backoff_initial_s: PositiveSeconds = c.RESTART_BACKOFF_INITIAL_S
    backoff_max_s: PositiveSeconds = c.RESTART_BACKOFF_MAX_S
    backoff_reset_after_s: PositiveSeconds = c.RESTART_BACKOFF_RESET_AFTER_S
    crash_loop_restarts: int = Field(default=c.CRASH_LOOP_RESTARTS, ge=1)
    crash_loop_window_s: PositiveSeconds = c.CRASH_LOOP_WINDOW_S
    stop_grace_s: PositiveSeconds = c.ENGINE_STOP_GRACE_S
    restart_grace_s: PositiveSeconds = c.ENGINE_RESTART_GRACE_S


class GpuConfig(_Section):
    count: int = Field(default=1, ge=1)  # GPUs the node must show; fewer means not ready
    temperature_margin_c: int = Field(default=0, ge=0)  # unhealthy at slowdown threshold minus this
    ignored_xids: frozenset[int] = c.IGNORED_XIDS


class WebhookHook(_Section):
    kind: Literal["webhook"]
    url: HttpUrl
    headers: dict[str, str] = {}
    timeout_s: PositiveSeconds = c.HOOK_TIMEOUT_S
    attempts: int = Field(default=c.HOOK_ATTEMPTS, ge=1)


class AwsHook(_Section):
    kind: Literal["aws-lifecycle"]
    # PutLifecycleHook / CreateAutoScalingGroup limits (botocore's autoscaling model).
    hook_name: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9\-_\/]+$")]
    group_name: Annotated[str, Field(min_length=1, max_length=255)]
    # The hook's HeartbeatTimeout (PutLifecycleHook: 30-7200 s). Set, the agent keeps the action open with
    # RecordLifecycleActionHeartbeat while it works; unset, it sends none (the action must end in time).
    heartbeat_timeout_s: Annotated[int, Field(ge=30, le=7200)] | None = None
    timeout_s: PositiveSeconds = c.HOOK_TIMEOUT_S
    attempts: int = Field(default=c.HOOK_ATTEMPTS, ge=1)


class AwsLifecycleHook(AwsHook):
    """Completes the Auto Scaling lifecycle action that holds this instance (its identity from IMDSv2,
    credentials from the instance role), so the group terminates the node as soon as it is drained."""

    result: Literal["CONTINUE", "ABANDON"] = "CONTINUE"


class AwsLaunchHook(AwsHook):
    """The group's launch lifecycle hook: completed with CONTINUE once the node is ready (so InService
    means ready), with ABANDON when not ready within `launch.ready_timeout_s` (the group replaces it)."""


DrainedHookConfig = Annotated[WebhookHook | AwsLifecycleHook, Field(discriminator="kind")]


class DrainConfig(_Section):
    timeout_s: PositiveSeconds = c.DRAIN_TIMEOUT_S
    # Scale-in, instance refresh, replacement (the group's lifecycle action holds the node): as long as a
    # request may last, plus the leave and the reserve.
    lifecycle_timeout_s: PositiveSeconds = c.LIFECYCLE_DRAIN_TIMEOUT_S
    reserve_s: float = Field(default=c.DRAIN_RESERVE_S, ge=0)
    hooks: list[DrainedHookConfig] = []


class LaunchConfig(_Section):
    ready_timeout_s: PositiveSeconds = c.LAUNCH_READY_TIMEOUT_S
    hooks: list[AwsLaunchHook] = []


TargetGroupArn = Annotated[
    str,
    Field(
        pattern=r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]+$"
    ),
]


class LoadBalancerConfig(_Section):
    """The load balancers in front of the node. A leaving node (spot notice, scale-in, refresh) deregisters
    itself from `aws_target_group_arns` (as an instance target on `target_port`), then keeps serving what
    still arrives for `leave_s` before it refuses work. Unset, `leave_s` is LB_LEAVE_S with target groups
    and 0 without (in a Kubernetes pod the preStop hook has waited before the SIGTERM)."""

    aws_target_group_arns: list[TargetGroupArn] = []
    target_port: Port | None = None  # where the group registered the node; default: server.port
    leave_s: Annotated[float, Field(ge=0)] | None = None

    @property
    def leave_seconds(self) -> float:
        if self.leave_s is not None:
            return self.leave_s
        return c.LB_LEAVE_S if self.aws_target_group_arns else 0.0


class PreemptionConfig(_Section):
    provider: Literal["none", "aws", "gce"] = "none"
    aws_imds_url: HttpUrl = HttpUrl(c.AWS_IMDS_URL)
    aws_poll_s: Annotated[float, Field(gt=0, le=2.0)] = c.AWS_POLL_PERIOD_S
    gce_metadata_url: HttpUrl = HttpUrl(c.GCE_METADATA_URL)
    gce_wait_timeout_s: int = Field(default=c.GCE_WAIT_TIMEOUT_S, ge=1)
    gce_preempted_grace_s: PositiveSeconds = c.GCE_PREEMPTED_GRACE_S
    # AWS's rebalance recommendation comes before any interruption notice; draining on it gives
    # the capacity-rebalancing ASG a clean node to terminate.
    on_rebalance: Literal["drain", "log"] = "drain"


class HeartbeatConfig(_Section):
    redis_url: str | None = None  # no heartbeats when unset
    redis_password_file: Path | None = None
    period_s: PositiveSeconds = c.HEARTBEAT_PERIOD_S
    ttl_s: PositiveSeconds = c.HEARTBEAT_TTL_S
    key_prefix: str = c.HEARTBEAT_KEY_PREFIX

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _ttl_outlives_period(self) -> HeartbeatConfig:
        if self.ttl_s <= self.period_s:
            raise ValueError("ttl_s: must be greater than period_s, or every record expires between beats")
        return self


class CloudWatchConfig(_Section):
    """The node's metrics (fleet_agent.fleet_metrics) to CloudWatch: one batched PutMetricData every
    `period_s`, signed with the instance role (identity and region from IMDS, `preemption.aws_imds_url`).
    Dimensions: Pool is `node.pool`, Model is `model` (default: the engine's first model)."""

    enabled: bool = False
    model: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    # A divisor of 60, so every window falls inside one alarm period of 10, 20, 30 or 60 s.
    period_s: Literal[10, 20, 30, 60] = fleet_metrics.PUBLISH_PERIOD_S
    region: str | None = None  # default: the instance's region (IMDS)


class ScaleInProtectionConfig(_Section):
    """Scale-in protection kept by the agent (fleet_agent/scale_in.py): the instance is protected from its
    Auto Scaling group's scale-in (SetInstanceProtection) when a request starts and released once no
    request has been in flight for `release_after_s`; it yields, busy or not, once the group has been
    above its desired capacity for `yield_after_s` (read every `group_check_s`). Off unless `group_name`
    is given."""

    group_name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    release_after_s: PositiveSeconds = c.SCALE_IN_RELEASE_AFTER_S
    yield_after_s: PositiveSeconds = c.SCALE_IN_YIELD_AFTER_S
    group_check_s: PositiveSeconds = c.SCALE_IN_GROUP_CHECK_S
    timeout_s: PositiveSeconds = c.HOOK_TIMEOUT_S
    attempts: int = Field(default=c.HOOK_ATTEMPTS, ge=1)


class SecretsConfig(_Section):
    """Files written from one AWS Secrets Manager secret (a JSON object) before the agent starts
    (`fleet-agent fetch-secrets`): e.g. the API key and the heartbeat Redis password, so neither sits in
    the node's user data."""

    aws_secret_id: str | None = None  # the secret's ARN (its region is the ARN's)
    files: dict[str, Path] = {}  # key in the secret's JSON -> file to write (mode 0600)

    @model_validator(mode="after")
    def _files_need_a_secret(self) -> SecretsConfig:
        if self.files and self.aws_secret_id is None:
            raise ValueError("aws_secret_id: required when files are listed")
        if self.aws_secret_id is not None and not self.aws_secret_id.startswith("arn:aws"):
            raise ValueError("aws_secret_id: must be the secret's ARN (arn:aws:secretsmanager:...)")
        return self


class StoreSecretConfig(_Section):
    """One key of an AWS Secrets Manager secret (a JSON object), read with the instance role."""

    aws_secret_id: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:secretsmanager:")]
    key: Annotated[str, Field(min_length=1)]


class ModelStoreConfig(_Section):
    """The model store: a JuiceFS volume mounted (read-only) at `mount_point`, the model's directory in it
    (`model_dir`, listed by its fleet-manifest.json) warmed into the local cache before the engine starts.

    spawn: the agent mounts the volume itself and mounts it again when it goes stale (containers, tests).
    attach: the host mounts it (the fleet-model-store unit running `fleet-agent mount-store`, or the
    JuiceFS CSI driver); the agent runs `remount_command` when the mount goes stale, where one is given.
    """

    volume: Annotated[str, Field(min_length=1, max_length=255)]
    # redis://host:port/db or rediss://...; the password is never in it (META_PASSWORD from a file or
    # the secret below).
    meta_url: str
    meta_password_file: Path | None = None
    meta_secret: StoreSecretConfig | None = None  # read by `mount-store` (attach mode on a VM)
    mount_point: Path = Path(c.STORE_MOUNT_POINT)
    mode: Literal["spawn", "attach"] = "spawn"
    remount_command: list[str] | None = None
    model_dir: str  # the model's directory in the volume
    read_only: bool = True
    cache_dir: Path = Path(c.STORE_CACHE_DIR)
    cache_size_mib: int = Field(default=c.STORE_CACHE_SIZE_MIB, ge=0)
    free_space_ratio: float = Field(default=c.STORE_FREE_SPACE_RATIO, ge=0, lt=1)
    buffer_size_mib: int = Field(default=300, ge=32)
    prefetch: int = Field(default=1, ge=0, le=256)
    metadata_cache_s: float = Field(default=c.STORE_METADATA_CACHE_S, ge=0)
    metrics_address: str = c.STORE_METRICS_ADDRESS
    log_file: Path | None = None  # a background mount's log (spawn mode); None: JuiceFS's default
    juicefs: list[str] = Field(default=["juicefs"], min_length=1)  # the client, and its leading arguments
    warmup: bool = True
    warmup_threads: int = Field(default=c.STORE_WARMUP_THREADS, ge=1, le=256)
    warmup_poll_s: PositiveSeconds = c.STORE_WARMUP_POLL_S
    check_period_s: PositiveSeconds = c.STORE_CHECK_PERIOD_S
    check_timeout_s: PositiveSeconds = c.STORE_CHECK_TIMEOUT_S
    mount_timeout_s: PositiveSeconds = c.STORE_MOUNT_TIMEOUT_S
    attach_grace_s: PositiveSeconds = c.STORE_ATTACH_GRACE_S
    remount_backoff_s: PositiveSeconds = c.STORE_REMOUNT_BACKOFF_S
    remount_backoff_max_s: PositiveSeconds = c.STORE_REMOUNT_BACKOFF_MAX_S

    @property
    def model_path(self) -> Path:
        return self.mount_point / self.model_dir

    @field_validator("meta_url")
    @classmethod
    def _meta_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://")):
            raise ValueError("must start with redis:// or rediss:// (the volume's metadata Redis)")
        if "@" in value.split("//", 1)[1].split("/", 1)[0]:
            raise ValueError("must not carry credentials: give meta_password_file or meta_secret")
        return value

    @field_validator("model_dir")
    @classmethod
    def _model_dir(cls, value: str) -> str:
        from fleet_agent.manifest import path_problem

        problem = path_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _mode_specifics(self) -> ModelStoreConfig:
        if self.mode == "spawn" and self.remount_command is not None:
            raise ValueError("remount_command: only for mode 'attach' (in spawn mode the agent mounts)")
        if self.meta_password_file is not None and self.meta_secret is not None:
            raise ValueError("meta_secret: give the password one way, meta_password_file or meta_secret")
        return self


class AgentConfig(_Section):
    node: NodeConfig = NodeConfig()
    engine: EngineConfig
    server: ServerConfig = ServerConfig()
    probes: ProbeConfig = ProbeConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    gpu: GpuConfig = GpuConfig()
    drain: DrainConfig = DrainConfig()
    launch: LaunchConfig = LaunchConfig()
    load_balancer: LoadBalancerConfig = LoadBalancerConfig()
    preemption: PreemptionConfig = PreemptionConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    secrets: SecretsConfig = SecretsConfig()
    model_store: ModelStoreConfig | None = None
    cloudwatch: CloudWatchConfig = CloudWatchConfig()
    scale_in_protection: ScaleInProtectionConfig = ScaleInProtectionConfig()
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @property
    def gpu_required(self) -> bool:
        return self.node.accelerator == "gpu"


# --- Loading ------------------------------------------------------------------------------------


def load_config(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    *,
    load_keys: bool = True,
    key_file_may_be_absent: bool = False,
) -> AgentConfig:
    """Read `path` (TOML), apply FLEET_AGENT__* overrides, validate, and load the API keys (unless
    `load_keys` is false: job mode serves no proxy, and `fetch-secrets` runs before the key file exists).
    With `key_file_may_be_absent` (check-config), a key file that is not there yet is no error: on a node
    `fetch-secrets` writes it at boot, and `run` refuses to start without it."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"config: {path}: no such file"]) from None
        except OSError as exc:
            raise ConfigError([f"config: {path}: cannot read ({exc.strerror})"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"config: {path}: not valid TOML ({exc})"]) from None
    raw = _apply_env_overrides(raw, environ)
    pod = detect_pod(environ)
    if pod is not None and isinstance(raw.setdefault("node", {}), dict):
        raw["node"].setdefault("id", pod.name)  # the pod is the node (an explicit id still wins)
    try:
        config = AgentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    key_file = config.server.api_key_file
    if load_keys and not (key_file_may_be_absent and key_file is not None and not key_file.exists()):
        config.server._api_keys = _load_api_keys(config.server, environ)
    return config


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    merged = json.loads(json.dumps(raw))  # deep copy of plain TOML data
    for name, value in sorted(environ.items()):
        if not name.startswith(c.ENV_PREFIX):
            continue
        keys = [part.lower() for part in name.removeprefix(c.ENV_PREFIX).split("__") if part]
        if not keys:
            continue
        target = merged
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ConfigError([f"config: {name}: {'.'.join(keys[:-1])} is not a table"])
        target[keys[-1]] = _env_value(value)
    return merged


def _env_value(value: str) -> Any:
    """JSON where it parses (numbers, lists, true), else the plain string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _describe(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        location = _location(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        # A model-level check names its own key ("model_path: ...") so the line stays exact.
        if ": " in message and error["type"] == "value_error" and message.split(": ", 1)[0].isidentifier():
            key, message = message.split(": ", 1)
            location = f"{location}.{key}" if location else key
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "literal_error":
            message = f"must be one of {error.get('ctx', {}).get('expected')} (got {error['input']!r})"
        elif error["type"] == "missing":
            message = "required"
        elif isinstance(error.get("input"), str | int | float) and error["type"] != "value_error":
            message = f"{message} (got {error['input']!r})"
        lines.append(f"config: {location or '(top level)'}: {message}")
    return lines


def _location(loc: tuple[int | str, ...]) -> str:
    """('drain', 'hooks', 0, 'webhook', 'url') -> 'drain.hooks[0].url'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("webhook", "aws-lifecycle"):  # the discriminator's tag adds nothing for the reader
            continue
        else:
            text += f".{part}" if text else part
    return text


def _load_api_keys(server: ServerConfig, environ: Mapping[str, str]) -> tuple[SecretStr, ...]:
    keys: list[str] = []
    if server.api_key_file is not None:
        try:
            text = server.api_key_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                [f"config: server.api_key_file: cannot read {server.api_key_file} ({exc.strerror})"]
            ) from None
        keys = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        if not keys:
            raise ConfigError([f"config: server.api_key_file: {server.api_key_file} holds no key"])
    elif environ.get(c.ENV_API_KEY, "").strip():
        keys = [environ[c.ENV_API_KEY].strip()]
    else:
        raise ConfigError(
            [f"config: server.api_key_file: required (or set {c.ENV_API_KEY}); the proxy never runs open"]
        )
    return tuple(SecretStr(key) for key in keys)
