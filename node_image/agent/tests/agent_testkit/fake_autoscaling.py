"""Auto Scaling's query API on loopback (moto for what it implements, CompleteLifecycleAction answered
here): the sandbox's own front, `fleet.sandbox.autoscaling_api`."""

from fleet.sandbox.autoscaling_api import TERMINATING, AutoScalingApi, CompletedAction, moto_client

FakeAutoScaling = AutoScalingApi

__all__ = ["TERMINATING", "CompletedAction", "FakeAutoScaling", "moto_client", "moto_group"]


def moto_group(moto_url: str, name: str, size: int) -> list[str]:
    """An Auto Scaling group of `size` instances in moto (a launch template of its own); its instance ids."""
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
    )
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return sorted(i["InstanceId"] for i in group["Instances"])
