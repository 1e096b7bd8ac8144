"""The network: awsx's VPC as awsx would build it, and security groups (EC2)."""

from __future__ import annotations

import ipaddress
from typing import Any

from tools.mock_engine import Declared
from policies.worker_rules import AWSX_DEFAULT_AZS, awsx_nat_gateway_count, awsx_nat_strategy
from testbed.replay import aws_rules
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError, _physical_name, aws_tags


def awsx_vpc(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """What `awsx.ec2.Vpc` builds: the VPC, a subnet per AZ per declared tier, the internet gateway
    and the NAT gateways of the strategy. Its deploy-time checks (awsx/ec2/vpc.ts) are repeated
    here because under mocks the component never runs."""
    ec2 = replay.client("ec2")
    cidr = ipaddress.IPv4Network(inputs.require("cidrBlock"))
    az_count = inputs.integer("numberOfAvailabilityZones", AWSX_DEFAULT_AZS)
    assert az_count is not None
    inputs.engine_side("subnetStrategy")  # the layout within the CIDR; any layout hosts the stack
    specs = inputs.get("subnetSpecs") or [{"type": "Public"}, {"type": "Private"}]
    nat = awsx_nat_strategy({"natGateways": inputs.get("natGateways")})
    tiers = [spec["type"] for spec in specs]
    if nat != "None" and not {"Public", "Private"} <= set(tiers):
        raise ReplayError(resource, f"NAT strategy {nat} needs public and private subnets, "
                                    f"declared {tiers} (awsx refuses this at deploy time)")
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    aws_rules.availability_zone_count(resource, az_count, zones)

    tags = aws_tags(inputs.get("tags"))
    vpc_id = ec2.create_vpc(
        CidrBlock=str(cidr),
        TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}] if tags else [],
    )["Vpc"]["VpcId"]
    for attribute in ("EnableDnsHostnames", "EnableDnsSupport"):
        key = attribute[0].lower() + attribute[1:]
        ec2.modify_vpc_attribute(VpcId=vpc_id, **{attribute: {"Value": bool(inputs.get(key, True))}})

    subnet_ids: dict[str, list[str]] = {"Public": [], "Private": [], "Isolated": []}
    allocated: list[ipaddress.IPv4Network] = []
    for spec in specs:
        mask = int(spec.get("cidrMask") or cidr.prefixlen + 4)
        for zone in zones[:az_count]:
            block = next((b for b in cidr.subnets(new_prefix=mask)
                          if not any(b.overlaps(a) for a in allocated)), None)
            if block is None:
                raise ReplayError(resource, f"{cidr} has no room for another /{mask} subnet "
                                            f"({len(allocated)} allocated)")
            allocated.append(block)
            subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock=str(block), AvailabilityZone=zone)
            subnet_ids[spec["type"]].append(subnet["Subnet"]["SubnetId"])

    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc_id)
    nat_count = awsx_nat_gateway_count({"natGateways": inputs.get("natGateways"),
                                        "numberOfAvailabilityZones": az_count})
    nat_ids = []
    for public_subnet in subnet_ids["Public"][:nat_count]:
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        nat_ids.append(ec2.create_nat_gateway(SubnetId=public_subnet, AllocationId=allocation)
                       ["NatGateway"]["NatGatewayId"])

    replay.map(resource.outputs["vpcId"], vpc_id)
    for tier, key in (("Public", "publicSubnetIds"), ("Private", "privateSubnetIds"),
                      ("Isolated", "isolatedSubnetIds")):
        declared = resource.outputs.get(key) or []
        if len(declared) != len(subnet_ids[tier]):
            raise ReplayError(resource, f"mock answered {len(declared)} {tier} subnets, "
                                        f"awsx would build {len(subnet_ids[tier])}")
        for mock_id, real_id in zip(declared, subnet_ids[tier], strict=True):
            replay.map(mock_id, real_id)
    return {"vpc_id": vpc_id, "public_subnet_ids": subnet_ids["Public"],
            "private_subnet_ids": subnet_ids["Private"],
            "isolated_subnet_ids": subnet_ids["Isolated"], "nat_gateway_ids": nat_ids}


def _ip_permission(rule: dict[str, Any]) -> dict[str, Any]:
    permission: dict[str, Any] = {"IpProtocol": str(rule["protocol"])}
    if str(rule["protocol"]) != "-1":
        permission.update(FromPort=int(rule["fromPort"]), ToPort=int(rule["toPort"]))
    description = {"Description": rule["description"]} if rule.get("description") else {}
    permission["IpRanges"] = [{"CidrIp": c, **description} for c in rule.get("cidrBlocks") or []]
    permission["Ipv6Ranges"] = [{"CidrIpv6": c, **description}
                                for c in rule.get("ipv6CidrBlocks") or []]
    permission["UserIdGroupPairs"] = [{"GroupId": g, **description}
                                      for g in rule.get("securityGroups") or []]
    return permission


def security_group(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """Like the provider: create the group, drop AWS's default allow-all egress, then add exactly
    the declared rules."""
    ec2 = replay.client("ec2")
    tags = aws_tags(inputs.get("tags"))
    group_id = ec2.create_security_group(
        GroupName=_physical_name(resource, inputs),
        Description=inputs.get("description") or "Managed by Pulumi",
        VpcId=inputs.require("vpcId"),
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}] if tags else [],
    )["GroupId"]
    inputs.engine_side("revokeRulesOnDelete")
    ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    egress = [_ip_permission(rule) for rule in inputs.get("egress") or []]
    ingress = [_ip_permission(rule) for rule in inputs.get("ingress") or []]
    if egress:
        ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=egress)
    if ingress:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=ingress)
    replay.map(resource.id, group_id)
    return {"id": group_id}


HANDLERS.update({
    "awsx:ec2:Vpc": awsx_vpc,
    "aws:ec2/securityGroup:SecurityGroup": security_group,
})
