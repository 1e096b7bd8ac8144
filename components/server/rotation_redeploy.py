"""A rotated database password redeploys the server.

RDS rotates its managed master secret every 7 days. ECS reads secrets only when a task starts, so a
running server keeps the old password; measured: after the change `/api/health` stays 200 while
`/api/ready` and every API call answer 503. Turning rotation off is not offered for RDS-managed
secrets (only its schedule can change), and a password that never rotates is the weaker trade.
So each successful rotation starts new server tasks, which read the new password:

- An EventBridge rule matches Secrets Manager's `RotationSucceeded` event (delivered by CloudTrail
  as "AWS Service Event via CloudTrail"; service events need no trail) for the server's two
  database secrets only: RDS's managed master secret, and the server role's secret
  (components/server/database.py), should a rotation function be attached to it.
- The server role's password needs no rotation function of its own: every task's
  `prefect-migrate` sets the role's password to the secret's current value before the server
  starts, so `put-secret-value` and a run of this state machine rotate it
  (docs/self-hosted-server.md).
- Its target is a Step Functions state machine (STANDARD; a few executions a month cost nothing
  measurable) whose states call ECS `UpdateService` with `forceNewDeployment` on each server
  service, through the AWS SDK integration: no Lambda function, no code to patch.
- The state machine's role may `ecs:UpdateService` on exactly those services; EventBridge's role
  may start exactly that state machine.

Each execution is logged (level ALL, with its input and results: the rotation event and ECS's
answers, no secret value) to `/aws/vendedlogs/states/<project>-<stack>-server-redeploy`, encrypted
with the stack key, and traced with X-Ray (checkov CKV_AWS_285/284; a few executions a month stay
inside both free tiers).

The window between the rotation and the new tasks being ready (a minute or two) still answers
503; workers and flow runs retry through it. The schedule is RDS's default (7 days).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.config.reader import NAMESPACE
from components.platform.aws import (EVENTBRIDGE, STEP_FUNCTIONS, AwsContext, policy_document,
                                     service_trust_policy)

UPDATE_SERVICE = "arn:aws:states:::aws-sdk:ecs:updateService"


def execution_log_group_name(prefix: str) -> str:
    """Step Functions' vended logs: the /aws/vendedlogs/ prefix keeps CloudWatch Logs' resource
    policy short (Step Functions Developer Guide, "Logging using CloudWatch Logs")."""
    return f"/aws/vendedlogs/states/{prefix}-server-redeploy"


def rotation_pattern(secret_arns: list[str]) -> dict[str, Any]:
    """Secrets Manager's RotationSucceeded service event for these secrets."""
    return {
        "source": ["aws.secretsmanager"],
        "detail-type": ["AWS Service Event via CloudTrail"],
        "detail": {
            "eventSource": ["secretsmanager.amazonaws.com"],
            "eventName": ["RotationSucceeded"],
            "additionalEventData": {"SecretId": list(secret_arns)},
        },
    }


def redeploy_definition(cluster_arn: str, services: Mapping[str, str]) -> dict[str, Any]:
    """One ECS UpdateService (forceNewDeployment) per service, in order, each retried."""
    names = list(services)
    states: dict[str, Any] = {}
    for index, role in enumerate(names):
        state: dict[str, Any] = {
            "Type": "Task",
            "Resource": UPDATE_SERVICE,
            "Parameters": {"Cluster": cluster_arn, "Service": services[role],
                           "ForceNewDeployment": True},
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "MaxAttempts": 3,
                       "BackoffRate": 2.0}],
        }
        if index + 1 < len(names):
            state["Next"] = f"Redeploy-{names[index + 1]}"
        else:
            state["End"] = True
        states[f"Redeploy-{role}"] = state
    return {
        "Comment": "Start new Prefect server tasks: they read the rotated database password",
        "StartAt": f"Redeploy-{names[0]}",
        "States": states,
    }


