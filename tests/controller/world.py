"""The fleet controller's world on 127.0.0.1: pools as Auto Scaling groups in moto, the region's Redis as a
real redis-server with the program's ACL users, agents (real ones, in subprocesses) named after the moto
instances, and the controller itself (functions/fleet_controller) looping in a thread."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from testkit.moto_server import client
from testkit.redis_server import RedisServer

from components.controller import budget_for
from components.controller import redis_users as controller_users
from components.gpu_pools import redis_users as node_users
from functions.fleet_controller.handler import Clients, Controller
from functions.fleet_controller.settings import ControllerSettings, PoolSpec
from node_image.agent.tests.agent_testkit.harness import API_KEY, FAST_PROBES, LLAMA_SERVER, to_toml
from node_image.agent.tests.agent_testkit.net import free_port, wait_for

REGION = "us-east-1"
POOL = "tiny"
MODEL = "tiny"
# Heartbeats scaled down as the probes are (the agent's defaults: every 5 s, 15 s TTL).
HEARTBEAT_PERIOD_S = 1.0
HEARTBEAT_TTL_S = 3.0
NODE_USER, CONTROLLER_USER = "fleet-node", "fleet-controller"


class Secrets:
    """The program's secrets as `redis_users` reads them (a StackSecrets stand-in)."""

    def require(self, key: str) -> str:
        return f"{key}-0123456789abcdef"


def redis_with_fleet_users(server: RedisServer) -> RedisServer:
    """The ACL users the program renders for this region: the nodes' and the controller's."""
    from components.gpu_pools import GpuPoolConfig

    pool = GpuPoolConfig.model_validate(
        {"name": POOL, "region": REGION, "engine": "vllm", "model": MODEL, "instanceTypes": ["g6.xlarge"],
         "maxSize": 6}
    )  # fmt: skip
    for user in [*node_users([pool], Secrets()), *controller_users([pool], Secrets())]:  # type: ignore[arg-type]
        server.add_user(user.user_name, str(user.password), user.access(REGION))
    return server


def password(user: str) -> str:
    key = "nodeRedisPassword" if user == NODE_USER else "controllerRedisPassword"
    return Secrets().require(key)


# --- pools in moto --------------------------------------------------------------------------------------


@dataclass
class MotoPool:
    url: str
    group: str
    instance_ids: list[str]
    stack: str

    def health(self, instance_id: str) -> str:
        found = client(self.url, "autoscaling").describe_auto_scaling_instances(InstanceIds=[instance_id])
        return found["AutoScalingInstances"][0]["HealthStatus"]

    def command(self, command_id: str) -> dict[str, Any]:
        """What moto recorded of a SendCommand. (moto 5.2.5 also lists a command under every instance of
        the region when it names no Targets, so commands are looked up by id, and who they were sent to is
        read from the request itself: RunningController.sent.)"""
        (found,) = client(self.url, "ssm").list_commands(CommandId=command_id)["Commands"]
        return found

    def desired(self) -> int:
        groups = client(self.url, "autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.group]
        )
        return groups["AutoScalingGroups"][0]["DesiredCapacity"]


def target_group(pool: MotoPool) -> str:
    """The pool's target group in moto, attached to its group (moto registers the group's instances; it
    calls every registered target healthy, whatever the agent says)."""
    elbv2, ec2 = client(pool.url, "elbv2"), client(pool.url, "ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    created = elbv2.create_target_group(
        Name=f"{pool.stack}-tg", Protocol="HTTP", Port=8080, VpcId=vpc, HealthCheckPath="/readyz"
    )
    arn = created["TargetGroups"][0]["TargetGroupArn"]
    client(pool.url, "autoscaling").attach_load_balancer_target_groups(
        AutoScalingGroupName=pool.group, TargetGroupARNs=[arn]
    )
    return arn


