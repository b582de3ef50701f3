"""The AWS API calls the agent makes as its instance: the Auto Scaling lifecycle actions (CONTINUE once the
node is ready at launch; once drained at the end, with heartbeats while it works), DeregisterTargets on its
pool's target groups when it leaves, and GetSecretValue before it starts. botocore signs them with the
instance role's credentials, which it reads from the same metadata service the agent watches
(`preemption.aws_imds_url`); the instance id and the region come from there too. botocore is synchronous:
each call runs in a thread.

AWS_ENDPOINT_URL_AUTO_SCALING / AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2 / AWS_ENDPOINT_URL_SECRETS_MANAGER
(botocore's own settings) point the calls at a VPC endpoint, or at a local stand-in in tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from fleet_agent import constants as c
from fleet_agent.config import AgentConfig, AwsHook, AwsLifecycleHook, LoadBalancerConfig
from fleet_agent.drain import DrainedEvent
from fleet_agent.imds import ImdsSession, InstanceIdentity

log = logging.getLogger("fleet_agent.aws")


def aws_client(service: str, region: str, imds_url: str, timeout_s: float, attempts: int = 3) -> Any:
    """A botocore client whose credentials chain ends at the instance role behind `imds_url`."""
    session = botocore.session.Session()
    session.set_config_variable("ec2_metadata_service_endpoint", imds_url.rstrip("/") + "/")
    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"mode": "standard", "max_attempts": attempts},
    )
    return session.create_client(service, region_name=region, config=config)


def _problem(exc: ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return str(error.get("Code")), f"{error.get('Code')}: {error.get('Message')}"


class LifecycleAction:
    """The lifecycle action a hook of the node's group holds it in (Pending:Wait at launch,
    Terminating:Wait at the end): kept open with heartbeats while the agent works, then completed. The
    instance role may do this for its own group only."""

    def __init__(self, hook: AwsHook, imds: ImdsSession) -> None:
        self.hook = hook
        self.imds = imds
        self.name = f"aws-lifecycle {hook.group_name}/{hook.hook_name}"
        self.heartbeats = 0
        self._client: Any = None
        self._identity: InstanceIdentity | None = None

    async def _connect(self, timeout_s: float) -> tuple[Any, InstanceIdentity]:
        if self._identity is None:
            self._identity = await self.imds.identity()
        if self._client is None:
            self._client = await asyncio.to_thread(
                aws_client,
                "autoscaling",
                self._identity.region,
                self.imds.base,
                max(timeout_s, 0.1),
                self.hook.attempts,
            )
        return self._client, self._identity

    def _target(self, identity: InstanceIdentity) -> dict[str, str]:
        return {
            "LifecycleHookName": self.hook.hook_name,
            "AutoScalingGroupName": self.hook.group_name,
            "InstanceId": identity.instance_id,
        }

    async def complete(self, result: str, deadline: float, *, wait_for_action: bool) -> None:
        """CompleteLifecycleAction with `result`; raises RuntimeError when refused. With `wait_for_action`,
        a refusal because the group has no action open yet (a spot notice reaches the node and the group at
        about the same time) is asked again until the deadline; transient errors are botocore's to retry."""
        client, identity = await self._connect(min(self.hook.timeout_s, deadline - time.time()))
        while True:
            try:
                await asyncio.to_thread(
                    client.complete_lifecycle_action, LifecycleActionResult=result, **self._target(identity)
                )
            except ClientError as exc:
                code, problem = _problem(exc)
                if (
                    not wait_for_action
                    or code != "ValidationError"
                    or deadline - time.time() <= c.LIFECYCLE_ACTION_RETRY_S
                ):
                    raise RuntimeError(problem) from None  # refused (AccessDenied ...), or out of time
                log.warning("%s: %s; asking again", self.name, problem)
                await asyncio.sleep(c.LIFECYCLE_ACTION_RETRY_S)
            except BotoCoreError as exc:
                raise RuntimeError(repr(exc)) from None  # botocore has already retried what is retryable
            else:
                log.info(
                    "lifecycle action completed: %s for %s (%s)", self.name, identity.instance_id, result
                )
                return

    async def keep_open(self) -> None:
        """RecordLifecycleActionHeartbeat every share of the hook's heartbeat timeout, until cancelled: each
        restarts the group's wait (up to its global timeout). A refused heartbeat is logged and tried again
        at the next one: the action may not be open yet."""
        timeout_s = self.hook.heartbeat_timeout_s
        if timeout_s is None:
            return
        period = timeout_s * c.LIFECYCLE_HEARTBEAT_SHARE
        while True:
            await asyncio.sleep(period)
            try:
                client, identity = await self._connect(self.hook.timeout_s)
                await asyncio.to_thread(client.record_lifecycle_action_heartbeat, **self._target(identity))
            except ClientError as exc:
                log.warning("%s: heartbeat refused: %s", self.name, _problem(exc)[1])
            except Exception as exc:  # IMDS or the network: the next heartbeat may pass
                log.warning("%s: heartbeat failed: %r", self.name, exc)
            else:
                self.heartbeats += 1
                log.info(
                    "%s: heartbeat %d (the group waits another %d s)", self.name, self.heartbeats, timeout_s
                )


