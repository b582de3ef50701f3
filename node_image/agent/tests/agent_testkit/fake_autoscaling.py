"""Auto Scaling's query API on loopback: moto (server mode) for what it implements, and
CompleteLifecycleAction and RecordLifecycleActionHeartbeat, which moto 5.2.5 lacks, answered here.

The request is read and checked with botocore's own service model: the members the operation takes, the
required ones, their lengths and patterns (botocore's parameter validator plus the model's patterns), and
a SigV4 Authorization header scoped to the autoscaling service. As in AWS, an action must be open: the
test opens one as the group would (`open_action`: an instance of the group entering Pending:Wait or
Terminating:Wait for one of its hooks, checked against moto's state); completing it closes it, and a
call for an instance with no open action on that hook is refused. The answer is the operation's XML
result shape, or AWS's ErrorResponse with ValidationError. Every other action is passed to moto unchanged.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import boto3
import botocore.session
import httpx

from fleet.sandbox.autoscaling_api import (
    CREDENTIAL,
    LAUNCHING,
    TERMINATING,
    CompletedAction,
    request_problem,
)

from .asgi import Receive, Scope, Send, header, read_body, respond

OPERATIONS = ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat")
__all__ = ["LAUNCHING", "TERMINATING", "CompletedAction", "FakeAutoScaling", "Heartbeat"]


@dataclass(frozen=True)
class Heartbeat:
    hook: str
    group: str
    instance: str | None
    at: float


class FakeAutoScaling:
    def __init__(self, moto_url: str) -> None:
        self.moto_url = moto_url
        model = botocore.session.get_session().get_service_model("autoscaling")
        self.namespace = model.metadata["xmlNamespace"]
        self.operations = {name: model.operation_model(name) for name in OPERATIONS}
        self.completed: list[CompletedAction] = []
        self.heartbeats: list[Heartbeat] = []
        self.refused: list[str] = []
        # (group, hook, instance) -> the hook's transition, while the group waits on the action.
        self.open: dict[tuple[str, str, str], str] = {}
        self._moto = moto_client("autoscaling", moto_url)

    def open_action(self, group: str, hook: str, instance: str) -> str:
        """The group holds `instance` for `hook` (Pending:Wait or Terminating:Wait); returns the transition."""
        hooks = self._moto.describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"]
        transitions = {h["LifecycleHookName"]: h["LifecycleTransition"] for h in hooks}
        assert hook in transitions, f"group {group} has no lifecycle hook {hook}"
        found = self._moto.describe_auto_scaling_instances(InstanceIds=[instance])["AutoScalingInstances"]
        assert [i["AutoScalingGroupName"] for i in found] == [group], f"{instance} is not in group {group}"
        self.open[(group, hook, instance)] = transitions[hook]
        return transitions[hook]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        params = dict(parse_qsl(body.decode()))
        operation = self.operations.get(params.get("Action", ""))
        if operation is None:
            await self._forward(scope, body, send)
            return
        authorization = header(scope, "authorization") or ""
        problem = request_problem(operation, params, authorization)
        if problem is None:
            problem = self._state_problem(params)
        if problem is not None:
            self.refused.append(problem)
            await self._error(send, problem)
            return
        credential = CREDENTIAL.search(authorization)
        assert credential is not None
        hook, group, instance = (
            params["LifecycleHookName"],
            params["AutoScalingGroupName"],
            params.get("InstanceId"),
        )
        if operation.name == "CompleteLifecycleAction":
            self.open.pop((group, hook, instance or ""))
            self.completed.append(
                CompletedAction(
                    hook=hook,
                    group=group,
                    instance=instance,
                    result=params["LifecycleActionResult"],
                    access_key=credential.group(1),
                    region=credential.group(3),
                )
            )
        else:
            self.heartbeats.append(Heartbeat(hook, group, instance, time.time()))
        result: str = operation.output_shape.serialization["resultWrapper"]  # type: ignore[union-attr]
        xml = (
            f'<{operation.name}Response xmlns="{self.namespace}">'
            f"<{result}/><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            f"</{operation.name}Response>"
        )
        await respond(send, 200, xml, "text/xml")

    def _state_problem(self, params: dict[str, str]) -> str | None:
        instance = params.get("InstanceId")
        if instance is None:
            return "this fake names actions by InstanceId only"
        if (params["AutoScalingGroupName"], params["LifecycleHookName"], instance) not in self.open:
            return f"No active Lifecycle Action found with instance ID {instance}"
        return None

    async def _error(self, send: Send, message: str) -> None:
        xml = (
            f'<ErrorResponse xmlns="{self.namespace}"><Error><Type>Sender</Type><Code>ValidationError</Code>'
            f"<Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
        await respond(send, 400, xml, "text/xml")

    async def _forward(self, scope: Scope, body: bytes, send: Send) -> None:
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.lower() not in (b"host",)}
        async with httpx.AsyncClient() as client:
            answer = await client.request(
                scope["method"], self.moto_url + scope["path"], content=body, headers=headers
            )
        await respond(send, answer.status_code, answer.content, answer.headers.get("content-type"))


def moto_client(service: str, moto_url: str) -> Any:
    """A boto3 client for moto itself (set-up and checks in tests)."""
    return boto3.client(
        service,
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def moto_group(moto_url: str, name: str, size: int, target_groups: Sequence[str] = ()) -> list[str]:
    """An Auto Scaling group of `size` instances in moto (a launch template of its own), registered in
    `target_groups` (moto registers them); its instance ids."""
    ec2, autoscaling = moto_client("ec2", moto_url), moto_client("autoscaling", moto_url)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": image, "InstanceType": "g6.xlarge"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
        MinSize=0,
        MaxSize=size,
        DesiredCapacity=size,
        AvailabilityZones=["us-east-1a"],
        TargetGroupARNs=list(target_groups),
    )
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return sorted(i["InstanceId"] for i in group["Instances"])
