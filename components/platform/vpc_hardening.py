"""What the created VPC needs besides its subnets: its default security group closed, and flow logs.

- `aws.ec2.DefaultSecurityGroup` adopts the security group AWS makes with every VPC and removes
  its rules (AWS's default lets members reach each other and anything outside). Nothing here uses
  it; a resource that lands in it by mistake then has no network at all, instead of an open one.
- VPC flow logs (all traffic: accepted and rejected) to a log group of their own, with their own
  retention and encrypted with the stack key; delivered by a role only the VPC Flow Logs service
  may assume, for this account's flow logs, that may write to that log group only.

An adopted VPC (`vpcId`) is its owner's: neither is declared for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.config.reader import NAMESPACE
from components.platform.aws import VPC_FLOW_LOGS, AwsContext, policy_document

# 600 s is AWS's default and the cheapest aggregation; 60 s multiplies the records.
FLOW_LOG_AGGREGATION_SECONDS = 600


def flow_log_group_name(prefix: str) -> str:
    return f"/vpc/{prefix}/flow-logs"


@dataclass(frozen=True)
class VpcHardeningArgs:
    vpc_id: pulumi.Input[str]
    prefix: str
    context: AwsContext
    flow_logs: bool
    flow_log_retention_days: int
    # The stack key, once its policy grants CloudWatch Logs this log group.
    kms_key_arn: pulumi.Input[str]
    tags: Mapping[str, str]


class VpcHardening(pulumi.ComponentResource):
    default_security_group: aws.ec2.DefaultSecurityGroup
    flow_log: Optional[aws.ec2.FlowLog]
    flow_log_group: Optional[aws.cloudwatch.LogGroup]

    def __init__(self, name: str, args: VpcHardeningArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:VpcHardening", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        ctx = args.context

        self.default_security_group = aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=args.vpc_id,
            ingress=[],
            egress=[],
            tags={**tags, "Name": f"{args.prefix}-default-unused"},
            opts=child,
        )

        self.flow_log = self.flow_log_group = None
        if args.flow_logs:
            group_name = flow_log_group_name(args.prefix)
            self.flow_log_group = aws.cloudwatch.LogGroup(
                f"{name}-flow-logs",
                name=group_name,
                retention_in_days=args.flow_log_retention_days,
                kms_key_id=args.kms_key_arn,
                tags=tags,
                opts=child,
            )
            role = aws.iam.Role(
                f"{name}-flow-logs-role",
                description=f"{NAMESPACE}: VPC Flow Logs delivers to the flow-log group",
                assume_role_policy=policy_document([{
                    "Effect": "Allow",
                    "Principal": {"Service": VPC_FLOW_LOGS},
                    "Action": "sts:AssumeRole",
                    # Confused deputy: only this account's flow logs (AWS flow-logs-cwl.html).
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": ctx.account_id},
                        "ArnLike": {"aws:SourceArn": ctx.arn("ec2", "vpc-flow-log/*")},
                    },
                }]),
                tags=tags,
                opts=child,
            )
            aws.iam.RolePolicy(
                f"{name}-flow-logs-delivery",
                role=role.name,
                policy=policy_document([
                    {
                        "Sid": "WriteTheFlowLogGroup",
                        "Effect": "Allow",
                        "Action": ["logs:CreateLogStream", "logs:PutLogEvents",
                                   "logs:DescribeLogStreams"],
                        # Stream names are the network interfaces' ids, known only at run time.
                        "Resource": ctx.arn("logs", f"log-group:{group_name}:*"),
                    },
                    {
                        "Sid": "FindTheFlowLogGroup",
                        "Effect": "Allow",
                        "Action": "logs:DescribeLogGroups",
                        # AWS: DescribeLogGroups lists groups and takes no group ARN; the ARN
                        # pins this account and region.
                        "Resource": ctx.arn("logs", "log-group:*"),
                    },
                ]),
                opts=pulumi.ResourceOptions(parent=role),
            )
            self.flow_log = aws.ec2.FlowLog(
                f"{name}-flow-log",
                vpc_id=args.vpc_id,
                traffic_type="ALL",
                log_destination_type="cloud-watch-logs",
                log_destination=self.flow_log_group.arn,
                iam_role_arn=role.arn,
                max_aggregation_interval=FLOW_LOG_AGGREGATION_SECONDS,
                tags=tags,
                opts=child,
            )

        self.register_outputs({
            "default_security_group_id": self.default_security_group.id,
            "flow_log_id": self.flow_log.id if self.flow_log else None,
        })
