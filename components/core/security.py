"""Security groups as the fleet declares them: no inline rules (the AWS provider then removes the allow-all
egress AWS adds to a new group), and each TCP rule a resource of its own, named `<component>-<rule>`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class SecurityGroups:
    """The groups and rules of one component (`name`) in one VPC."""

    name: str
    vpc_id: pulumi.Input[str]
    opts: pulumi.ResourceOptions

    def group(self, suffix: str, description: str) -> aws.ec2.SecurityGroup:
        return aws.ec2.SecurityGroup(
            f"{self.name}-{suffix}",
            vpc_id=self.vpc_id,
            description=description,
            revoke_rules_on_delete=True,
            tags={"Name": f"{self.name}-{suffix}"},
            opts=self.opts,
        )

    def allow(
        self,
        direction: Literal["in", "out"],
        rule_name: str,
        owner: pulumi.Input[str],
        port: int,
        description: str,
        *,
        peer: pulumi.Input[str] | None = None,
        cidr: str | None = None,
    ) -> None:
        """TCP `port` into (or out of) the group `owner`, from (or to) the group `peer` or range `cidr`."""
        kind = aws.vpc.SecurityGroupIngressRule if direction == "in" else aws.vpc.SecurityGroupEgressRule
        kind(
            f"{self.name}-{rule_name}",
            security_group_id=owner,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            referenced_security_group_id=peer,
            cidr_ipv4=cidr,
            description=description,
            opts=self.opts,
        )
