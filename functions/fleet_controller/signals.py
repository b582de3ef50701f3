"""Reading the world: heartbeats from Redis, the agents over HTTP, Auto Scaling, EC2 and the load
balancer through botocore clients; and turning one node's readings into `decision.Signals`.

Every reader raises on failure; the handler turns a failed reader into "unknown", which the decision
table answers with no action at all.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .decision import Cloud, Lb, Pull, Push, Signals
from .resp import Redis

READINESS_PATH = "/readyz"
STATUS_PATH = "/status"
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
# Auto Scaling lifecycle states in which the group is taking the instance out of service.
_LEAVING_STATES = ("Terminating", "Detaching", "Detached", "EnteringStandby", "Standby", "Warmed")
_GONE_EC2_STATES = frozenset({"shutting-down", "terminated", "stopped"})
_LEAVING_EC2_STATES = frozenset({"stopping"})
_LB_STATES = {"healthy": Lb.HEALTHY, "unhealthy": Lb.UNHEALTHY, "draining": Lb.DRAINING}
_CHUNK = 100  # ids per MGET / EC2 filter


# --- heartbeats -------------------------------------------------------------------------------------


def node_key(prefix: str, region: str, node_id: str) -> str:
    """The agent's record key (fleet_agent.heartbeat.node_key)."""
    return f"{prefix}:{region}:node:{node_id}"


def index_key(prefix: str, region: str) -> str:
    """The region's sorted set of nodes by last beat (fleet_agent.heartbeat.index_key)."""
    return f"{prefix}:{region}:nodes"


def node_id_of(name: str) -> str:
    """Agents name themselves after the host: the instance id, perhaps with a domain after it."""
    return name.split(".", 1)[0]


@dataclass(frozen=True)
class Heartbeats:
    records: Mapping[str, Mapping[str, Any]]  # node id -> its live record
    index: Mapping[str, float]  # node id -> its last beat (epoch seconds)


