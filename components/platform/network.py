"""The network the worker and its flow runs live in.

Either a new multi-AZ VPC from `awsx.ec2.Vpc` (public subnets, plus private subnets behind NAT unless
`natGateways` is `none`), or an adopted VPC. Plus two security groups with no ingress at all: the
worker's, whose egress is only what the worker talks to (HTTPS, and the Prefect API's port), and the
flow runs', whose egress is open because flow code reaches whatever it needs (`flowRunEgress: any`)
or, with `flowRunEgress: https`, the worker's ports only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from components.config.network import ExistingVpc, NatGateways, subnet_mask
from components.config.reader import NAMESPACE

# The ports the stack opens, each written once: the data stores' engines listen on their
# defaults, and everything else the tasks reach is HTTPS.
HTTPS_PORT = 443
POSTGRESQL_PORT = 5432
REDIS_PORT = 6379

NAT_STRATEGIES = {
    "none": awsx.ec2.NatGatewayStrategy.NONE,
    "single": awsx.ec2.NatGatewayStrategy.SINGLE,
    "per-az": awsx.ec2.NatGatewayStrategy.ONE_PER_AZ,
}
ANYWHERE_V4 = "0.0.0.0/0"


@dataclass(frozen=True)
class NetworkArgs:
    nat_gateways: NatGateways
    availability_zone_count: int
    vpc_cidr: str
    existing_vpc: Optional[ExistingVpc]
    # Ports the worker reaches besides 443 (AWS APIs, image registry): a self-hosted API's port.
    worker_egress_ports: Sequence[int]
    tags: Mapping[str, str]
    # any: flow code reaches anything; https: 443 and the worker's ports (the Prefect API) only.
    flow_run_egress: str = "any"
    # The stack's own Prefect server listens here (None: no server): isolated subnets for its
    # database and cache, its security group, and the worker's and flow runs' way in.
    server_port: Optional[int] = None


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[Sequence[str]]
    private_subnet_ids: pulumi.Output[Sequence[str]]
    isolated_subnet_ids: pulumi.Output[Sequence[str]]
    worker_subnet_ids: pulumi.Output[Sequence[str]]
    assign_public_ip: bool
    worker_security_group: aws.ec2.SecurityGroup
    flow_run_security_group: aws.ec2.SecurityGroup

    def __init__(self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        if args.existing_vpc is None:
            vpc = awsx.ec2.Vpc(
                f"{name}-vpc",
                cidr_block=args.vpc_cidr,
                number_of_availability_zones=args.availability_zone_count,
                # Auto lays each AZ's subnets out inside that AZ's slice of the VPC (Legacy is
                # deprecated and would warn); explicit masks keep the layout stable.
                subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
                subnet_specs=_subnet_specs(args),
                nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(
                    strategy=NAT_STRATEGIES[args.nat_gateways]
                ),
                enable_dns_hostnames=True,
                enable_dns_support=True,
                tags=dict(args.tags),
                opts=child,
            )
            self.vpc_id = vpc.vpc_id
            self.public_subnet_ids = vpc.public_subnet_ids
            self.private_subnet_ids = vpc.private_subnet_ids
            self.isolated_subnet_ids = vpc.isolated_subnet_ids
        else:
            self.vpc_id = pulumi.Output.from_input(args.existing_vpc.vpc_id)
            self.public_subnet_ids = pulumi.Output.from_input(list(args.existing_vpc.public_subnet_ids))
            self.private_subnet_ids = pulumi.Output.from_input(
                list(args.existing_vpc.private_subnet_ids)
            )
            self.isolated_subnet_ids = pulumi.Output.from_input([])

        self.assign_public_ip = args.nat_gateways == "none"
        self.worker_subnet_ids = (
            self.public_subnet_ids if self.assign_public_ip else self.private_subnet_ids
        )

        self.server_security_group: Optional[aws.ec2.SecurityGroup] = None
        to_server: list[aws.ec2.SecurityGroupEgressArgs] = []
        if args.server_port is not None:
            # Inbound rules are separate resources (components/server/server.py and server_access.py):
            # the worker's egress names this group, so inline ingress naming the worker's group
            # would be a cycle.
            # Its egress is separate rules too: PostgreSQL and Redis go to their stores' groups,
            # declared later (components/server/database.py, redis.py, through
            # `clients_only_security_group`), and the provider manages a group's egress either
            # inline or as rules, never both (inline rules would revoke the separate ones).
            self.server_security_group = aws.ec2.SecurityGroup(
                f"{name}-server-sg",
                description="Prefect server: inbound only from the worker, flow runs and its "
                            "load balancer; outbound HTTPS, and PostgreSQL and Redis to their "
                            "groups only (all separate rules)",
                vpc_id=self.vpc_id,
                tags={**args.tags, "Name": f"{name}-server"},
                opts=child,
            )
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-server-https-out",
                security_group_id=self.server_security_group.id,
                cidr_ipv4=ANYWHERE_V4,
                ip_protocol="tcp", from_port=HTTPS_PORT, to_port=HTTPS_PORT,
                description="HTTPS out: image, AWS APIs, PyPI",
                tags=dict(args.tags),
                opts=pulumi.ResourceOptions(parent=self.server_security_group),
            )
            to_server.append(aws.ec2.SecurityGroupEgressArgs(
                description="Prefect server API", protocol="tcp", from_port=args.server_port,
                to_port=args.server_port, security_groups=[self.server_security_group.id]))

        worker_ports = sorted({HTTPS_PORT, *args.worker_egress_ports})
        self.worker_security_group = self._no_ingress_group(
            name, args, "worker",
            "Prefect worker: no inbound; outbound HTTPS to AWS APIs and Prefect",
            [_egress(f"TCP {port} out", "tcp", port, port) for port in worker_ports] + to_server,
        )
        if args.flow_run_egress == "https":
            # A flow run talks to Prefect (HTTPS or the self-hosted API's port), AWS APIs and
            # image registries; DNS to the VPC resolver is never filtered by security groups.
            self.flow_run_security_group = self._no_ingress_group(
                name, args, "flow-run",
                "Prefect flow runs: no inbound; outbound HTTPS and the Prefect API only",
                [_egress(f"TCP {port} out", "tcp", port, port) for port in worker_ports]
                + to_server,
            )
        else:
            self.flow_run_security_group = self._no_ingress_group(
                name, args, "flow-run",
                "Prefect flow runs: no inbound; outbound open for flow code",
                [_egress("all out", "-1", 0, 0)],
            )

        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
                "worker_subnet_ids": self.worker_subnet_ids,
                "isolated_subnet_ids": self.isolated_subnet_ids,
                "worker_security_group_id": self.worker_security_group.id,
                "flow_run_security_group_id": self.flow_run_security_group.id,
            }
        )


    def _no_ingress_group(self, name: str, args: NetworkArgs, role: str, description: str,
                          egress: list[aws.ec2.SecurityGroupEgressArgs]) -> aws.ec2.SecurityGroup:
        return aws.ec2.SecurityGroup(
            f"{name}-{role}-sg",
            description=description,
            vpc_id=self.vpc_id,
            ingress=[],
            egress=egress,
            tags={**args.tags, "Name": f"{name}-{role}"},
            opts=pulumi.ResourceOptions(parent=self),
        )


def clients_only_security_group(name: str, *, description: str, rule_description: str,
                                port: int, vpc_id: pulumi.Input[str],
                                client_security_group_id: pulumi.Input[str],
                                tags: dict[str, str], opts: pulumi.ResourceOptions,
                                ) -> aws.ec2.SecurityGroup:
    """A data store's security group: `port` from one client group, nothing out; and the
    client's way out to it (`<name>-client-out`), to this group only, not to an address range."""
    group = aws.ec2.SecurityGroup(
        name,
        description=description,
        vpc_id=vpc_id,
        ingress=[aws.ec2.SecurityGroupIngressArgs(
            description=rule_description, protocol="tcp", from_port=port, to_port=port,
            security_groups=[client_security_group_id])],
        egress=[],
        tags=tags,
        opts=opts,
    )
    aws.vpc.SecurityGroupEgressRule(
        f"{name}-client-out",
        security_group_id=client_security_group_id,
        referenced_security_group_id=group.id,
        ip_protocol="tcp", from_port=port, to_port=port,
        description=f"TCP {port} out to {name} only",
        tags={key: value for key, value in tags.items() if key != "Name"},
        opts=pulumi.ResourceOptions(parent=group),
    )
    return group


def _egress(description: str, protocol: str, from_port: int, to_port: int,
            cidr_blocks: Sequence[str] = (ANYWHERE_V4,)) -> aws.ec2.SecurityGroupEgressArgs:
    return aws.ec2.SecurityGroupEgressArgs(
        description=description, protocol=protocol, from_port=from_port, to_port=to_port,
        cidr_blocks=list(cidr_blocks),
    )


def _subnet_specs(args: NetworkArgs) -> list[awsx.ec2.SubnetSpecArgs]:
    mask = subnet_mask(args.vpc_cidr)
    specs = [awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PUBLIC, cidr_mask=mask,
                                     tags=dict(args.tags))]
    # With no NAT there is no route out of a private subnet, so none is made.
    if args.nat_gateways != "none":
        specs.append(awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PRIVATE, cidr_mask=mask,
                                             tags=dict(args.tags)))
    # The server's database and cache: no route to the internet in any NAT mode.
    if args.server_port is not None:
        specs.append(awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.ISOLATED, cidr_mask=mask,
                                             tags=dict(args.tags)))
    return specs
