"""Auto Scaling's query API on loopback: moto (server mode) for what it implements, and what moto 5.2.5
lacks answered here: CompleteLifecycleAction, and (with a `Lifecycle`, the sandbox's emulated group)
termination lifecycle hooks.

CompleteLifecycleAction is read and checked with botocore's own service model: the members the operation
takes, the required ones, their lengths and patterns (botocore's parameter validator plus the model's
patterns), and a SigV4 Authorization header scoped to the autoscaling service. The hook and the instance
are checked against moto's state (the group has that termination hook, the instance is in that group) and,
with a `Lifecycle`, against the actions it holds open. The answer is the operation's XML result shape, or
AWS's ErrorResponse with ValidationError.

With a `Lifecycle`: a SetDesiredCapacity or UpdateAutoScalingGroup that lowers a group's desired capacity
is the emulated group's to carry out (it drains the instances it picks through the termination hook,
which moto would terminate at once); instances it holds in Terminating:Wait are reported so in
DescribeAutoScalingGroups and DescribeAutoScalingInstances. Every other action is passed to moto
unchanged."""

from __future__ import annotations

import asyncio
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

import boto3
import botocore.session
import httpx
from botocore.validate import ParamValidator

from fleet.sandbox.asgi import Receive, Scope, Send, header, read_body, respond

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
CREDENTIAL = re.compile(r"Credential=([^/]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


class Lifecycle(Protocol):
    """The emulated group's side of the API (fleet.sandbox.group)."""

    def lifecycle_state(self, instance_id: str) -> str | None:
        """Its own state for an instance (e.g. Terminating:Wait), or None where moto's stands."""
        ...

    def action_open(self, group: str, instance_id: str) -> bool: ...

    def complete(self, group: str, instance_id: str, result: str) -> None: ...

    def heartbeat(self, group: str, instance_id: str) -> None:
        """RecordLifecycleActionHeartbeat on an open action: its hook's timeout starts again."""
        ...

    def scale_in(self, group: str, desired: int) -> bool:
        """Lower `group` to `desired` through its termination hook; False when it is not lower;
        ValueError (its message Auto Scaling's) when it is below the group's minimum."""
        ...

    def desired_capacity(self, group: str) -> int | None:
        """The desired capacity a scale-in set while it waits (on protected instances, on drains), or
        None where moto's stands."""
        ...


def python_pattern(pattern: str) -> str:
    """The model's patterns are Java's: astral characters as a surrogate-pair range."""
    return pattern.replace("\\uD800\\uDC00-\\uDBFF\\uDFFF", "\\U00010000-\\U0010FFFF")


def request_problem(operation: Any, params: dict[str, str], authorization: str) -> str | None:
    """What AWS would refuse in a lifecycle call, by botocore's model of `operation`: a request not signed
    for autoscaling with SigV4, members the operation does not take or lacks, values outside their
    patterns and lengths, neither an instance nor a token, a result other than CONTINUE or ABANDON."""
    credential = CREDENTIAL.search(authorization)
    if not authorization.startswith("AWS4-HMAC-SHA256 ") or credential is None:
        return "request is not signed with SigV4"
    if credential.group(4) != operation.service_model.signing_name:
        return f"signed for {credential.group(4)}, not autoscaling"
    input_shape: Any = operation.input_shape  # botocore's shapes are typed as cached properties
    members = input_shape.members
    given = {k: v for k, v in params.items() if k not in ("Action", "Version")}
    unknown = sorted(set(given) - set(members))
    if unknown:
        return f"unknown parameter(s) {', '.join(unknown)}"
    report = ParamValidator().validate(given, input_shape)
    if report.has_errors():
        return report.generate_report()
    for name, value in given.items():
        pattern = members[name].metadata.get("pattern")
        limit = members[name].metadata.get("max")
        if pattern and not re.fullmatch(python_pattern(pattern), value):
            return f"{name} {value!r} does not match {pattern}"
        if limit and len(value) > limit:
            return f"{name} is longer than {limit}"
    if "InstanceId" not in given and "LifecycleActionToken" not in given:
        return "either InstanceId or LifecycleActionToken is required"
    result = given.get("LifecycleActionResult", "CONTINUE")  # a heartbeat carries none
    if result not in ("CONTINUE", "ABANDON"):
        return f"LifecycleActionResult {result!r}: CONTINUE or ABANDON"
    return None


@dataclass(frozen=True)
class CompletedAction:
    hook: str
    group: str
    instance: str | None
    result: str
    access_key: str
    region: str


class AutoScalingApi:
    def __init__(self, moto_url: str, lifecycle: Lifecycle | None = None) -> None:
        self.moto_url = moto_url
        self.lifecycle = lifecycle
        model = botocore.session.get_session().get_service_model("autoscaling")
        self.namespace = model.metadata["xmlNamespace"]
        self.operation = model.operation_model("CompleteLifecycleAction")
        self.heartbeat_operation = model.operation_model("RecordLifecycleActionHeartbeat")
        self.completed: list[CompletedAction] = []
        self.refused: list[str] = []
        self._moto: dict[str, Any] = {}  # by region: the one the request is signed for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        params = dict(parse_qsl(body.decode()))
        action = params.get("Action")
        if action == self.operation.name:
            await self._complete(scope, params, send)
        elif self.lifecycle is not None and action == self.heartbeat_operation.name:
            await self._heartbeat(scope, params, send)
        elif self.lifecycle is not None and action in ("SetDesiredCapacity", "UpdateAutoScalingGroup"):
            try:
                lower = "DesiredCapacity" in params and await asyncio.to_thread(
                    self.lifecycle.scale_in, params["AutoScalingGroupName"], int(params["DesiredCapacity"])
                )
            except ValueError as exc:  # below the group's minimum: Auto Scaling's ValidationError
                await self._error(send, str(exc))
                return
            if lower and action == "SetDesiredCapacity":
                await self._empty_result(send, action)
            elif lower:  # the other settings still go to moto, without the desired capacity
                kept = {k: v for k, v in params.items() if k != "DesiredCapacity"}
                await self._forward(scope, "&".join(f"{k}={v}" for k, v in kept.items()).encode(), send)
            else:
                await self._forward(scope, body, send)
        elif self.lifecycle is not None and action in (
            "DescribeAutoScalingGroups",
            "DescribeAutoScalingInstances",
        ):
            await self._forward(scope, body, send, rewrite=True)
        else:
            await self._forward(scope, body, send)

    async def _refused(self, operation: Any, scope: Scope, params: dict[str, str], send: Send) -> bool:
        """Answer AWS's ValidationError where it would refuse the request or the instance's action."""
        authorization = header(scope, "authorization") or ""
        problem = request_problem(operation, params, authorization)
        if problem is None:
            problem = await asyncio.to_thread(self._state_problem, params, authorization)
        if problem is None:
            return False
        self.refused.append(problem)
        await self._error(send, problem)
        return True

    async def _complete(self, scope: Scope, params: dict[str, str], send: Send) -> None:
        if await self._refused(self.operation, scope, params, send):
            return
        credential = CREDENTIAL.search(header(scope, "authorization") or "")
        assert credential is not None
        completed = CompletedAction(
            hook=params["LifecycleHookName"],
            group=params["AutoScalingGroupName"],
            instance=params.get("InstanceId"),
            result=params["LifecycleActionResult"],
            access_key=credential.group(1),
            region=credential.group(3),
        )
        self.completed.append(completed)
        if self.lifecycle is not None and completed.instance is not None:
            await asyncio.to_thread(
                self.lifecycle.complete, completed.group, completed.instance, completed.result
            )
        await self._lifecycle_result(send, self.operation)

    async def _heartbeat(self, scope: Scope, params: dict[str, str], send: Send) -> None:
        assert self.lifecycle is not None
        if await self._refused(self.heartbeat_operation, scope, params, send):
            return
        group, instance = params["AutoScalingGroupName"], params["InstanceId"]
        await asyncio.to_thread(self.lifecycle.heartbeat, group, instance)
        await self._lifecycle_result(send, self.heartbeat_operation)

    def _client(self, authorization: str | None) -> Any:
        """moto's Auto Scaling in the region the request is signed for (groups are regional)."""
        credential = CREDENTIAL.search(authorization or "")
        region = credential.group(3) if credential else "us-east-1"
        if region not in self._moto:
            self._moto[region] = moto_client("autoscaling", self.moto_url, region)
        return self._moto[region]

    def _state_problem(self, params: dict[str, str], authorization: str | None) -> str | None:
        group, hook, instance = (
            params["AutoScalingGroupName"],
            params["LifecycleHookName"],
            params.get("InstanceId"),
        )
        moto = self._client(authorization)
        hooks = moto.describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"]
        transitions = (LAUNCHING, TERMINATING) if self.lifecycle is not None else (TERMINATING,)
        if not any(h["LifecycleHookName"] == hook and h["LifecycleTransition"] in transitions for h in hooks):
            return f"No lifecycle hook {hook} on group {group}"
        if self.lifecycle is not None:
            if instance is None or not self.lifecycle.action_open(group, instance):
                return f"No active Lifecycle Action found with instance ID {instance}"
            return None
        found = moto.describe_auto_scaling_instances(InstanceIds=[instance] if instance else [])
        groups = {i["AutoScalingGroupName"] for i in found["AutoScalingInstances"]}
        if instance and groups != {group}:
            return f"No active Lifecycle Action found with instance ID {instance}"
        return None

    async def _lifecycle_result(self, send: Send, operation: Any) -> None:
        """A lifecycle call's answer: its empty result element, named as botocore's model wraps it."""
        wrapper = operation.output_shape.serialization["resultWrapper"]
        await self._empty_result(send, str(operation.name), wrapper)

    async def _empty_result(self, send: Send, operation: str, wrapper: str | None = None) -> None:
        result = f"<{wrapper}/>" if wrapper else ""
        xml = (
            f'<{operation}Response xmlns="{self.namespace}">{result}'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{operation}Response>"
        )
        await respond(send, 200, xml, "text/xml")

    async def _error(self, send: Send, message: str) -> None:
        xml = (
            f'<ErrorResponse xmlns="{self.namespace}"><Error><Type>Sender</Type><Code>ValidationError</Code>'
            f"<Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
        await respond(send, 400, xml, "text/xml")

    async def _forward(self, scope: Scope, body: bytes, send: Send, rewrite: bool = False) -> None:
        # The body may have changed: its length is recomputed, never copied.
        skip = (b"host", b"content-length")
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.lower() not in skip}
        async with httpx.AsyncClient() as client:
            answer = await client.request(
                scope["method"], self.moto_url + scope["path"], content=body, headers=headers
            )
        content = answer.content
        if rewrite and answer.status_code == 200 and self.lifecycle is not None:
            content = self._with_lifecycle_states(content)
        await respond(send, answer.status_code, content, answer.headers.get("content-type"))

    def _with_lifecycle_states(self, xml: bytes) -> bytes:
        """moto's answer with the emulated group's own lifecycle states and pending desired capacity in
        place of moto's."""
        assert self.lifecycle is not None
        ET.register_namespace("", self.namespace)
        root = ET.fromstring(xml)
        ns = {"a": self.namespace}
        for member in root.iter(f"{{{self.namespace}}}member"):
            name, desired = member.find("a:AutoScalingGroupName", ns), member.find("a:DesiredCapacity", ns)
            if name is not None and name.text and desired is not None:
                wanted = self.lifecycle.desired_capacity(name.text)
                if wanted is not None:
                    desired.text = str(wanted)
            instance = member.find("a:InstanceId", ns)
            state = member.find("a:LifecycleState", ns)
            if instance is None or state is None or instance.text is None:
                continue
            own = self.lifecycle.lifecycle_state(instance.text)
            if own is not None:
                state.text = own
        return ET.tostring(root, encoding="utf-8", xml_declaration=False)


def moto_client(service: str, moto_url: str, region: str = "us-east-1") -> Any:
    """A boto3 client for moto itself (set-up and checks)."""
    return boto3.client(
        service,
        endpoint_url=moto_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
