"""A pool as AWS holds it, in moto: an Auto Scaling group whose instances are registered in an ELBv2
target group (moto registers them), with a launch and a termination lifecycle hook."""

from __future__ import annotations

from dataclasses import dataclass

from .fake_autoscaling import LAUNCHING, TERMINATING, moto_client, moto_group

DRAIN_HOOK, LAUNCH_HOOK = "fleet-drain", "fleet-launch"
TARGET_PORT = 8080  # where the group registers its instances (the target group's port)
HEARTBEAT_TIMEOUT_S = 30  # the least PutLifecycleHook allows


@dataclass
class Pool:
    group: str
    target_group: str
    instances: list[str]


def pool_in_moto(moto_url: str, name: str, size: int, *, with_target_group: bool = True) -> Pool:
    """An Auto Scaling group with both lifecycle hooks, its instances registered in a target group by moto
    (without `with_target_group`: no target group, `Pool.target_group` empty)."""
    ec2, elbv2 = moto_client("ec2", moto_url), moto_client("elbv2", moto_url)
    autoscaling = moto_client("autoscaling", moto_url)
    target_group = ""
    if with_target_group:
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        target_group = elbv2.create_target_group(
            Name=name,
            Protocol="HTTP",
            Port=TARGET_PORT,
            VpcId=vpc,
            TargetType="instance",
            HealthCheckPath="/readyz",
        )["TargetGroups"][0]["TargetGroupArn"]
    instances = moto_group(moto_url, name, size, [target_group] if target_group else [])
    for hook, transition in ((DRAIN_HOOK, TERMINATING), (LAUNCH_HOOK, LAUNCHING)):
        autoscaling.put_lifecycle_hook(
            LifecycleHookName=hook,
            AutoScalingGroupName=name,
            LifecycleTransition=transition,
            HeartbeatTimeout=HEARTBEAT_TIMEOUT_S,
            DefaultResult="ABANDON" if transition == LAUNCHING else "CONTINUE",
        )
    return Pool(name, target_group, instances)
