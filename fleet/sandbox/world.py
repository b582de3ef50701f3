"""The whole sandbox in one supervisor process: moto, the emulated serverless provider, the Auto Scaling
and ELBv2 API fronts, and per control-plane region its Redis, model store, gateway (LiteLLM and the
region-health sidecar), pools (load balancer and emulated group of nodes) and fleet controller; in front,
the Route53 emulation that gives clients one base URL.

Blocking work (boto3, subprocesses) runs in threads; the listeners (load balancers, API fronts, the DNS
front, the control API) share the supervisor's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from fleet.sandbox import juicefs
from fleet.sandbox.autoscaling_api import AutoScalingApi
from fleet.sandbox.controller import ControllerSchedule
from fleet.sandbox.dns import Route53Front
from fleet.sandbox.events import Events
from fleet.sandbox.group import GroupEmulator
from fleet.sandbox.litellm import OFFLINE_ENV, start_litellm, stop_litellm, wait_until_live
from fleet.sandbox.loadbalancer import Elbv2Api, TargetGroup, serve_app
from fleet.sandbox.moto import CREDENTIALS, client, start_moto
from fleet.sandbox.net import free_port
from fleet.sandbox.node import MODEL_FILE, NodeWiring
from fleet.sandbox.plan import RegionSpec, SandboxPlan
from fleet.sandbox.redis_server import RedisServer
from fleet.sandbox.serverless import ServerlessEndpoint
from fleet.sandbox.state import StateDir, record_pid
from functions.region_health.settings import REGION_HEALTH_KEY_ENV, RegionHealthSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REGION_HEALTH_MODULE = "functions.region_health.region_health"
# The gateway's database settings, left out: the sandbox's LiteLLM runs without a database.
NO_DATABASE = ("DATABASE_URL", "DATABASE_URL_READ_REPLICA")
GATEWAY_START_TIMEOUT_S = 240.0
EMULATED = (
    "Route53 (the failover records and health checks: fleet/sandbox/dns.py)",
    "the pools' load balancers (target groups and DescribeTargetHealth: fleet/sandbox/loadbalancer.py)",
    "the Auto Scaling group's replacement and lifecycle hooks, on top of moto (fleet/sandbox/group.py)",
    "the instance metadata service (fleet/sandbox/imds.py)",
    "NVML and the GPU (fleet/sandbox/gpu.py); the engines are llama.cpp on the CPU serving a tiny model",
    "serverless providers (one OpenAI- and Anthropic-compatible endpoint: fleet/sandbox/serverless.py)",
)


class Region:
    def __init__(self, spec: RegionSpec, sandbox: Sandbox, index: int) -> None:
        self.spec = spec
        self.sandbox = sandbox
        self.index = index
        self.dir = sandbox.state.root / "regions" / spec.region
        self.logs = sandbox.state.logs / spec.region
        self.logs.mkdir(parents=True, exist_ok=True)
        state = sandbox.state
        self.gateway_redis = RedisServer(
            self._dir("redis"),
            password=state.secret(f"{spec.region}-redis-default"),
            log=self.logs / "redis.log",
        )
        for user, access in spec.redis_users.items():
            if user != "default":
                self.gateway_redis.users[user] = (state.secret(f"{spec.region}-redis-{user}"), access)
        self.meta_password = state.secret(f"{spec.region}-model-store-meta")
        self.meta_redis = RedisServer(
            self._dir("meta-redis"),
            password=self.meta_password,
            options=("--maxmemory-policy", "noeviction"),  # the store's parameter group
            log=self.logs / "meta-redis.log",
        )
        for server in (self.gateway_redis, self.meta_redis):
            server.on_start = lambda pid: record_pid(sandbox.state.root, pid)
        self.lbs = {p.name: TargetGroup(p.target_group, p.name, sandbox.events) for p in spec.pools}
        self.lb_ports = {name: free_port() for name in self.lbs}
        self.groups: dict[str, GroupEmulator] = {}
        self.controller: ControllerSchedule | None = None
        self.gateway_port = free_port()
        self.health_port = free_port()
        self.gateway: subprocess.Popen[bytes] | None = None
        self.sidecar: subprocess.Popen[bytes] | None = None
        self.lost = False

    def _dir(self, name: str) -> Path:
        path = self.dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def moto(self, service: str) -> Any:
        return client(self.sandbox.moto_url, service, self.spec.region)

    # --- cloud resources in moto --------------------------------------------------------------------
    def declare_in_moto(self, nodes: int | None) -> None:
        """What the program declares that moto holds: a subnet, the groups with their termination
        hooks, the nodes' secrets, the restart document, the alert topic."""
        ec2 = self.moto("ec2")
        vpc = ec2.create_vpc(CidrBlock=f"10.{self.index}.0.0/16")["Vpc"]["VpcId"]
        zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{self.index}.1.0/24", AvailabilityZone=zone)
        subnet_id = subnet["Subnet"]["SubnetId"]
        image = ec2.describe_images()["Images"][0]["ImageId"]
        document = self.spec.restart_document
        if document:
            self.moto("ssm").create_document(
                Name=document["name"],
                Content=document["content"],
                DocumentType="Command",
                DocumentFormat="JSON",
            )
        settings = json.loads(self.spec.controller_env.get("CONTROLLER_CONFIG", "{}"))
        if settings.get("topic_arn"):
            self.moto("sns").create_topic(Name=settings["topic_arn"].rsplit(":", 1)[1])
        autoscaling, secrets = self.moto("autoscaling"), self.moto("secretsmanager")
        self.node_secrets: dict[str, str] = {}
        for pool in self.spec.pools:
            secret = secrets.create_secret(
                Name=f"{pool.name}-node-secret",
                SecretString=json.dumps(
                    {
                        "apiKey": self.sandbox.pool_api_key,
                        "redisPassword": self.gateway_redis.users["fleet-node"][0],
                    }
                ),
            )
            self.node_secrets[pool.name] = secret["ARN"]
            template = ec2.create_launch_template(
                LaunchTemplateName=f"{pool.group}-lt",
                LaunchTemplateData={"ImageId": image, "InstanceType": pool.instance_types[0]},
            )["LaunchTemplate"]
            desired = pool.min_size if nodes is None else nodes
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=pool.group,
                MinSize=min(pool.min_size, desired),
                MaxSize=pool.max_size,
                DesiredCapacity=desired,
                VPCZoneIdentifier=subnet_id,
                MixedInstancesPolicy={
                    "LaunchTemplate": {
                        "LaunchTemplateSpecification": {
                            "LaunchTemplateId": template["LaunchTemplateId"],
                            "Version": "$Latest",
                        },
                        "Overrides": [{"InstanceType": t} for t in pool.instance_types],
                    }
                },
                Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in pool.tags.items()],
                HealthCheckType="EC2",
            )
            autoscaling.put_lifecycle_hook(
                LifecycleHookName=pool.hook_name,
                AutoScalingGroupName=pool.group,
                LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                HeartbeatTimeout=int(pool.hook_timeout_s),
                DefaultResult=pool.hook_default_result,
            )
            if pool.launch_hook_name is not None:
                autoscaling.put_lifecycle_hook(
                    LifecycleHookName=pool.launch_hook_name,
                    AutoScalingGroupName=pool.group,
                    LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING",
                    HeartbeatTimeout=int(pool.launch_hook_timeout_s),
                    DefaultResult=pool.launch_hook_default_result,
                )

    # --- the model store ----------------------------------------------------------------------------
    def prepare_model_store(self, model_file: Path) -> None:
        """The store's volume formatted by the program's own format function, and the model synced into
        every pool's model directory with `fleet models sync`'s code, from a writable mount."""
        from fleet.models import sync_model
        from functions.store_format.handler import format_volume

        self.meta_redis.start()
        volume = dict(self.spec.volume)
        bucket = juicefs.s3_bucket(self.sandbox.moto_url, f"{volume['volume']}-chunks", self.spec.region)
        event = {**volume, "metaUrl": f"redis://127.0.0.1:{self.meta_redis.port}/1", "bucket": bucket}
        format_volume({**event, "password": self.meta_password}, {"JUICEFS": self.sandbox.juicefs})
        mount = self._dir("store-admin") / "volume"
        env = {**os.environ, "META_PASSWORD": self.meta_password}
        juicefs.mount_background(
            self.sandbox.juicefs, event["metaUrl"], mount, self._dir("store-admin-cache"), env,
            log=self.logs / "store-admin-juicefs.log",
        )  # fmt: skip
        try:
            source = model_file.parent
            for pool in self.spec.pools:
                sync_model(
                    source, mount / pool.model_dir, pool.model, source_label="fleet sandbox tiny model"
                )
        finally:
            juicefs.unmount(self.sandbox.juicefs, mount)

    # --- the gateway ----------------------------------------------------------------------------------
    def pool_urls(self) -> dict[str, str]:
        """Each pool's rendered endpoint (its load balancer's DNS name) -> the emulated load balancer."""
        published = self.sandbox.plan.outputs.get("gpuPools") or {}
        return {
            str(published[name]["endpoint"]).rstrip("/"): f"http://127.0.0.1:{port}"
            for name, port in self.lb_ports.items()
        }

    def _rewrite(self, url: str) -> str:
        """A backend address of the rendered config, moved to loopback: a pool's endpoint to its load
        balancer, any other (a serverless provider) to the emulated provider, same path."""
        for endpoint, local in self.pool_urls().items():
            if url.startswith(endpoint):
                return local + url[len(endpoint) :]
        return self.sandbox.serverless_url + urlsplit(url).path.rstrip("/")

    def gateway_config(self) -> dict[str, Any]:
        """The rendered config with only the backends' addresses moved to loopback. A provider LiteLLM
        calls at its own public address (no api_base) is given the emulated provider's: it answers the
        OpenAI and Anthropic paths under /v1, as LiteLLM appends them."""
        config = json.loads(json.dumps(self.spec.gateway_config))
        for deployment in config.get("model_list", []):
            params = deployment["litellm_params"]
            rendered = params.get("api_base")
            params["api_base"] = self._rewrite(rendered) if rendered else self.sandbox.serverless_url + "/v1"
        return config

    def start_gateway(self) -> None:
        sandbox, spec = self.sandbox, self.spec
        config_file = self.dir / "litellm-config.yaml"
        config_file.write_text(yaml.safe_dump(self.gateway_config(), sort_keys=False))
        env = {**os.environ, **OFFLINE_ENV, **spec.gateway_env}
        for name in ("LITELLM_CONFIG_BUCKET_NAME", "LITELLM_CONFIG_BUCKET_OBJECT_KEY", *NO_DATABASE):
            env.pop(name, None)  # the config is a file here, and there is no database
        env.update(REDIS_HOST="127.0.0.1", REDIS_PORT=str(self.gateway_redis.port), REDIS_SSL="False")
        for name in spec.gateway_secret_names:
            if name == "LITELLM_MASTER_KEY":
                env[name] = sandbox.master_key
            elif name == "REDIS_PASSWORD":
                env[name] = self.gateway_redis.password
            elif name == "LITELLM_SALT_KEY":
                env[name] = sandbox.state.secret("salt-key")
            elif name == "FLEET_POOL_API_KEY":
                env[name] = sandbox.pool_api_key
            elif name not in NO_DATABASE:
                env[name] = f"sandbox-{name.lower()}"  # a provider's key: the emulated provider takes any
        args = list(spec.gateway_command)
        for flag in ("--port", "--num_workers"):  # the sandbox sets the port, and one worker
            if flag in args:
                index = args.index(flag)
                del args[index : index + 2]
        self.gateway = start_litellm(
            config_file, self.gateway_port, env, self.logs / "gateway.log", self._dir("gateway"), args
        )
        self.start_sidecar()

    def start_sidecar(self) -> None:
        """The region-health sidecar's own code with its rendered settings; only its port and the gateway's
        address are the sandbox's. Its key: the master key, since without a database LiteLLM has no key
        table to register the sidecar's own virtual key in (the rendered key container is not run)."""
        rendered = RegionHealthSettings.from_env(self.spec.region_health_env)
        settings = replace(rendered, gateway_url=self.gateway_url, port=self.health_port)
        env = {
            **{k: v for k, v in os.environ.items() if k not in settings.to_env()},
            **settings.to_env(),
            REGION_HEALTH_KEY_ENV: self.sandbox.master_key,
            "PYTHONPATH": str(PROJECT_ROOT),
        }
        with (self.logs / "region-health.log").open("ab") as log:
            self.sidecar = subprocess.Popen(
                [sys.executable, "-m", REGION_HEALTH_MODULE],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_gateway(self) -> None:
        assert self.gateway is not None
        wait_until_live(self.gateway_url, self.gateway, self.logs / "gateway.log", GATEWAY_START_TIMEOUT_S)

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            stop_litellm(self.gateway)
        if self.sidecar is not None and self.sidecar.poll() is None:
            self.sidecar.terminate()
            self.sidecar.wait(10)

    # --- pools and controller -------------------------------------------------------------------------
    def wiring(self) -> NodeWiring:
        return NodeWiring(
            region=self.spec.region,
            directory=self._dir("nodes"),
            heartbeat_redis_port=self.gateway_redis.port,
            meta_redis_port=self.meta_redis.port,
            meta_password=self.meta_password,
            node_secret_arn="",
            autoscaling_url=self.sandbox.autoscaling_url,
            secrets_manager_url=self.sandbox.moto_url,
            cloudwatch_url=self.sandbox.moto_url,
            elbv2_url=self.sandbox.elbv2_url,
            juicefs=self.sandbox.juicefs,
        )

    def start_pools(self) -> None:
        for pool in self.spec.pools:
            wiring = replace(self.wiring(), node_secret_arn=self.node_secrets[pool.name])
            group = GroupEmulator(
                pool,
                self.moto("autoscaling"),
                self.moto("ssm"),
                self.lbs[pool.name],
                wiring,
                self.sandbox.events,
                self.spec.restart_document.get("name", ""),
            )
            self.groups[pool.name] = group
            group.start()

    def node(self, instance_id: str) -> Any:
        for group in self.groups.values():
            if instance_id in group.nodes:
                return group.nodes[instance_id]
        return None

    def start_controller(self) -> None:
        if not self.spec.controller_env:
            return
        import boto3
        from botocore.config import Config

        from functions.fleet_controller.handler import Clients

        config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 2})

        def aws(service: str, url: str) -> Any:
            return boto3.client(
                service, region_name=self.spec.region, endpoint_url=url, config=config, **CREDENTIALS
            )

        moto_url = self.sandbox.moto_url
        clients = Clients(
            autoscaling=aws("autoscaling", self.sandbox.autoscaling_url),
            ec2=aws("ec2", moto_url),
            elbv2=aws("elbv2", self.sandbox.elbv2_url),
            ssm=aws("ssm", moto_url),
            sns=aws("sns", moto_url),
        )

        def address_for(instance: Any) -> tuple[str, int] | None:
            node = self.node(instance.instance_id)
            return node.address if node is not None else None

        self.controller = ControllerSchedule(
            self.spec.region,
            self.spec.controller_env,
            self.sandbox.function_timeout(self.spec.region),
            self.gateway_redis.port,
            self.gateway_redis.users["fleet-controller"][0],
            clients,
            address_for,
            self.sandbox.events,
            self.logs / "controller.log",
        )
        self.controller.start()

    def healthy_targets(self, pool: str) -> int:
        return sum(1 for t in self.lbs[pool].describe() if t["state"] == "healthy")

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
        for group in self.groups.values():
            group.stop()
        self.stop_gateway()
        self.gateway_redis.stop()
        self.meta_redis.stop()


