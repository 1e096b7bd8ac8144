"""The created VPC: its default security group closed, flow logs on by default with their own
retention and delivery role; flow-run egress as configured."""

from __future__ import annotations

import json

import pytest

from components.platform.vpc_hardening import FLOW_LOG_AGGREGATION_SECONDS
from tests.support.harness import (
    ACCOUNT, REGION, evaluate_stack, policy, project_defaults, stack_file_values, stack_names,
)

DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
SG = "aws:ec2/securityGroup:SecurityGroup"
ADOPTED = {"vpcId": "vpc-0123456789abcdef0",
           "privateSubnetIds": json.dumps(["subnet-01234567", "subnet-89abcdef"])}


@pytest.mark.parametrize("stack", stack_names())
def test_the_vpcs_default_security_group_has_no_rule(evaluated, stack):
    evaluation = evaluated(stack)
    group = evaluation.one(DEFAULT_SG).inputs
    assert group["vpcId"] == evaluation.exports["vpcId"]
    assert group.get("ingress", []) == [] and group.get("egress", []) == []


@pytest.mark.parametrize("stack", stack_names())
def test_flow_logs_record_all_traffic_to_their_own_encrypted_group(evaluated, stack):
    evaluation = evaluated(stack)
    flow_log = evaluation.one(FLOW_LOG).inputs
    group = evaluation.one(LOG_GROUP, "vpc-hardening-flow-logs").inputs
    assert flow_log["vpcId"] == evaluation.exports["vpcId"]
    assert (flow_log["trafficType"], flow_log["logDestinationType"]) == ("ALL", "cloud-watch-logs")
    assert flow_log["logDestination"] == (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group['name']}")
    assert flow_log["maxAggregationInterval"] == FLOW_LOG_AGGREGATION_SECONDS
    assert group["name"] == evaluation.exports["vpcFlowLogGroupName"]
    # Pulumi.yaml's default, not the worker's retention; the prod stacks keep a year (CKV_AWS_338).
    assert group["retentionInDays"] == (365 if stack.endswith("prod") else 90)
    assert group["kmsKeyId"] == evaluation.exports["stackKeyArn"]


def test_flow_log_role_is_for_this_accounts_flow_logs_and_writes_one_group(evaluated):
    evaluation = evaluated("prod")
    role = evaluation.one("aws:iam/role:Role", "vpc-hardening-flow-logs-role")
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc-flow-log/*"}}
    write, find = policy(evaluation.one("aws:iam/rolePolicy:RolePolicy",
                                        "vpc-hardening-flow-logs-delivery"))["Statement"]
    group = evaluation.exports["vpcFlowLogGroupName"]
    assert write["Resource"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"
    assert find["Action"] == "logs:DescribeLogGroups"


def test_flow_logs_off_and_retention_are_configurable(evaluated):
    off = evaluate_stack("dev", vpcFlowLogs="false")
    assert not off.of_type(FLOW_LOG)
    assert "vpc-hardening-flow-logs" not in {g.name for g in off.of_type(LOG_GROUP)}
    assert off.of_type(DEFAULT_SG), "the default group is closed either way"
    assert "vpcFlowLogGroupName" not in off.exports
    # prod's stack file keeps them a year; dev leaves the key to Pulumi.yaml's default.
    days = {stack: evaluated(stack).one(LOG_GROUP, "vpc-hardening-flow-logs").inputs["retentionInDays"]
            for stack in ("dev", "prod")}
    assert days == {"dev": project_defaults()["vpcFlowLogRetentionDays"],
                    "prod": stack_file_values("prod")["vpcFlowLogRetentionDays"]}
    assert days["dev"] != days["prod"]


def test_an_adopted_vpc_is_left_to_its_owner():
    evaluation = evaluate_stack("staging", **ADOPTED)
    assert not evaluation.of_type(DEFAULT_SG) and not evaluation.of_type(FLOW_LOG)
    assert "defaultSecurityGroupId" not in evaluation.exports


def _egress(evaluation):
    group = evaluation.one(SG, "network-flow-run-sg").inputs
    return [(r["protocol"], r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in group["egress"]]


def test_flow_run_egress_is_open_by_default(evaluated):
    assert _egress(evaluated("dev")) == [("-1", 0, 0, ["0.0.0.0/0"])]


def test_flow_run_egress_https_allows_443_and_the_prefect_api_port_only():
    assert _egress(evaluate_stack("dev", flowRunEgress="https")) == [
        ("tcp", 443, 443, ["0.0.0.0/0"])]
    self_hosted = evaluate_stack("dev", flowRunEgress="https",
                                 prefectApiUrl="http://prefect.internal:4200/api")
    assert _egress(self_hosted) == [("tcp", 443, 443, ["0.0.0.0/0"]),
                                    ("tcp", 4200, 4200, ["0.0.0.0/0"])]