def read_heartbeats(redis: Redis, prefix: str, region: str, also: Iterable[str] = ()) -> Heartbeats:
    """Every node in the region's index, and the records of those and of `also` (the groups' nodes)."""
    pairs = redis.call("ZRANGE", index_key(prefix, region), 0, -1, "WITHSCORES")
    assert isinstance(pairs, list)
    index: dict[str, float] = {}
    for name, score in zip(pairs[::2], pairs[1::2], strict=True):
        assert isinstance(name, bytes) and isinstance(score, bytes)
        index[node_id_of(name.decode())] = float(score)
    ids = sorted(set(index) | set(also))
    records: dict[str, Mapping[str, Any]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        values = redis.call("MGET", *(node_key(prefix, region, i) for i in chunk))
        assert isinstance(values, list)
        for node_id, value in zip(chunk, values, strict=True):
            if isinstance(value, bytes):
                try:
                    records[node_id] = json.loads(value)
                except ValueError:
                    records[node_id] = {"state": None}
    return Heartbeats(records, index)


def forget_nodes(redis: Redis, prefix: str, region: str, node_ids: Sequence[str]) -> None:
    if node_ids:
        redis.call("ZREM", index_key(prefix, region), *node_ids)
        redis.call("DEL", *(node_key(prefix, region, i) for i in node_ids))


# --- the agents ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollResult:
    pull: Pull
    status: int | None = None
    state: str | None = None
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.status == 200


def poll(host: str, port: int, timeout: float, path: str = READINESS_PATH) -> PollResult:
    """GET the agent's /readyz. Refused: nothing listens (the host answered with a reset). Hung: no
    answer in time, from the agent or the host (a stopped process still completes the handshake)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "fleet-controller"})
        response = connection.getresponse()
        body = response.read(65536)
    except (ConnectionRefusedError, ConnectionResetError) as exc:
        return PollResult(Pull.REFUSED, detail=type(exc).__name__)
    except TimeoutError:
        return PollResult(Pull.HUNG, detail=f"no answer in {timeout:g} s")
    except (OSError, http.client.HTTPException) as exc:
        return PollResult(Pull.HUNG, detail=f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()
    state = None
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("state"), str):
            state = parsed["state"]
    except ValueError:
        pass
    return PollResult(Pull.ANSWERS, response.status, state, f"HTTP {response.status}")


def poll_all(
    targets: Mapping[str, tuple[str, int] | None], timeout: float, workers: int = 16
) -> dict[str, PollResult]:
    """Every node at once (threads), so a tick takes one timeout however many nodes hang."""
    results = {node: PollResult(Pull.UNKNOWN, detail="no address") for node, t in targets.items() if not t}
    reachable = {node: t for node, t in targets.items() if t}
    if reachable:
        with ThreadPoolExecutor(max_workers=min(workers, len(reachable))) as pool:
            futures = {node: pool.submit(poll, *address, timeout) for node, address in reachable.items()}
            results |= {node: future.result() for node, future in futures.items()}
    return results


def agent_status(host: str, port: int, timeout: float) -> dict[str, Any] | None:
    """The agent's /status, for the log line of a node whose signals disagree."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", STATUS_PATH)
        response = connection.getresponse()
        status = json.loads(response.read(1 << 20))
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    return status if isinstance(status, dict) else None


# --- the cloud ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupInstance:
    instance_id: str
    lifecycle_state: str
    health_status: str


@dataclass(frozen=True)
class Group:
    name: str
    desired: int
    min_size: int
    max_size: int
    instances: tuple[GroupInstance, ...]


@dataclass(frozen=True)
class Instance:
    instance_id: str
    state: str
    private_ip: str | None
    launched_at: float | None
    tags: Mapping[str, str] = field(default_factory=dict)


def read_groups(autoscaling: Any, names: Sequence[str]) -> dict[str, Group]:
    groups: dict[str, Group] = {}
    paginator = autoscaling.get_paginator("describe_auto_scaling_groups")
    for page in paginator.paginate(AutoScalingGroupNames=list(names)):
        for g in page["AutoScalingGroups"]:
            groups[g["AutoScalingGroupName"]] = Group(
                name=g["AutoScalingGroupName"],
                desired=int(g["DesiredCapacity"]),
                min_size=int(g["MinSize"]),
                max_size=int(g["MaxSize"]),
                instances=tuple(
                    GroupInstance(i["InstanceId"], i["LifecycleState"], i["HealthStatus"])
                    for i in g.get("Instances", [])
                ),
            )
    missing = set(names) - set(groups)
    if missing:
        raise LookupError(f"Auto Scaling groups not found: {', '.join(sorted(missing))}")
    return groups


def _instance(raw: Mapping[str, Any]) -> Instance:
    launched = raw.get("LaunchTime")
    return Instance(
        instance_id=raw["InstanceId"],
        state=raw["State"]["Name"],
        private_ip=raw.get("PrivateIpAddress"),
        launched_at=launched.timestamp() if launched is not None else None,
        tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
    )


def _describe(ec2: Any, filters: list[dict[str, Any]]) -> list[Instance]:
    found = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            found += [_instance(raw) for raw in reservation["Instances"]]
    return found


def read_instances(ec2: Any, ids: Iterable[str]) -> dict[str, Instance]:
    """The instances that exist among `ids` (a filter, not InstanceIds: an id EC2 no longer knows is
    simply absent rather than failing the whole call)."""
    wanted = sorted({i for i in ids if INSTANCE_ID.match(i)})
    found: dict[str, Instance] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        found |= {i.instance_id: i for i in _describe(ec2, [{"Name": "instance-id", "Values": chunk}])}
    return found


def scan_fleet_instances(ec2: Any, tags: Mapping[str, str], tag_key: str) -> list[Instance]:
    """Every live instance carrying the fleet's tags and a pool tag, in this region."""
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(tags.items())]
    filters += [
        {"Name": "tag-key", "Values": [tag_key]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
    ]
    return _describe(ec2, filters)


def read_target_health(elbv2: Any, target_group_arn: str) -> dict[str, Lb]:
    answer = elbv2.describe_target_health(TargetGroupArn=target_group_arn)
    health: dict[str, Lb] = {}
    for description in answer["TargetHealthDescriptions"]:
        state = description.get("TargetHealth", {}).get("State", "")
        health[description["Target"]["Id"]] = _LB_STATES.get(state, Lb.UNKNOWN)
    return health


# --- one node's signals --------------------------------------------------------------------------------


def cloud_state(
    member: GroupInstance | None, instance: Instance | None, now: float, boot_grace_s: float
) -> Cloud:
    if instance is None or instance.state in _GONE_EC2_STATES:
        return Cloud.GONE
    if instance.state in _LEAVING_EC2_STATES:
        return Cloud.LEAVING
    if member is not None:
        if member.health_status.lower() == "unhealthy" or member.lifecycle_state.startswith(_LEAVING_STATES):
            return Cloud.LEAVING
        if member.lifecycle_state.startswith("Pending"):
            return Cloud.STARTING
    if instance.state == "pending":
        return Cloud.STARTING
    if instance.launched_at is not None and now - instance.launched_at < boot_grace_s:
        return Cloud.STARTING
    return Cloud.RUNNING


def signals_of(
    cloud: Cloud,
    record: Mapping[str, Any] | None,
    heartbeats_known: bool,
    polled: PollResult,
    lb: Lb,
) -> Signals:
    push = Push.UNKNOWN if not heartbeats_known else (Push.LIVE if record is not None else Push.SILENT)
    # The agent's word on its state: its answer now, else its last record.
    state = polled.state or (str(record.get("state")) if record and record.get("state") else None)
    ready = polled.ready if polled.pull is Pull.ANSWERS else bool(record and record.get("ready"))
    return Signals(cloud=cloud, push=push, pull=polled.pull, lb=lb, agent_state=state, ready=ready)