def moto_pool(url: str, size: int = 3, max_size: int = 6) -> MotoPool:
    """A pool's group as the program declares it (stack tags and the pool tag propagated at launch), and
    the restart document."""
    stack = f"t{uuid.uuid4().hex[:8]}"  # its own stack: another test's instances are not this one's orphans
    ec2, autoscaling = client(url, "ec2"), client(url, "autoscaling")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName=f"{stack}-lt", LaunchTemplateData={"ImageId": image, "InstanceType": "g6.xlarge"}
    )["LaunchTemplate"]
    group = f"fleet-{stack}-use1-pool-{POOL}"
    tags = {"project": "inference-fleet", "stack": stack, "pool": POOL}
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
        MinSize=min(size, 1),
        MaxSize=max_size,
        DesiredCapacity=size,
        AvailabilityZones=[f"{REGION}a"],
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()],
    )
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    client(url, "ssm").create_document(
        Name=f"fleet-{stack}-use1-agent-restart",
        DocumentType="Command",
        DocumentFormat="JSON",
        Content=json.dumps(
            {
                "schemaVersion": "2.2",
                "description": "restart the fleet agent",
                "mainSteps": [
                    {
                        "action": "aws:runShellScript",
                        "name": "restartFleetAgent",
                        "inputs": {"runCommand": ["systemctl start fleet-agent-restart.service"]},
                    }
                ],
            }
        ),
    )
    return MotoPool(url, group, sorted(i["InstanceId"] for i in found["Instances"]), stack)


# --- the controller ------------------------------------------------------------------------------------


def settings(pool: MotoPool, redis: RedisServer, **changes: Any) -> ControllerSettings:
    base = ControllerSettings(
        stack=pool.stack,
        region=REGION,
        pools=(PoolSpec(POOL, pool.group, MODEL, None),),
        redis_host=redis.host,
        redis_port=redis.port,
        redis_tls=False,
        redis_user=CONTROLLER_USER,
        agent_port=0,
        key_prefix="fleet",
        restart_document=f"fleet-{pool.stack}-use1-agent-restart",
        topic_arn=None,
        fleet_tags={"project": "inference-fleet", "stack": pool.stack},
        pool_tag="pool",
        tick_s=1.0,
        confirmations=2,
        poll_timeout_s=0.5,
        restart_grace_s=4.0,
        boot_grace_s=0.0,  # moto's instances launched a moment ago
        leave_alone_s=120.0,
        not_ready_grace_s=4.0,
        orphan_grace_s=600.0,
        reconcile_s=300.0,
        max_share=0.34,
        min_ready={},
        dry_run=False,
        run_seconds=3600.0,
    )
    return replace(base, **changes)


def budget(s: ControllerSettings, agent_detection_s: float = FAST_PROBES["gpu_period_s"]) -> Any:
    """The program's own formula over the test's periods (one continuous loop: no run handover)."""
    return budget_for(
        tick_s=s.tick_s,
        confirmations=s.confirmations,
        poll_timeout_s=s.poll_timeout_s,
        restart_grace_s=s.restart_grace_s,
        heartbeat_ttl_s=HEARTBEAT_TTL_S,
        handover_s=0,
        not_ready_grace_s=s.not_ready_grace_s,
        agent_detection_s=agent_detection_s,
    )


@dataclass
class RunningController:
    """Controller.run in a thread, every record it emits kept."""

    controller: Controller
    records: list[dict[str, Any]] = field(default_factory=list)
    # Every SendCommand request as botocore sent it (after validation against the SSM model).
    sent: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def __enter__(self) -> RunningController:
        def sleep(seconds: float) -> None:
            if self._stop.wait(seconds):
                raise _Stopped

        def loop() -> None:
            try:
                self.controller.run(time_left=lambda: 1e9, sleep=sleep)
            except _Stopped:
                pass
            except BaseException as exc:
                self.error = exc

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def restarts(self, instance_id: str) -> list[dict[str, Any]]:
        return [c for c in self.sent if instance_id in c["InstanceIds"]]

    def ticks(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == "tick"]

    def ticks_until_action(self, instance_id: str, *, after: int, nth: int = 1) -> int:
        """The controller's ticks from record `after` up to the one with its `nth` action on the node."""
        ticks = actions = 0
        for record in self.records[after:]:
            if record.get("kind") == "tick":
                ticks += 1
            elif record.get("kind") == "action" and record.get("instance") == instance_id:
                actions += 1
                if actions == nth:
                    return ticks + 1  # the acting tick's own summary comes after its actions
        raise AssertionError(f"no action {nth} on {instance_id} in {self.records[after:]}")

    def wait_ticks(self, count: int, *, after: int, timeout: float) -> list[dict[str, Any]]:
        """Until the controller has ticked `count` times after its tick number `after`: as long as it had to
        act, counted in its own ticks (each at least `tick_s` apart) rather than in a busy machine's
        seconds."""
        wait_for(lambda: len(self.ticks()) >= after + count, timeout, f"{count} controller ticks")
        return self.ticks()[after:]

    def verdicts(self, instance_id: str) -> list[str]:
        return [r["verdict"] for r in self.records if r.get("instance") == instance_id and "verdict" in r]

    def wait_healthy(self, count: int, timeout: float = 60) -> None:
        def healthy() -> bool:
            assert self.error is None, self.error
            ticks = self.ticks()
            return bool(ticks) and ticks[-1].get("verdicts", {}).get("healthy") == count

        try:
            wait_for(healthy, timeout, f"{count} healthy nodes in the controller's ticks")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last records: {self.records[-6:]}") from None


