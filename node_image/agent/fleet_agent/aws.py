"""The AWS API calls the agent makes as its instance: CompleteLifecycleAction once drained, and
GetSecretValue before it starts. botocore signs them with the instance role's credentials, which it reads
from the same metadata service the agent watches (`preemption.aws_imds_url`); the instance id and the
region come from there too. botocore is synchronous: each call runs in a thread.

AWS_ENDPOINT_URL_AUTO_SCALING / AWS_ENDPOINT_URL_SECRETS_MANAGER (botocore's own settings) point the calls
at a VPC endpoint, or at a local stand-in in tests.
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
from fleet_agent.config import AgentConfig, AwsLifecycleHook
from fleet_agent.drain import DrainedEvent
from fleet_agent.imds import ImdsSession

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


class AwsLifecycleDrainedHook:
    """Tells Auto Scaling the instance is drained: CompleteLifecycleAction for this instance (IMDS), on the
    configured hook and group, with the configured result. The instance role may do this for its own group
    only. Until the group has an action open for the instance (after a spot notice it starts terminating
    the node within moments), the call is refused with ValidationError and asked again until the deadline;
    transient errors are botocore's to retry (`attempts`)."""

    def __init__(self, config: AwsLifecycleHook, imds: ImdsSession) -> None:
        self.config = config
        self.imds = imds
        self.name = f"aws-lifecycle {config.group_name}/{config.hook_name}"

    async def run(self, event: DrainedEvent, deadline: float) -> None:
        identity = await self.imds.identity()
        hook = self.config
        client = await asyncio.to_thread(
            aws_client,
            "autoscaling",
            identity.region,
            self.imds.base,
            max(min(hook.timeout_s, deadline - time.time()), 0.1),
            hook.attempts,
        )
        while True:
            try:
                await asyncio.to_thread(
                    client.complete_lifecycle_action,
                    LifecycleHookName=hook.hook_name,
                    AutoScalingGroupName=hook.group_name,
                    LifecycleActionResult=hook.result,
                    InstanceId=identity.instance_id,
                )
            except ClientError as exc:
                error = exc.response.get("Error", {})
                problem = f"{error.get('Code')}: {error.get('Message')}"
                if (
                    error.get("Code") != "ValidationError"
                    or deadline - time.time() <= c.LIFECYCLE_ACTION_RETRY_S
                ):
                    raise RuntimeError(problem) from None  # refused (AccessDenied ...), or out of time
                log.warning("drained-hook %s: %s; asking again", self.name, problem)
                await asyncio.sleep(c.LIFECYCLE_ACTION_RETRY_S)
            except BotoCoreError as exc:
                raise RuntimeError(repr(exc)) from None  # botocore has already retried what is retryable
            else:
                log.info(
                    "lifecycle action completed: %s %s for %s (%s)",
                    hook.group_name,
                    hook.hook_name,
                    identity.instance_id,
                    hook.result,
                )
                return


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
