"""Auto Scaling's query API on loopback (moto for what it implements, CompleteLifecycleAction answered
here): the sandbox's own front, `fleet.sandbox.autoscaling_api`."""

from fleet.sandbox.autoscaling_api import TERMINATING, AutoScalingApi, CompletedAction, moto_client

FakeAutoScaling = AutoScalingApi

__all__ = ["TERMINATING", "CompletedAction", "FakeAutoScaling", "moto_client"]
