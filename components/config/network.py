"""The network keys: the VPC the stack creates (CIDR, AZs, NAT gateways) or the one it adopts
(`vpcId` and its subnets)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal, Optional

from components.config.reader import ConfigError, Reader

# Each enumerated key's accepted values are its type's: `Reader.choice` reads them with get_args.
NatGateways = Literal["none", "single", "per-az"]

# RFC 1918 ranges; a VPC for a private worker belongs in one of them.
PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(c) for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
MIN_AZS, MAX_AZS = 2, 6
# Each AZ gets one /(prefix+4) block per subnet tier, so at most 16 subnets fit, and AWS's
# smallest subnet is a /28: the VPC prefix must be /16../24.
SUBNET_BITS = 4
MIN_VPC_PREFIX, MAX_VPC_PREFIX = 16, 24
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8}([0-9a-f]{9})?$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")


@dataclass(frozen=True)
class ExistingVpc:
    vpc_id: str
    private_subnet_ids: tuple[str, ...]
    public_subnet_ids: tuple[str, ...]


def _is_private(network: ipaddress.IPv4Network) -> bool:
    return any(network.subnet_of(r) for r in PRIVATE_RANGES)


def check_vpc_cidr(cidr: str, az_count: int, tiers: int) -> None:
    try:
        network = ipaddress.ip_network(cidr)
    except ValueError:
        network = None
    if not isinstance(network, ipaddress.IPv4Network) or not _is_private(network):
        raise ConfigError("vpcCidr", cidr, "an IPv4 network inside 10.0.0.0/8, 172.16.0.0/12 or "
                          "192.168.0.0/16, written with its network address, e.g. 10.0.0.0/16")
    if not MIN_VPC_PREFIX <= network.prefixlen <= MAX_VPC_PREFIX:
        raise ConfigError("vpcCidr", cidr, f"a prefix from /{MIN_VPC_PREFIX} to /{MAX_VPC_PREFIX}")
    # awsx (Auto) gives each AZ a 1/2^ceil(log2(AZs)) slice of the VPC and packs the tiers in it.
    az_slices = 1 << (az_count - 1).bit_length()
    if az_slices * tiers > 2 ** SUBNET_BITS:
        raise ConfigError(
            "availabilityZoneCount", az_count,
            f"fewer AZs: {tiers} subnet tier(s) of 1/{2 ** SUBNET_BITS} of {cidr} each do not fit "
            f"in 1/{az_slices} of it per AZ",
        )


def subnet_mask(vpc_cidr: str) -> int:
    """Each subnet is a 1/16th slice of the VPC."""
    return ipaddress.ip_network(vpc_cidr).prefixlen + SUBNET_BITS


def parse_existing_vpc(reader: Reader, nat_gateways: str) -> Optional[ExistingVpc]:
    vpc_id = reader.optional("vpcId")
    private = reader.string_list("privateSubnetIds")
    public = reader.string_list("publicSubnetIds")
    if vpc_id is None:
        for key, ids in (("privateSubnetIds", private), ("publicSubnetIds", public)):
            if ids:
                raise ConfigError(key, list(ids), "only together with vpcId (adopting a VPC)")
        return None
    if not VPC_ID.match(vpc_id):
        raise ConfigError("vpcId", vpc_id, "a VPC id, vpc- and 8 or 17 hex digits")
    for key, ids in (("privateSubnetIds", private), ("publicSubnetIds", public)):
        bad = [i for i in ids if not SUBNET_ID.match(i)]
        if bad:
            raise ConfigError(key, list(ids), "subnet ids, subnet- and 8 or 17 hex digits")
    worker_key, worker_ids = (
        ("publicSubnetIds", public) if nat_gateways == "none" else ("privateSubnetIds", private)
    )
    if len(set(worker_ids)) < MIN_AZS:
        raise ConfigError(
            worker_key, list(worker_ids),
            f"with natGateways {nat_gateways} the worker runs in these subnets: give at least "
            f"{MIN_AZS}, in different AZs",
        )
    return ExistingVpc(vpc_id, private, public)
