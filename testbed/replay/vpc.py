"""Replay of standalone security group rules (`aws.vpc.SecurityGroupIngressRule` /
`SecurityGroupEgressRule`) into moto, with the checks EC2 makes. Registers into
`testbed.replay.core.HANDLERS`.

EC2 (AuthorizeSecurityGroupIngress, "Security group rules" in the VPC User Guide): a rule names
exactly one source (an IPv4 or IPv6 CIDR, a prefix list or a security group); tcp/udp need a
port range with from <= to; a referenced group must be in the same VPC (or a peered one, which
this stack never uses).
"""

from __future__ import annotations

from typing import Any

from tools.mock_engine import Declared
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError

SOURCES = ("cidrIpv4", "cidrIpv6", "prefixListId", "referencedSecurityGroupId")


def _permission(resource: Declared, inputs: Inputs, ec2) -> tuple[str, dict[str, Any]]:
    group_id = inputs.require("securityGroupId")
    protocol = str(inputs.require("ipProtocol"))
    sources = {key: inputs.get(key) for key in SOURCES if inputs.get(key)}
    if len(sources) != 1:
        raise ReplayError(resource, f"a rule needs exactly one of {', '.join(SOURCES)}; "
                                    f"declared {sorted(sources)}")
    permission: dict[str, Any] = {"IpProtocol": protocol}
    if protocol in ("tcp", "udp", "6", "17"):
        low, high = inputs.integer("fromPort"), inputs.integer("toPort")
        if low is None or high is None or not 0 <= low <= high <= 65535:
            raise ReplayError(resource, f"InvalidParameterValue: port range {low}-{high}")
        permission.update(FromPort=low, ToPort=high)
    else:
        inputs.engine_side("fromPort", "toPort")
    description = {"Description": inputs.get("description")} if inputs.get("description") else {}
    (key, value), = sources.items()
    if key == "referencedSecurityGroupId":
        groups = ec2.describe_security_groups(GroupIds=[group_id, value])["SecurityGroups"]
        vpcs = {g["VpcId"] for g in groups}
        if len(vpcs) != 1:
            raise ReplayError(resource, f"InvalidGroup: {value} is in another VPC than {group_id}")
        permission["UserIdGroupPairs"] = [{"GroupId": value, **description}]
    elif key == "cidrIpv4":
        permission["IpRanges"] = [{"CidrIp": value, **description}]
    elif key == "cidrIpv6":
        permission["Ipv6Ranges"] = [{"CidrIpv6": value, **description}]
    else:
        permission["PrefixListIds"] = [{"PrefixListId": value, **description}]
    return group_id, permission


def ingress_rule(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    ec2 = replay.client("ec2")
    group_id, permission = _permission(resource, inputs, ec2)
    rules = ec2.authorize_security_group_ingress(
        GroupId=group_id, IpPermissions=[permission])["SecurityGroupRules"]
    inputs.engine_side("tags")  # tags go on the rule, a separate CreateTags call
    return {"group_id": group_id, "rule_ids": [r["SecurityGroupRuleId"] for r in rules],
            "permission": permission}


def egress_rule(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    ec2 = replay.client("ec2")
    group_id, permission = _permission(resource, inputs, ec2)
    rules = ec2.authorize_security_group_egress(
        GroupId=group_id, IpPermissions=[permission])["SecurityGroupRules"]
    inputs.engine_side("tags")
    return {"group_id": group_id, "rule_ids": [r["SecurityGroupRuleId"] for r in rules],
            "permission": permission}


HANDLERS.update({
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ingress_rule,
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": egress_rule,
})
