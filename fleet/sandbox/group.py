"""The Auto Scaling group's part that moto does not play, emulated on top of what moto records.

moto holds the group (its size, instances, their health, their launch times) and answers every API call;
this carries out what Auto Scaling would then do, as the rendered group asks:

- an InService instance gets a node that boots (fleet.sandbox.node); with the rendered launch hook it is
  held in Pending:Wait until its agent completes the launch action (CONTINUE: registered with the pool's
  load balancer, the group's target group) or the hook's heartbeat timeout applies its default result
  (ABANDON: terminated, and the group launches another); without one it is registered at once;
- an instance marked Unhealthy (the fleet controller's SetInstanceHealth) is replaced: with the rendered
  instance maintenance policy (at least 100 % healthy) the replacement is launched first, then the old one
  is terminated;
- terminating an instance (a replacement, a scale-in, a spot interruption) runs the termination lifecycle:
  deregistered from the load balancer and drained for up to its deregistration delay, then held in
  Terminating:Wait (IMDS's target-lifecycle-state says Terminated) until the agent completes the lifecycle
  action or the hook's heartbeat timeout passes, then terminated: the node powers off;
- a lower desired capacity (SetDesiredCapacity through the Auto Scaling API front) scales in that way,
  oldest instances first (the default termination policy's oldest launch template, then oldest instance),
  passing by instances protected from scale-in (the agents' SetInstanceProtection, recorded by moto): the
  group waits above its desired capacity, and says so in DescribeAutoScalingGroups, until protection is
  released;
- an SSM command of the restart document restarts the named node's agent, as the document's unit does;
- a spot interruption (a drill): EC2 gives the node a rebalance recommendation and the two-minute
  interruption notice (here at the same moment, the worst case: "EC2 always gives both" and no more is
  promised); the group, with the rendered Capacity Rebalancing, launches a replacement and once it is in
  service terminates the node through the usual path (load balancer first, then the hook); EC2 takes the
  instance at the notice's time whatever is left. The load balancer knows nothing of the notice: it keeps
  routing to the node until its health check fails.

What moto shows meanwhile: a replacement raises the group's desired capacity by one until the old
instance is gone (Auto Scaling keeps it and counts the extra instance against maxHealthyPercentage), and
an instance being terminated keeps moto's InService; the Auto Scaling API front reports this group's own
lifecycle states instead."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from fleet.sandbox.events import Events
from fleet.sandbox.loadbalancer import TargetGroup
from fleet.sandbox.node import Node, NodeWiring, config_toml, node_config
from fleet.sandbox.plan import PoolSpec

POLL_S = 0.5
STATE_POLL_S = 1.0
SPOT_NOTICE_S = 120.0  # EC2 sends the interruption notice two minutes ahead


@dataclass
class Rebalance:
    """A spot instance under an interruption notice, waiting for its replacement to be in service."""

    instance_id: str
    noticed_at: float
    deadline: float
    replacement: str | None = None


@dataclass
class Termination:
    instance_id: str
    reason: str
    decrement: bool  # lower moto's desired capacity when done (a replacement raised it, or a scale-in)
    started_at: float
    deadline: float | None = None  # EC2 takes the instance then, whatever the hook (a spot interruption)
    phase: str = "Terminating"  # then Terminating:Wait, then Terminated
    wait_since: float | None = None
    result: str | None = None  # the lifecycle action's result


class GroupEmulator:
    def __init__(
        self,
        pool: PoolSpec,
        autoscaling: Any,  # a moto client (this region)
        ssm: Any,
        lb: TargetGroup,
        wiring: NodeWiring,
        events: Events,
        restart_document: str,
    ) -> None:
        self.pool = pool
        self.autoscaling = autoscaling
        self.ssm = ssm
        self.lb = lb
        self.wiring = wiring
        self.events = events
        self.restart_document = restart_document
        self.nodes: dict[str, Node] = {}
        self.terminating: dict[str, Termination] = {}
        self.launching: dict[str, float] = {}  # Pending:Wait on the launch hook, since (or last heartbeat)
        self.rebalancing: dict[str, Rebalance] = {}
        self.launch_broken = False  # the next launches run a bad release (bad-rollout drill)
        self.desired_target: int | None = None  # a scale-in's desired capacity, until the group is there
        self.scale_in_held = False  # by protected instances
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._handled_commands: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name=f"group-{pool.name}", daemon=True)
        self._states = threading.Thread(target=self._watch_agents, name=f"agents-{pool.name}", daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()
        self._states.start()

    def stop(self, power_off: bool = True) -> None:
        self._stop.set()
        self._thread.join(10)
        if power_off:
            with self._lock:
                nodes = list(self.nodes.values())
            for node in nodes:
                node.power_off()

    # --- the Auto Scaling API front's questions (fleet.sandbox.autoscaling_api.Lifecycle) -----------
    def lifecycle_state(self, instance_id: str) -> str | None:
        with self._lock:
            if instance_id in self.launching:
                return "Pending:Wait"
            termination = self.terminating.get(instance_id)
            return termination.phase if termination else None

    def action_open(self, group: str, instance_id: str) -> bool:
        with self._lock:
            termination = self.terminating.get(instance_id)
            return group == self.pool.group and (
                instance_id in self.launching
                or (termination is not None and termination.phase == "Terminating:Wait")
            )

    def heartbeat(self, instance_id: str) -> None:
        """RecordLifecycleActionHeartbeat: the hook's timeout starts again."""
        with self._lock:
            if instance_id in self.launching:
                self.launching[instance_id] = time.time()
            termination = self.terminating.get(instance_id)
            if termination is not None and termination.phase == "Terminating:Wait":
                termination.wait_since = time.time()

    def _launched(self, instance_id: str, result: str, why: str) -> None:
        """The launch action's result: in service, or abandoned (terminated; the group launches another)."""
        self.launching.pop(instance_id, None)
        node = self.nodes.get(instance_id)
        self.events.add("launch-result", pool=self.pool.name, node=instance_id, result=result, why=why)
        if node is None:
            return
        if result == "CONTINUE":
            self.lb.register(instance_id, *node.address)
        else:
            self._begin_termination(instance_id, "launch abandoned", decrement=False)

    def complete(self, group: str, instance_id: str, result: str) -> None:
        with self._lock:
            if instance_id in self.launching:
                self._launched(instance_id, result, "lifecycle action")
                return
            termination = self.terminating.get(instance_id)
            if termination is not None and termination.phase == "Terminating:Wait":
                termination.result = result
        self.events.add("lifecycle-complete", pool=self.pool.name, node=instance_id, result=result)

    def scale_in(self, group: str, desired: int) -> bool:
        if group != self.pool.group:
            return False
        with self._lock:
            current = self._describe()
            staying = [i for i in current["Instances"] if i["InstanceId"] not in self.terminating]
            if len(staying) <= desired:
                return False
            if desired < current["MinSize"]:
                raise ValueError(
                    f"New SetDesiredCapacity value {desired} is below min value {current['MinSize']}"
                )
            self.desired_target = desired
            self._scale_in(current)
        return True

    def _scale_in(self, group: dict[str, Any]) -> None:
        """Terminate the oldest unprotected instances above the scale-in's desired capacity; protected
        ones wait for their agents to release (or yield) protection."""
        assert self.desired_target is not None
        staying = [i for i in group["Instances"] if i["InstanceId"] not in self.terminating]
        excess = len(staying) - self.desired_target
        if excess <= 0:
            if group["DesiredCapacity"] <= self.desired_target:
                self.desired_target = None  # moto's desired capacity caught up: the scale-in is done
            return
        candidates = sorted(
            (i for i in staying if not i.get("ProtectedFromScaleIn")),
            key=lambda i: self.nodes[i["InstanceId"]].launched_at if i["InstanceId"] in self.nodes else 0,
        )
        for instance in candidates[:excess]:
            self._begin_termination(instance["InstanceId"], "scale-in", decrement=True)
        held = excess - len(candidates[:excess])
        if held and not self.scale_in_held:
            self.events.add("scale-in-held", pool=self.pool.name, protected=held)
        self.scale_in_held = held > 0

    # --- what drills ask -----------------------------------------------------------------------------
    def interrupt(self, instance_id: str) -> None:
        """EC2 is about to reclaim a spot instance: its notices, then Capacity Rebalancing's replacement."""
        now = time.time()
        with self._lock:
            node = self.nodes[instance_id]
            node.spot_interruption(SPOT_NOTICE_S)
            self.rebalancing[instance_id] = Rebalance(instance_id, now, now + SPOT_NOTICE_S)
            self._raise_desired()

    def roll_out(self, broken: bool) -> None:
        """An instance refresh's first step (maxHealthyPercentage 200: launch before terminating): one new
        instance of the new release."""
        with self._lock:
            self.launch_broken = broken
            self._raise_desired()
        self.events.add("rollout", pool=self.pool.name, broken=broken)

    def cancel_rollout(self) -> list[str]:
        """The refresh is cancelled and rolled back: instances of the bad release are terminated."""
        with self._lock:
            self.launch_broken = False
            bad = [i for i, n in self.nodes.items() if n.broken and i not in self.terminating]
            for instance_id in bad:
                self._begin_termination(instance_id, "rollback", decrement=True)
        return bad

    # --- the loop ------------------------------------------------------------------------------------
    def _describe(self) -> dict[str, Any]:
        groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.pool.group])
        return groups["AutoScalingGroups"][0]

    def _raise_desired(self) -> None:
        group = self._describe()
        self.autoscaling.set_desired_capacity(
            AutoScalingGroupName=self.pool.group, DesiredCapacity=group["DesiredCapacity"] + 1
        )

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self._tick()
            except Exception as exc:  # the cloud's API blinked: look again next time
                if str(exc) != self.error:
                    self.events.add("group-error", pool=self.pool.name, error=f"{type(exc).__name__}: {exc}")
                self.error = str(exc)

    def _tick(self) -> None:
        with self._lock:
            group = self._describe()
            members = {i["InstanceId"]: i for i in group["Instances"]}
            for instance_id, member in members.items():
                if instance_id not in self.nodes and member["LifecycleState"] == "InService":
                    self._launch(instance_id)
                unhealthy = member["HealthStatus"].lower() == "unhealthy"
                if unhealthy and instance_id not in self.terminating:
                    self.events.add("replace", pool=self.pool.name, node=instance_id, why="marked unhealthy")
                    self._raise_desired()
                    self._begin_termination(instance_id, "unhealthy", decrement=True)
            for instance_id, node in list(self.nodes.items()):
                if instance_id not in members and instance_id not in self.terminating and node.powered:
                    # Terminated behind the group's back (an orphan's termination, a detach): power off.
                    self.events.add("node-gone", pool=self.pool.name, node=instance_id)
                    node.power_off()
                    self.lb.deregister(instance_id)
            if self.desired_target is not None:
                self._scale_in(group)
            for instance_id, since in list(self.launching.items()):
                if time.time() - since >= self.pool.launch_hook_timeout_s:
                    self._launched(
                        instance_id,
                        self.pool.launch_hook_default_result,
                        f"heartbeat timeout ({self.pool.launch_hook_timeout_s:g} s)",
                    )
            for rebalance in list(self.rebalancing.values()):
                self._rebalance(rebalance)
            for termination in list(self.terminating.values()):
                self._advance(termination)
        self._carry_out_commands()

    def _launch(self, instance_id: str) -> None:
        node = Node(self.pool, instance_id, self.wiring, self.events, broken=self.launch_broken)
        config = node_config(self.pool, instance_id, self.wiring, node.paths, node.ports)
        if node.broken:
            config["engine"]["model_path"] += ".not-in-this-release"
        self.nodes[instance_id] = node
        node.boot(config_toml(config))
        if self.pool.launch_hook_name is not None:
            self.launching[instance_id] = time.time()
        else:
            self.lb.register(instance_id, *node.address)

    def _rebalance(self, r: Rebalance) -> None:
        """Terminate the interrupted instance once a replacement launched after the notice is in service;
        EC2 takes it at the deadline regardless."""
        claimed = {other.replacement for other in self.rebalancing.values()}
        if r.replacement is None:
            newer = [
                i
                for i, n in self.nodes.items()
                if n.launched_at >= r.noticed_at and i not in claimed and not n.broken
            ]
            r.replacement = newer[0] if newer else None
        in_service = r.replacement is not None and self.lb.state_of(r.replacement) == "healthy"
        if in_service or time.time() >= r.deadline:
            del self.rebalancing[r.instance_id]
            why = (
                "capacity rebalancing: the replacement is in service" if in_service else "the notice ran out"
            )
            self.events.add("rebalance", pool=self.pool.name, node=r.instance_id, why=why)
            self._begin_termination(r.instance_id, "spot-interruption", decrement=True, deadline=r.deadline)

    def _begin_termination(
        self, instance_id: str, reason: str, *, decrement: bool, deadline: float | None = None
    ) -> None:
        if instance_id in self.terminating:
            return
        self.launching.pop(instance_id, None)
        self.terminating[instance_id] = Termination(instance_id, reason, decrement, time.time(), deadline)
        self.events.add("terminating", pool=self.pool.name, node=instance_id, reason=reason)
        self.lb.deregister(instance_id)

    def _advance(self, t: Termination) -> None:
        node = self.nodes.get(t.instance_id)
        now = time.time()
        if t.deadline is not None and now >= t.deadline:
            self._terminate(t, "the spot interruption's deadline")
            return
        if t.phase == "Terminating" and self.lb.drained(t.instance_id):
            # Deregistered and drained: the termination hook holds the instance for the agent.
            t.phase, t.wait_since = "Terminating:Wait", now
            if node is not None:
                node.imds.target_lifecycle_state = "Terminated"
            self.events.add("lifecycle-wait", pool=self.pool.name, node=t.instance_id)
        elif t.phase == "Terminating:Wait":
            assert t.wait_since is not None
            if t.result is not None:
                self._terminate(t, f"lifecycle action {t.result}")
            elif now - t.wait_since >= self.pool.hook_timeout_s:
                self._terminate(
                    t, f"heartbeat timeout ({self.pool.hook_timeout_s:g} s): {self.pool.hook_default_result}"
                )

    def _terminate(self, t: Termination, why: str) -> None:
        node = self.nodes.get(t.instance_id)
        if node is not None:
            node.power_off()
        self.terminating.pop(t.instance_id, None)
        self.nodes.pop(t.instance_id, None)
        try:
            self.autoscaling.terminate_instance_in_auto_scaling_group(
                InstanceId=t.instance_id, ShouldDecrementDesiredCapacity=t.decrement
            )
        except Exception as exc:  # already gone from moto
            why += f" ({type(exc).__name__})"
        self.events.add("terminated", pool=self.pool.name, node=t.instance_id, reason=t.reason, why=why)

    def _carry_out_commands(self) -> None:
        """SSM Run Command of the restart document: the node's agent restarted (what moto recorded)."""
        if not self.restart_document:
            return
        for command in self.ssm.list_commands()["Commands"]:
            if (
                command["CommandId"] in self._handled_commands
                or command["DocumentName"] != self.restart_document
            ):
                continue
            self._handled_commands.add(command["CommandId"])
            for instance_id in command.get("InstanceIds", []):
                node = self.nodes.get(instance_id)
                if node is not None and node.powered:
                    self.events.add(
                        "agent-restart", pool=self.pool.name, node=instance_id, command=command["CommandId"]
                    )
                    node.restart_agent()

    def _watch_agents(self) -> None:
        with httpx.Client() as client:
            while not self._stop.wait(STATE_POLL_S):
                with self._lock:
                    nodes = list(self.nodes.values())
                for node in nodes:
                    node.poll_state(client)

    # --- what status shows ---------------------------------------------------------------------------
    def describe(self, lb_states: Callable[[str], str | None]) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    **node.describe(),
                    "lb": lb_states(instance_id) or "-",
                    "lifecycle": self.terminating[instance_id].phase
                    if instance_id in self.terminating
                    else "InService",
                }
                for instance_id, node in sorted(self.nodes.items(), key=lambda kv: kv[1].launched_at)
            ]
