"""The network: AZs and NAT strategy per stack as handed to awsx, where the worker runs and whether it
has a public IP per NAT mode, no inbound rule anywhere, narrow worker egress, and an adopted VPC."""

from __future__ import annotations

import ipaddress
import json

import pytest

from tests.support.harness import (
    evaluate, load_stack_config, runs_server, stack_file_values, stack_names, stack_settings,
    with_credentials, worker_only_stack_names,
)

VPC = "awsx:ec2:Vpc"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SERVICE = "aws:ecs/service:Service"
AWSX_NAT = {"none": "None", "single": "Single", "per-az": "OnePerAz"}
# The NAT mode each stack file exists to exercise.
STACK_NAT = {"dev": "none", "staging": "single", "prod": "per-az"}
ADOPTED_VPC = "vpc-0a1b2c3d4e5f60718"
ADOPTED_PRIVATE = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]
ADOPTED_PUBLIC = ["subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2"]


def worker_sg(evaluation):
    return evaluation.one(SECURITY_GROUP, "network-worker-sg")


def test_each_nat_mode_has_its_own_stack_file():
    assert {stack_file_values(s)["natGateways"] for s in stack_names()} >= set(AWSX_NAT)
    assert {s: stack_file_values(s)["natGateways"] for s in STACK_NAT} == STACK_NAT


@pytest.mark.parametrize("stack", stack_names())
def test_vpc_gets_the_stacks_az_count_and_nat_strategy(evaluated, stack):
    values = stack_file_values(stack)
    vpc = evaluated(stack).one(VPC).inputs
    assert vpc["numberOfAvailabilityZones"] == values["availabilityZoneCount"] >= 2
    assert vpc["natGateways"] == {"strategy": AWSX_NAT[values["natGateways"]]}
    assert vpc["subnetStrategy"] == "Auto"
    assert vpc["enableDnsHostnames"] is True and vpc["enableDnsSupport"] is True


def test_prod_spans_three_azs_with_a_nat_gateway_in_each(evaluated):
    vpc = evaluated("prod").one(VPC).inputs
    assert (vpc["numberOfAvailabilityZones"], vpc["natGateways"]["strategy"]) == (3, "OnePerAz")


@pytest.mark.parametrize("stack", stack_names())
def test_private_subnets_exist_only_behind_a_nat_gateway(evaluated, stack):
    values = stack_file_values(stack)
    vpc = evaluated(stack).one(VPC).inputs
    types = [spec["type"] for spec in vpc["subnetSpecs"]]
    expected = ["Public"] if values["natGateways"] == "none" else ["Public", "Private"]
    # A stack's own server keeps its database and Redis in isolated subnets, in every NAT mode.
    assert types == expected + (["Isolated"] if runs_server(stack) else [])


@pytest.mark.parametrize("stack", stack_names())
def test_subnets_are_a_sixteenth_of_the_vpc_and_fit_each_az_slice(evaluated, stack):
    vpc = evaluated(stack).one(VPC).inputs
    network = ipaddress.ip_network(vpc["cidrBlock"])
    masks = [spec["cidrMask"] for spec in vpc["subnetSpecs"]]
    assert set(masks) == {network.prefixlen + 4}
    # awsx's Auto layout: each AZ owns 1/2^ceil(log2(AZs)) of the VPC.
    az_count = int(vpc["numberOfAvailabilityZones"])
    az_slice = network.num_addresses >> (az_count - 1).bit_length()
    assert sum(network.num_addresses >> 4 for _ in masks) <= az_slice


@pytest.mark.parametrize("stack", stack_names())
def test_worker_runs_in_public_subnets_with_a_public_ip_only_without_nat(evaluated, stack):
    evaluation = evaluated(stack)
    network = evaluation.one(SERVICE, "worker-service").inputs["networkConfiguration"]
    no_nat = stack_file_values(stack)["natGateways"] == "none"
    expected_subnets = evaluation.exports["publicSubnetIds" if no_nat else "privateSubnetIds"]
    assert network["subnets"] == expected_subnets == evaluation.exports["workerSubnetIds"]
    assert len(network["subnets"]) == stack_file_values(stack)["availabilityZoneCount"]
    assert network["assignPublicIp"] is no_nat
    assert evaluation.exports["workerAssignsPublicIp"] is no_nat
    assert network["securityGroups"] == [evaluation.exports["workerSecurityGroupId"]]


