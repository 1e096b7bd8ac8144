"""What every component builds AWS policies from: the deployment's partition, region and account
(`AwsContext`, for ARNs before resources exist), the service principals, and IAM documents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

# Service principals: who a trust policy or a resource policy lets in.
ECS_TASKS = "ecs-tasks.amazonaws.com"
CLOUDWATCH = "cloudwatch.amazonaws.com"
EVENTBRIDGE = "events.amazonaws.com"
STEP_FUNCTIONS = "states.amazonaws.com"
VPC_FLOW_LOGS = "vpc-flow-logs.amazonaws.com"
TASK_EXECUTION_POLICY = "policy/service-role/AmazonECSTaskExecutionRolePolicy"


@dataclass(frozen=True)
class AwsContext:
    """Partition, region and account of the deployment, for building ARNs before resources exist."""

    partition: pulumi.Output[str]
    region: pulumi.Output[str]
    account_id: pulumi.Output[str]

    @classmethod
    def current(cls, opts: pulumi.InvokeOptions) -> "AwsContext":
        return cls(
            partition=aws.get_partition_output(opts=opts).partition,
            region=aws.get_region_output(opts=opts).region,
            account_id=aws.get_caller_identity_output(opts=opts).account_id,
        )

    def service_host(self, service: str) -> pulumi.Output[str]:
        """`<service>.<region>.amazonaws.com`: the regional principal of CloudWatch Logs, and what
        `kms:ViaService` names."""
        return pulumi.Output.format("{0}.{1}.amazonaws.com", service, self.region)

    def arn(self, service: str, resource: pulumi.Input[str], *, regional: bool = True
            ) -> pulumi.Output[str]:
        return pulumi.Output.format(
            "arn:{0}:{1}:{2}:{3}:{4}", self.partition, service,
            self.region if regional else "", self.account_id, resource,
        )


def service_trust_policy(service: str, account_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """A role only `service` may assume, and only on behalf of this account (confused deputy)."""
    return pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        }],
    })


def policy_document(statements: list[dict[str, Any]]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})