class AwsLifecycleDrainedHook:
    """Tells Auto Scaling the instance is drained: CompleteLifecycleAction for this instance (IMDS), on the
    configured hook and group, with the configured result, so the group terminates the node at once. While
    the drain runs, heartbeats keep the action open (a drain may last as long as a request)."""

    def __init__(self, config: AwsLifecycleHook, imds: ImdsSession) -> None:
        self.config = config
        self.action = LifecycleAction(config, imds)
        self.name = self.action.name

    async def hold(self) -> None:
        await self.action.keep_open()

    async def run(self, event: DrainedEvent, deadline: float) -> None:
        await self.action.complete(self.config.result, deadline, wait_for_action=True)


class TargetGroups:
    """The ELBv2 target groups the node is registered in, as an instance target: DeregisterTargets takes it
    out of each (no new requests; those in flight may finish for the group's deregistration delay). The
    instance role may deregister from its own pool's groups only."""

    def __init__(self, config: LoadBalancerConfig, port: int, imds: ImdsSession, timeout_s: float) -> None:
        self.arns = config.aws_target_group_arns
        self.port = config.target_port or port
        self.imds = imds
        self.timeout_s = timeout_s

    async def deregister(self) -> list[dict[str, Any]]:
        """One result per target group; never raises (the caller keeps serving either way)."""
        try:
            identity = await self.imds.identity()
        except Exception as exc:
            return [
                {"target_group": arn, "ok": False, "detail": f"no identity: {exc!r}"} for arn in self.arns
            ]
        results = await asyncio.gather(*(self._deregister(arn, identity.instance_id) for arn in self.arns))
        return list(results)

    async def _deregister(self, arn: str, instance_id: str) -> dict[str, Any]:
        region = arn.split(":")[3]
        target = {"Id": instance_id, "Port": self.port}
        try:
            client = await asyncio.to_thread(
                aws_client, "elbv2", region, self.imds.base, self.timeout_s, c.HOOK_ATTEMPTS
            )
            await asyncio.to_thread(client.deregister_targets, TargetGroupArn=arn, Targets=[target])
        except ClientError as exc:
            code, problem = _problem(exc)
            if code == "InvalidTarget":  # not registered (any more): the group took it out already
                return {"target_group": arn, "ok": True, "detail": f"not registered ({problem})"}
            return {"target_group": arn, "ok": False, "detail": problem}
        except BotoCoreError as exc:
            return {"target_group": arn, "ok": False, "detail": repr(exc)}
        log.info("deregistered %s:%d from %s", instance_id, self.port, arn)
        return {"target_group": arn, "ok": True, "detail": "deregistered"}


def _secret_document(secret_id: str, imds_url: str) -> dict[str, Any]:
    """A Secrets Manager secret holding a JSON object, read with the instance role (region: the ARN's)."""
    region = secret_id.split(":")[3]
    client = aws_client("secretsmanager", region, imds_url, c.HOOK_TIMEOUT_S)
    try:
        document = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
    except (ClientError, BotoCoreError) as exc:
        raise RuntimeError(f"secret {secret_id}: {exc}") from None
    except (KeyError, json.JSONDecodeError):
        raise RuntimeError(f"secret {secret_id}: not a JSON object") from None
    if not isinstance(document, dict):
        raise RuntimeError(f"secret {secret_id}: not a JSON object")
    return document


def secret_value(secret_id: str, key: str, imds_url: str) -> str:
    """One key of a secret (the model store's metadata password, for `mount-store`)."""
    document = _secret_document(secret_id, imds_url)
    if key not in document:
        raise RuntimeError(f"secret {secret_id}: no key {key!r}")
    return str(document[key])


def fetch_secrets(config: AgentConfig) -> list[Path]:
    """Write `secrets.files` from the Secrets Manager secret (JSON object); returns the files written."""
    secrets = config.secrets
    if secrets.aws_secret_id is None:
        return []
    document = _secret_document(secrets.aws_secret_id, str(config.preemption.aws_imds_url))
    written = []
    for key, path in secrets.files.items():
        if key not in document:
            raise RuntimeError(f"secret {secrets.aws_secret_id}: no key {key!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 from the start: the value never sits in a file others can read.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(str(document[key]) + "\n")
        written.append(path)
    return written