# With its own server, the stack opens the server's port to the worker, flow runs and ALB only:
# tests/unit/test_server_network.py.
@pytest.mark.parametrize("stack", worker_only_stack_names())
def test_no_security_group_accepts_any_inbound_traffic(evaluated, stack):
    evaluation = evaluated(stack)
    groups = evaluation.of_type(SECURITY_GROUP)
    assert len(groups) == 2
    assert all(group.inputs["ingress"] == [] for group in groups)
    standalone_rules = [r.type for r in evaluation.resources
                        if "ingress" in r.type.lower() or "securityGroupRule" in r.type]
    assert standalone_rules == []


def test_worker_egress_to_prefect_cloud_is_https_only(evaluated):
    egress = worker_sg(evaluated("dev")).inputs["egress"]
    assert [(e["protocol"], e["fromPort"], e["toPort"], e["cidrBlocks"]) for e in egress] == [
        ("tcp", 443, 443, ["0.0.0.0/0"])]


@pytest.mark.parametrize("url,port", [
    ("http://prefect.internal:4200/api", 4200),
    ("http://prefect.internal/api", 80),
    ("https://prefect.example.com/api", 443),
])
def test_a_self_hosted_apis_port_is_read_from_its_url(url, port):
    assert stack_settings("staging", prefectApiUrl=url).api_port == port


def test_worker_egress_adds_the_self_hosted_apis_port():
    config = with_credentials(load_stack_config("staging"),
                              prefectApiUrl="http://prefect.internal:4200/api")
    egress = worker_sg(evaluate(config)).inputs["egress"]
    assert [(e["fromPort"], e["toPort"]) for e in egress] == [(443, 443), (4200, 4200)]
    assert {e["protocol"] for e in egress} == {"tcp"}


def test_flow_runs_get_their_own_group_with_open_egress(evaluated):
    evaluation = evaluated("staging")
    group = evaluation.one(SECURITY_GROUP, "network-flow-run-sg")
    assert group.inputs["egress"] == [{"description": "all out", "protocol": "-1", "fromPort": 0,
                                       "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]
    job = evaluation.exports["workPoolJobVariables"]
    assert job["network_configuration"]["securityGroups"] == [
        evaluation.exports["flowRunSecurityGroupId"]]
    assert evaluation.exports["flowRunSecurityGroupId"] != evaluation.exports["workerSecurityGroupId"]


@pytest.mark.parametrize("nat,worker_subnets,public_ip", [
    ("single", ADOPTED_PRIVATE, False),
    ("none", ADOPTED_PUBLIC, True),
])
def test_adopted_vpc_creates_no_vpc_and_places_the_worker_by_nat_mode(nat, worker_subnets, public_ip):
    config = with_credentials(
        load_stack_config("staging"), natGateways=nat, vpcId=ADOPTED_VPC,
        privateSubnetIds=json.dumps(ADOPTED_PRIVATE), publicSubnetIds=json.dumps(ADOPTED_PUBLIC))
    evaluation = evaluate(config)
    assert evaluation.of_type(VPC) == []
    assert [r for r in evaluation.resources if r.type.startswith("aws:ec2/") and
            r.type != SECURITY_GROUP] == []
    assert {g.inputs["vpcId"] for g in evaluation.of_type(SECURITY_GROUP)} == {ADOPTED_VPC}
    network = evaluation.one(SERVICE, "worker-service").inputs["networkConfiguration"]
    assert (network["subnets"], network["assignPublicIp"]) == (worker_subnets, public_ip)
    assert evaluation.exports["vpcId"] == ADOPTED_VPC
    assert evaluation.exports["workPoolJobVariables"]["vpc_id"] == ADOPTED_VPC
    assert evaluation.exports["workPoolJobVariables"]["network_configuration"]["subnets"] == \
        worker_subnets