@dataclass(frozen=True)
class RotationArgs:
    prefix: str
    context: AwsContext
    # The secrets whose rotation redeploys the server (the database's master and server role).
    secret_arns: list[pulumi.Input[str]]
    cluster_arn: pulumi.Input[str]
    # role -> ECS service ARN
    service_arns: Mapping[str, pulumi.Input[str]]
    tags: Mapping[str, str]
    # The execution log: its group's name (`execution_log_group_name`), retention and key (the
    # stack key, after its policy names the group).
    log_retention_days: int
    kms_key_arn: pulumi.Input[str]


class RotationRedeploy(pulumi.ComponentResource):
    rule: aws.cloudwatch.EventRule
    state_machine: aws.sfn.StateMachine

    def __init__(self, name: str, args: RotationArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:RotationRedeploy", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        machine_role = aws.iam.Role(
            f"{name}-machine-role",
            description=f"{NAMESPACE}: redeploys the Prefect server after a rotation",
            assume_role_policy=service_trust_policy(STEP_FUNCTIONS, args.context.account_id),
            tags=tags, opts=child)
        aws.iam.RolePolicy(
            f"{name}-machine-policy",
            role=machine_role.name,
            policy=policy_document([{
                "Sid": "RedeployServerServices",
                "Effect": "Allow",
                "Action": "ecs:UpdateService",
                "Resource": list(args.service_arns.values()),
            }, {
                "Sid": "DeliverExecutionLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogDelivery", "logs:GetLogDelivery",
                           "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
                           "logs:ListLogDeliveries", "logs:PutResourcePolicy",
                           "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"],
                # AWS: these log-delivery actions support no resource-level permissions (Step
                # Functions Developer Guide, "IAM policies for logging to CloudWatch Logs").
                "Resource": "*",
            }, {
                "Sid": "SendTraces",
                "Effect": "Allow",
                "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords",
                           "xray:GetSamplingRules", "xray:GetSamplingTargets"],
                # AWS: X-Ray's write actions support no resource-level permissions.
                "Resource": "*",
            }]),
            opts=pulumi.ResourceOptions(parent=machine_role))
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=execution_log_group_name(args.prefix),
            retention_in_days=args.log_retention_days,
            kms_key_id=args.kms_key_arn,
            tags=tags, opts=child)
        self.state_machine = aws.sfn.StateMachine(
            f"{name}-machine",
            name=f"{args.prefix}-server-redeploy",
            type="STANDARD",
            role_arn=machine_role.arn,
            definition=pulumi.Output.all(args.cluster_arn, dict(args.service_arns)).apply(
                lambda v: json.dumps(redeploy_definition(v[0], v[1]))),
            logging_configuration=aws.sfn.StateMachineLoggingConfigurationArgs(
                level="ALL", include_execution_data=True,
                log_destination=pulumi.Output.concat(log_group.arn, ":*")),
            tracing_configuration=aws.sfn.StateMachineTracingConfigurationArgs(enabled=True),
            tags=tags, opts=child)

        events_role = aws.iam.Role(
            f"{name}-events-role",
            description=f"{NAMESPACE}: EventBridge starts the server redeploy",
            assume_role_policy=service_trust_policy(EVENTBRIDGE, args.context.account_id),
            tags=tags, opts=child)
        aws.iam.RolePolicy(
            f"{name}-events-policy",
            role=events_role.name,
            policy=policy_document([{
                "Sid": "StartServerRedeploy",
                "Effect": "Allow",
                "Action": "states:StartExecution",
                "Resource": self.state_machine.arn,
            }]),
            opts=pulumi.ResourceOptions(parent=events_role))
        self.rule = aws.cloudwatch.EventRule(
            f"{name}-rule",
            name=f"{args.prefix}-db-password-rotated",
            description="The Prefect server's database password rotated: redeploy the server",
            event_pattern=pulumi.Output.all(*args.secret_arns).apply(
                lambda arns: json.dumps(rotation_pattern(list(arns)))),
            tags=tags, opts=child)
        aws.cloudwatch.EventTarget(
            f"{name}-target",
            rule=self.rule.name,
            arn=self.state_machine.arn,
            role_arn=events_role.arn,
            opts=pulumi.ResourceOptions(parent=self.rule))

        self.register_outputs({"state_machine_arn": self.state_machine.arn,
                               "rule_name": self.rule.name})
