"""The fleet controller's Lambda: every minute a run ticks every `tickSeconds` for up to two minutes, so
consecutive runs overlap and EventBridge's within-the-minute delivery never leaves a gap. Each tick slot
is claimed in Redis (SET NX), so overlapping runs never tick twice.

Ticks of two runs can still overlap in time: one tick's botocore calls (timeouts times retries) can
outlast a slot. The controller's memory (restart records, streaks) is therefore read, decided on and
written under a lock in Redis (SET NX PX with a token of this tick's own): a tick that finds it held
skips; a tick writes its memory only while it still holds the lock (compare-and-set in one script), and
writes it before it acts (a restart or a replacement is remembered before it is sent, so a later tick
never sends it again); a tick whose lease ran out acts on nothing; the lock is released only by its owner.

A tick: read the pools' groups and instances (Auto Scaling, EC2), their load balancers' target health,
the heartbeats and the controller's memory (Redis), poll every agent; every `reconcileSeconds` also
scan for orphans (tagged for the fleet, in no group) and ghosts (in Redis, instance gone); decide
(decision.py); act; remember; report (report.py): one line per decision worth reading, with the signals
behind it, and the tick's counts as CloudWatch metrics (embedded metric format, no API call). What it
reads is rendered by the program (settings.py).

No action is ever taken on a tick whose cloud or Redis reads failed: the decision table calls that
"no quorum". Dry-run ticks decide and log everything and act on nothing.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from . import signals as sig
from .decision import Action, Cloud, Lb, NodeMemory, Pull, Verdict
from .report import Emit, print_record, report
from .resp import Endpoint, Redis, RedisError
from .settings import ControllerSettings, PoolSpec
from .steps import Fleet, Memory, Node, Orphan, Plan, Pool, plan

# Time kept free before the Lambda's timeout, for the last tick to finish.
END_MARGIN_SECONDS = 5
HOLD_TAG = "fleet-hold"
# The restart document's own timeout: a stuck stop must not hold the command forever.
RESTART_COMMAND_TIMEOUT_S = 60
# Compare-and-set of the memory under the lock (KEYS: lock, memory; ARGV: token, memory, lease ms), and
# compare-and-delete of the lock (KEYS: lock; ARGV: token): atomic in Redis, so only the owner writes.
SAVE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""
RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass
class Clients:
    autoscaling: Any
    ec2: Any
    elbv2: Any
    ssm: Any
    sns: Any | None = None


class Controller:
    def __init__(
        self,
        settings: ControllerSettings,
        clients: Clients,
        redis_password: str | None,
        *,
        address_for: Callable[[sig.Instance], tuple[str, int] | None] | None = None,
        clock: Callable[[], float] = time.time,
        emit: Emit = print_record,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self._password = redis_password
        self._address_for = address_for or self._private_address
        self._clock = clock
        self._emit = emit
        self.run_id = uuid.uuid4().hex[:12]

    # --- the loop -----------------------------------------------------------------------------------

    def run(
        self, time_left: Callable[[], float], sleep: Callable[[float], None] = time.sleep
    ) -> list[dict[str, Any]]:
        """Tick on every slot boundary for `run_seconds`, claiming each slot first."""
        s = self.settings
        run_seconds = s.run_seconds
        started = self._clock()
        summaries: list[dict[str, Any]] = []
        while True:
            now = self._clock()
            slot = int(now // s.tick_s)
            if self.claim(slot):
                summaries.append(self.tick())
            next_at = (slot + 1) * s.tick_s
            now = self._clock()
            needed = (next_at - now) + s.tick_s + END_MARGIN_SECONDS
            if next_at - started > run_seconds or time_left() < needed:
                return summaries
            sleep(max(0.0, next_at - now))

    def claim(self, slot: int) -> bool:
        """This run ticks slot `slot` unless another run already did. Redis down: tick anyway (such a
        tick observes only, so a duplicate costs a log line)."""
        try:
            with self._redis() as redis:
                expiry_ms = int(self.settings.tick_s * 3000)
                won = redis.call("SET", self.settings.slot_key(slot), self.run_id, "NX", "PX", expiry_ms)
        except RedisError:
            return True
        return won == "OK"

    # --- one tick -----------------------------------------------------------------------------------

    def tick(self) -> dict[str, Any]:
        s = self.settings
        now = self._clock()
        summary: dict[str, Any] = {"kind": "tick", "region": s.region, "at": round(now, 3)}
        summary["run"] = self.run_id
        redis, lock = self._connect_and_lock(summary)
        if redis is not None and lock is None:
            redis.close()
            summary["skipped"] = "another tick holds the controller's lock"
            self._emit(summary)
            return summary
        try:
            return self._tick(now, summary, redis, lock)
        finally:
            if redis is not None:
                if lock is not None:
                    with contextlib.suppress(RedisError):  # else the lease runs out on its own
                        redis.call("EVAL", RELEASE_IF_OWNER, 1, s.lock_key, lock.token)
                redis.close()

    def _tick(
        self, now: float, summary: dict[str, Any], redis: Redis | None, lock: Lock | None
    ) -> dict[str, Any]:
        s = self.settings
        target_health: dict[str, dict[str, Lb]] = {}
        try:
            groups = sig.read_groups(self.clients.autoscaling, [p.group for p in s.pools])
            members = {m.instance_id: (pool, m) for pool in s.pools for m in groups[pool.group].instances}
            instances = sig.read_instances(self.clients.ec2, members)
            # The load balancer's view is one of the signals a repair needs: unread, no repair anywhere.
            for pool in s.pools:
                if pool.target_group_arn:
                    target_health[pool.name] = sig.read_target_health(
                        self.clients.elbv2, pool.target_group_arn
                    )
        except Exception as exc:  # any failure of the cloud reads: no quorum, no action
            summary |= {"noQuorum": True, "why": f"cloud read failed: {type(exc).__name__}: {exc}"}
            report(self._emit, s, summary, [], {})
            return summary

        heartbeats: sig.Heartbeats | None = None
        memory = Memory()
        if redis is not None:
            try:
                heartbeats = sig.read_heartbeats(redis, s.key_prefix, s.region, also=members)
                memory = load_memory(redis, s.memory_key)
            except RedisError as exc:
                summary["redisError"] = str(exc)
                redis = None

        targets = {i: (self._address_for(instances[i]) if i in instances else None) for i in members}
        polls = sig.poll_all(targets, s.poll_timeout_s)
        nodes = []
        for instance_id, (pool, member) in sorted(members.items()):
            cloud = sig.cloud_state(member, instances.get(instance_id), now, s.boot_grace_s)
            record = heartbeats.records.get(instance_id) if heartbeats else None
            lb = target_health.get(pool.name, {}).get(instance_id, Lb.UNKNOWN)
            signals = sig.signals_of(cloud, record, heartbeats is not None, polls[instance_id], lb)
            nodes.append(Node(instance_id, pool.name, signals))
        orphans, ghosts = self._reconcile(memory, members, heartbeats, now, summary)
        pools = tuple(_pool(p, groups[p.group], nodes) for p in s.pools)
        decided = plan(Fleet(now, pools, tuple(nodes), orphans, ghosts), memory, s.decision)
        if redis is not None and lock is not None:
            self._act(decided, redis, lock, summary)
        summary["noQuorum"] = decided.no_quorum or heartbeats is None
        details = {
            d.instance_id: sig.agent_status(*address, s.poll_timeout_s)
            for d in decided.nodes
            if d.verdict is Verdict.DEGRADED
            and d.signals.pull is Pull.ANSWERS
            and (address := targets.get(d.instance_id)) is not None
        }
        report(self._emit, s, summary, list(decided.nodes), {p.name: p for p in pools}, decided, details)
        return summary

    def _connect_and_lock(self, summary: dict[str, Any]) -> tuple[Redis | None, Lock | None]:
        """A connection to Redis and the controller's lock; (None, None) when Redis does not answer (the
        tick then observes only: nothing is acted on, nothing written)."""
        s = self.settings
        try:
            redis = self._redis()
        except RedisError as exc:
            summary["redisError"] = str(exc)
            return None, None
        token = f"{self.run_id}:{uuid.uuid4().hex[:8]}"
        try:
            won = redis.call("SET", s.lock_key, token, "NX", "PX", int(s.lock_lease_s * 1000))
        except RedisError as exc:
            summary["redisError"] = str(exc)
            redis.close()
            return None, None
        return redis, (Lock(token) if won == "OK" else None)

    def _reconcile(
        self,
        memory: Memory,
        members: Mapping[str, Any],
        heartbeats: sig.Heartbeats | None,
        now: float,
        summary: dict[str, Any],
    ) -> tuple[tuple[Orphan, ...] | None, tuple[str, ...] | None]:
        """Orphans and ghosts, every `reconcile_s` (and never without Redis: their clocks live there)."""
        s = self.settings
        if heartbeats is None or (
            memory.reconciled_at is not None and now - memory.reconciled_at < s.reconcile_s
        ):
            return None, None
        try:
            tagged = sig.scan_fleet_instances(self.clients.ec2, s.fleet_tags, s.pool_tag)
            orphans = tuple(
                Orphan(i.instance_id, i.launched_at or now, hold=HOLD_TAG in i.tags)
                for i in tagged
                if i.instance_id not in members
            )
            candidates = [n for n in heartbeats.index if n not in members]
            alive = sig.read_instances(self.clients.ec2, candidates)
            ghosts = tuple(
                n
                for n in candidates
                if n not in heartbeats.records
                and (n not in alive or sig.cloud_state(None, alive[n], now, 0).value == "gone")
                and sig.INSTANCE_ID.match(n)
            )
        except Exception as exc:
            summary["reconcileError"] = f"{type(exc).__name__}: {exc}"
            return None, None
        return orphans, ghosts

    # --- acting -------------------------------------------------------------------------------------

    def _act(self, decided: Plan, redis: Redis, lock: Lock, summary: dict[str, Any]) -> None:
        """Remember the plan, then carry it out (unless dry-run or without quorum), then remember it again
        without the restarts and replacements whose call failed. Nothing is done by a tick that no longer
        holds the lock: another tick may already have decided on the memory it read."""
        s = self.settings
        memory = decided.memory
        if not self._save(redis, lock, memory):
            summary["lockLost"] = True
            return
        if decided.no_quorum:
            return
        live = not s.dry_run
        nodes = dict(memory.nodes)
        failures: list[str] = []
        for d in decided.actions():
            record: dict[str, Any] = {"kind": "action", "dryRun": s.dry_run, **d.describe()}
            try:
                if live and d.action is Action.REPLACE:
                    self.clients.autoscaling.set_instance_health(
                        InstanceId=d.instance_id, HealthStatus="Unhealthy", ShouldRespectGracePeriod=False
                    )
                elif live and d.action is Action.RESTART:
                    sent = self.clients.ssm.send_command(
                        InstanceIds=[d.instance_id],
                        DocumentName=s.restart_document,
                        TimeoutSeconds=RESTART_COMMAND_TIMEOUT_S,
                        Comment=f"fleet controller: {d.verdict.value}"[:100],
                    )
                    record["commandId"] = sent["Command"]["CommandId"]
            except Exception as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
                failures.append(d.instance_id)
                before = nodes.get(d.instance_id, NodeMemory())
                nodes[d.instance_id] = replace(
                    before,
                    restarted_at=None if d.action is Action.RESTART else before.restarted_at,
                    replaced_at=None if d.action is Action.REPLACE else before.replaced_at,
                )
            self._emit(record)
        for orphan in decided.orphans:
            due = orphan in decided.terminate
            record = {
                "kind": "orphan",
                "instance": orphan,
                "action": "terminate" if due else "report",
                "dryRun": s.dry_run,
            }
            if due and live:
                try:
                    self.clients.ec2.terminate_instances(InstanceIds=[orphan])
                except Exception as exc:
                    record["error"] = f"{type(exc).__name__}: {exc}"
                    failures.append(orphan)
            self._emit(record)
        for r in decided.raises:
            record = {"kind": "capacity", "dryRun": s.dry_run, **asdict(r)}
            if live:
                try:
                    self.clients.autoscaling.set_desired_capacity(
                        AutoScalingGroupName=r.group, DesiredCapacity=r.new_desired, HonorCooldown=False
                    )
                except Exception as exc:
                    record["error"] = f"{type(exc).__name__}: {exc}"
                    failures.append(r.group)
            self._emit(record)
        if decided.forget:
            self._emit({"kind": "ghosts", "forget": list(decided.forget), "dryRun": s.dry_run})
            if live:
                sig.forget_nodes(redis, s.key_prefix, s.region, list(decided.forget))
        for alert in decided.alerts:
            if self.clients.sns is not None and s.topic_arn and live:
                try:
                    self.clients.sns.publish(
                        TopicArn=s.topic_arn,
                        Subject=f"[{s.stack} {s.region}] {alert.subject}"[:100],
                        Message=json.dumps(alert.detail, indent=2, default=str),
                    )
                except Exception as exc:
                    failures.append(f"alert:{alert.key}: {exc}")
        if failures:
            summary["failures"] = failures
        if nodes != memory.nodes and not self._save(redis, lock, replace(memory, nodes=nodes)):
            # A failed call stays remembered as sent: it is not retried before its grace (the safe side).
            summary["lockLost"] = True

    def _save(self, redis: Redis, lock: Lock, memory: Memory) -> bool:
        """Write the memory if this tick still holds the lock, renewing its lease; False if it does not (or
        Redis did not answer: then nothing is known to be written, so nothing may be done)."""
        s = self.settings
        lease_ms = int(s.lock_lease_s * 1000)
        try:
            saved = redis.call(
                "EVAL", SAVE_IF_OWNER, 2, s.lock_key, s.memory_key, lock.token, dump_memory(memory), lease_ms
            )
        except RedisError:
            return False
        return saved == 1

    # --- plumbing -------------------------------------------------------------------------------------

    def _redis(self) -> Redis:
        s = self.settings
        endpoint = Endpoint(s.redis_host, s.redis_port, s.redis_tls, s.redis_user, self._password)
        return Redis(endpoint, timeout=min(2.0, s.poll_timeout_s))

    def _private_address(self, instance: sig.Instance) -> tuple[str, int] | None:
        return (instance.private_ip, self.settings.agent_port) if instance.private_ip else None


@dataclass(frozen=True)
class Lock:
    """This tick's hold on the controller's lock: the token only it knows."""

    token: str


def _pool(spec: PoolSpec, group: sig.Group, nodes: list[Node]) -> Pool:
    mine = [n.signals.cloud for n in nodes if n.pool == spec.name]
    return Pool(
        name=spec.name,
        group=spec.group,
        model=spec.model,
        desired=group.desired,
        max_size=group.max_size,
        instances=sum(1 for c in mine if c in (Cloud.RUNNING, Cloud.STARTING)),
        replacing=sum(1 for c in mine if c is Cloud.LEAVING),
        warm_limit_s=spec.warm_limit_s,
    )


# --- memory in Redis ---------------------------------------------------------------------------------


def load_memory(redis: Redis, key: str) -> Memory:
    raw = redis.call("GET", key)
    if not isinstance(raw, bytes):
        return Memory()
    try:
        data = json.loads(raw)
        return Memory(
            nodes={k: NodeMemory(**v) for k, v in data.get("nodes", {}).items()},
            orphans_since=data.get("orphansSince", {}),
            alerted=data.get("alerted", {}),
            reconciled_at=data.get("reconciledAt"),
        )
    except (ValueError, TypeError):
        return Memory()  # unreadable memory: start afresh (streaks reset: the safe direction)


def dump_memory(memory: Memory) -> str:
    document = {
        "nodes": {k: asdict(v) for k, v in memory.nodes.items()},
        "orphansSince": dict(memory.orphans_since),
        "alerted": dict(memory.alerted),
        "reconciledAt": memory.reconciled_at,
    }
    return json.dumps(document, separators=(",", ":"))


# --- Lambda -----------------------------------------------------------------------------------------

_PASSWORD: str | None = None


def handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (EventBridge schedule, every minute)."""
    import boto3  # the Lambda runtime provides it
    from botocore.config import Config

    global _PASSWORD
    settings = ControllerSettings.from_env()
    config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 2})
    if _PASSWORD is None and settings.redis_password_secret_arn:
        secrets = boto3.client("secretsmanager", config=config)
        _PASSWORD = secrets.get_secret_value(SecretId=settings.redis_password_secret_arn)["SecretString"]
    clients = Clients(
        autoscaling=boto3.client("autoscaling", config=config),
        ec2=boto3.client("ec2", config=config),
        elbv2=boto3.client("elbv2", config=config),
        ssm=boto3.client("ssm", config=config),
        sns=boto3.client("sns", config=config),
    )
    controller = Controller(settings, clients, _PASSWORD)
    summaries = controller.run(time_left=lambda: context.get_remaining_time_in_millis() / 1000)
    return {"ticks": len(summaries), "actions": sum(t.get("actions", 0) for t in summaries)}