class _Stopped(Exception):
    pass


def controller(
    pool: MotoPool,
    s: ControllerSettings,
    addresses: dict[str, tuple[str, int]],
    clock: Callable[[], float] = time.time,
    address_for: Callable[[Any], tuple[str, int] | None] | None = None,
) -> RunningController:
    clients = Clients(
        autoscaling=client(pool.url, "autoscaling"),
        ec2=client(pool.url, "ec2"),
        elbv2=client(pool.url, "elbv2"),
        ssm=client(pool.url, "ssm"),
    )
    running = RunningController(None)  # type: ignore[arg-type]
    clients.ssm.meta.events.register(
        "before-call.ssm.SendCommand", lambda params, **_: running.sent.append(json.loads(params["body"]))
    )
    running.controller = Controller(
        s,
        clients,
        password(CONTROLLER_USER),
        address_for=address_for or (lambda instance: addresses.get(instance.instance_id)),
        clock=clock,
        emit=running.records.append,
    )
    return running


# --- agents -------------------------------------------------------------------------------------------


@dataclass
class AgentProcess:
    """A real fleet agent (`python -m fleet_agent.main run`) for one moto instance, attached to a shared
    llama.cpp server, heartbeating to Redis as the nodes' ACL user."""

    instance_id: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def wait_ready(self, timeout: float = 60) -> None:
        import httpx

        def ready() -> bool:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200

        wait_for(ready, timeout, f"agent {self.instance_id} ready")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def close(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


def agent_config(
    directory: Path,
    instance_id: str,
    redis: RedisServer,
    engine_port: int,
    model: Path,
    redis_port: int | None = None,  # through a proxy (the bench's flapping heartbeats)
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """A pool node's agent config: attached to the shared llama.cpp, heartbeating as the nodes' user."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "api-key").write_text(API_KEY + "\n")
    (directory / "redis-password").write_text(password(NODE_USER) + "\n")
    node = {
        "id": instance_id,
        "region": REGION,
        "pool": POOL,
        "accelerator": "cpu",
        **sections.pop("node", {}),
    }
    return {
        "node": node,
        # One llama.cpp for every agent: a host-managed engine each attaches to.
        "engine": {"kind": "llamacpp", "mode": "attach", "models": [MODEL], "model_path": str(model),
                   "port": engine_port},
        "server": {"host": "127.0.0.1", "port": free_port(), "api_key_file": str(directory / "api-key")},
        "probes": {**FAST_PROBES, "canary_period_s": 2.0},
        "heartbeat": {"redis_url": f"redis://{NODE_USER}@{redis.host}:{redis_port or redis.port}/0",
                      "redis_password_file": str(directory / "redis-password"),
                      "period_s": HEARTBEAT_PERIOD_S, "ttl_s": HEARTBEAT_TTL_S},
        "log_level": "warning",
        **sections,
    }  # fmt: skip


def start_agent(
    directory: Path,
    instance_id: str,
    redis: RedisServer,
    engine_port: int,
    model: Path,
    redis_port: int | None = None,
    **sections: dict[str, Any],
) -> AgentProcess:
    config = agent_config(directory, instance_id, redis, engine_port, model, redis_port, **sections)
    path = directory / "agent.toml"
    path.write_text(to_toml(config))
    log = directory / "agent.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "fleet_agent.main", "run", "--config", str(path)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return AgentProcess(instance_id, config["server"]["port"], process, log)


def start_engine(model: Path) -> tuple[subprocess.Popen[bytes], int]:
    """llama.cpp's own server (the xllamacpp wheel) serving the tiny model, as a host unit would."""
    port = free_port()
    process = subprocess.Popen(
        [*LLAMA_SERVER, "-m", str(model), "-a", MODEL, "--host", "127.0.0.1", "--port", str(port), "-np", "4",
         "--metrics"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import httpx

    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200, 60, "llama.cpp")
    return process, port