class Sandbox:
    """Everything one `fleet sandbox up` runs, built from the render."""

    def __init__(self, plan: SandboxPlan, state: StateDir, nodes: int | None) -> None:
        self.plan = plan
        self.state = state
        self.nodes = nodes
        self.events = Events(state.events_file)
        self.master_key = state.secret("gateway-master-key", "sk-sandbox-")
        self.pool_api_key = state.secret("pool-api-key")
        self.juicefs = juicefs.juicefs_binary()
        self.serverless = ServerlessEndpoint()
        self.regions = [Region(spec, self, i) for i, spec in enumerate(plan.regions)]
        self.ports = {k: free_port() for k in ("serverless", "autoscaling", "elbv2", "front", "control")}
        self.moto_process: subprocess.Popen[bytes] | None = None
        self.moto_url = ""
        self.front: Route53Front | None = None
        self.started_at = time.time()
        self.phase = "starting"
        self.problem: str | None = None

    @property
    def serverless_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['serverless']}"

    @property
    def autoscaling_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['autoscaling']}"

    @property
    def elbv2_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['elbv2']}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['front']}/v1"

    def region(self, name: str) -> Region:
        return next(r for r in self.regions if r.spec.region == name)

    def function_timeout(self, region: str) -> float:
        """The controller function's rendered timeout (what bounds one run)."""
        document = json.loads(self.state.plan_file.read_text())
        for resource in document["resources"]:
            if (
                resource["type"] == "aws:lambda/function:Function"
                and resource["name"] == f"controller-{region}-function"
            ):
                return float(resource["inputs"].get("timeout", 135))
        return 135.0

    def health_path(self, region: str) -> str:
        check = self.plan.dns.health_checks.get(region)
        return check.path if check is not None else "/fleet/region-health"

    def group(self, pool: str) -> tuple[Region, GroupEmulator]:
        for region in self.regions:
            if pool in region.groups:
                return region, region.groups[pool]
        raise KeyError(pool)

    # --- start and stop -------------------------------------------------------------------------------
    async def run(self, control: Any, stop: asyncio.Event, on_phase: Callable[[str], None]) -> None:
        from fleet.sandbox.tiny_model import write_tiny_llama

        os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        tasks: list[asyncio.Future[Any]] = []
        try:
            self.events.add("phase", phase="moto")
            self.moto_process, self.moto_url = await asyncio.to_thread(
                start_moto, None, self.state.logs / "moto.log"
            )
            lifecycle = Lifecycles(self)
            tasks.append(asyncio.ensure_future(serve_app(control, self.ports["control"])))
            tasks.append(asyncio.ensure_future(serve_app(self.serverless, self.ports["serverless"])))
            tasks.append(
                asyncio.ensure_future(
                    serve_app(AutoScalingApi(self.moto_url, lifecycle), self.ports["autoscaling"])
                )
            )
            elbv2 = Elbv2Api({lb.spec.arn: lb for r in self.regions for lb in r.lbs.values()})
            tasks.append(asyncio.ensure_future(serve_app(elbv2, self.ports["elbv2"])))
            for region in self.regions:
                for name, lb in region.lbs.items():
                    tasks.append(asyncio.ensure_future(lb.serve(region.lb_ports[name])))
            model_dir = self.state.root / "model"
            model_dir.mkdir(parents=True, exist_ok=True)
            model = model_dir / MODEL_FILE
            if not model.exists():
                await asyncio.to_thread(write_tiny_llama, model)
            for region in self.regions:
                on_phase(f"{region.spec.region}: Redis, the model store, the cloud's records")
                await asyncio.to_thread(region.gateway_redis.start)
                await asyncio.to_thread(region.declare_in_moto, self.nodes)
                await asyncio.to_thread(region.prepare_model_store, model)
                await asyncio.to_thread(region.start_gateway)
                region.start_pools()
            for region in self.regions:
                on_phase(f"{region.spec.region}: waiting for the gateway (LiteLLM) to serve")
                await asyncio.to_thread(region.wait_gateway)
                region.start_controller()
            self.front = Route53Front(
                self.plan.dns,
                {r.spec.region: ("127.0.0.1", r.gateway_port) for r in self.regions},
                {r.spec.region: r.health_url + self.health_path(r.spec.region) for r in self.regions},
                self.events,
            )
            tasks.append(asyncio.ensure_future(self.front.serve(self.ports["front"])))
            on_phase("waiting for every pool's nodes to be in service and a completion through the base URL")
            await asyncio.to_thread(self._wait_serving, stop)
            self.phase = "up"
            on_phase("up")
            self.events.add("phase", phase="up")
            await stop.wait()
        except Exception as exc:
            self.problem = f"{type(exc).__name__}: {exc}"
            self.phase = "failed"
            on_phase("failed")
            self.events.add("phase", phase="failed", problem=self.problem)
            raise
        finally:
            self.phase = "stopping"
            await asyncio.to_thread(self.stop)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for region in self.regions:
                for lb in region.lbs.values():
                    await lb.close()

    def _wait_serving(self, stop: asyncio.Event) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not stop.is_set():
            problems = []
            for region in self.regions:
                for pool in region.spec.pools:
                    group = region.groups[pool.name]
                    want = len([n for n in group.nodes.values() if not n.broken])
                    if region.healthy_targets(pool.name) < max(1, want):
                        problems.append(f"{pool.name}: {region.healthy_targets(pool.name)}/{want} in service")
            if not problems and self.probe() is None:
                return
            time.sleep(1.0)
        raise TimeoutError("the fleet did not serve within 10 minutes: see `fleet sandbox logs`")

    def probe(self) -> str | None:
        """A real completion through the base URL, own pools first: None when it served, else why not."""
        route = self.first_pool_route()
        if route is None:
            return None
        try:
            answer = httpx.post(
                self.base_url + "/completions",
                json={"model": route, "prompt": "ping", "max_tokens": 2},
                headers={"Authorization": f"Bearer {self.master_key}"},
                timeout=30,
            )
        except httpx.HTTPError as exc:
            return repr(exc)
        return None if answer.status_code == 200 else f"HTTP {answer.status_code}"

    def first_pool_route(self) -> str | None:
        for deployment in self.regions[0].gateway_config().get("model_list", []):
            if deployment["litellm_params"].get("order") == 1:
                return str(deployment["model_name"])
        return None

    def stop(self) -> None:
        for region in self.regions:
            with contextlib.suppress(Exception):
                region.stop()
        for mount in juicefs.mounts_under(self.state.root):
            juicefs.force_unmount(self.juicefs, mount)
        if self.moto_process is not None and self.moto_process.poll() is None:
            # SIGKILL, as the test kit stops it: moto keeps nothing worth a clean exit, and its clean exit
            # outlasted a 10 s wait on a busy machine.
            self.moto_process.kill()
            self.moto_process.wait()


class Lifecycles:
    """The emulated groups, as the Auto Scaling API front asks them (by group or by instance)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def _groups(self) -> list[GroupEmulator]:
        return [g for r in self.sandbox.regions for g in r.groups.values()]

    def lifecycle_state(self, instance_id: str) -> str | None:
        for group in self._groups():
            state = group.lifecycle_state(instance_id)
            if state is not None:
                return state
        return None

    def action_open(self, group: str, instance_id: str) -> bool:
        return any(g.action_open(group, instance_id) for g in self._groups())

    def complete(self, group: str, instance_id: str, result: str) -> None:
        for g in self._groups():
            if g.pool.group == group:
                g.complete(group, instance_id, result)

    def heartbeat(self, group: str, instance_id: str) -> None:
        for g in self._groups():
            if g.pool.group == group:
                g.heartbeat(instance_id)

    def scale_in(self, group: str, desired: int) -> bool:
        return any(g.scale_in(group, desired) for g in self._groups() if g.pool.group == group)

    def desired_capacity(self, group: str) -> int | None:
        for g in self._groups():
            if g.pool.group == group:
                return g.desired_target
        return None
