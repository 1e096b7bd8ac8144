"""The four IAM roles of a Prefect ECS deployment, each with only what its holder does.

- `execution_role`: ECS uses it to start the worker: pull the image, write its logs, read the
  Prefect credential secret (that one secret only).
- `worker_task_role`: the worker process itself: register task definitions and run, watch and stop
  flow-run tasks in this cluster only, pass the two flow-run roles to ECS only, and read the
  cluster's task events from the stack's queue (crash detection).
- `flow_run_execution_role`: ECS uses it to start flow-run tasks (image, logs, the same secret).
- `flow_run_task_role`: what flow code may do in AWS: read and write the stack's flow-code bucket
  (granted by `components/platform/flow_code.py`) and what `flowRunPolicyArns` names, nothing else, so a
  flow's AWS access is always an explicit choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.config.reader import NAMESPACE
from components.platform.aws import (ECS_TASKS, TASK_EXECUTION_POLICY, AwsContext, policy_document,
                                     service_trust_policy)


@dataclass(frozen=True)
class IamArgs:
    cluster_name: str
    log_group_name: str
    secret_arn: pulumi.Input[str]
    flow_run_policy_arns: Sequence[str]
    tags: Mapping[str, str]
    # The SQS queue of ECS task events the worker's observer reads (components/worker/ecs_events.py).
    events_queue_name: str
    context: AwsContext
    # The pool the worker polls: it names the task-definition families the worker registers.
    work_pool_name: str = ""


def flow_run_family_prefix(work_pool_name: str) -> str:
    """prefect-aws's ECS_DEFAULT_FAMILY, the pool, and the deployment id that follows."""
    return f"prefect_{work_pool_name}_"


class WorkerIam(pulumi.ComponentResource):
    execution_role: aws.iam.Role
    worker_task_role: aws.iam.Role
    flow_run_execution_role: aws.iam.Role
    flow_run_task_role: aws.iam.Role

    def __init__(self, name: str, args: IamArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:WorkerIam", name, None, opts)
        self._name = name
        self._args = args
        self.context = args.context
        ctx = self.context
        cluster_arn = ctx.arn("ecs", f"cluster/{args.cluster_name}")
        read_secret = {
            "Sid": "ReadPrefectCredential",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": args.secret_arn,
        }

        self.execution_role = self._role("execution", "ECS starts the Prefect worker with it")
        self._attach_execution_policy(self.execution_role, "execution")
        self._inline(self.execution_role, "execution-secret", [read_secret])

        self.flow_run_execution_role = self._role(
            "flow-run-execution", "ECS starts Prefect flow-run tasks with it")
        self._attach_execution_policy(self.flow_run_execution_role, "flow-run-execution")
        self._inline(self.flow_run_execution_role, "flow-run-execution-secret", [read_secret])

        self.flow_run_task_role = self._role("flow-run-task", "Prefect flow code runs with it")
        for index, policy_arn in enumerate(args.flow_run_policy_arns):
            aws.iam.RolePolicyAttachment(
                f"{name}-flow-run-task-policy-{index}",
                role=self.flow_run_task_role.name,
                policy_arn=policy_arn,
                opts=pulumi.ResourceOptions(parent=self.flow_run_task_role),
            )

        self.worker_task_role = self._role("worker-task", "the Prefect worker runs with it")
        # Families the worker registers: prefect-aws names each `prefect_<pool>_<deployment id>`
        # (ecs_worker.py _get_or_generate_family; rung 3 reads them back from RegisterTaskDefinition).
        # Deployment ids exist only at run time, and ":*" is the revision ECS assigns.
        flow_run_families = ctx.arn(
            "ecs", f"task-definition/{flow_run_family_prefix(args.work_pool_name)}*:*")
        # RunTask also accepts a definition a deployment names itself (the `task_definition_arn`
        # job variable), whose family is the deployment's choice: only "task-definition/*" names
        # them all, and the cluster condition below keeps every task in this stack's cluster.
        task_definitions = ctx.arn("ecs", "task-definition/*")
        # Task ids exist only once RunTask returns; the cluster part pins this stack's cluster.
        cluster_tasks = ctx.arn("ecs", f"task/{args.cluster_name}/*")
        self._inline(self.worker_task_role, "worker-task", [
            {
                "Sid": "RegisterFlowRunTaskDefinitions",
                "Effect": "Allow",
                # One definition per deployment, in its own family (or the family's latest
                # revision is reused: match_latest_revision_in_family).
                "Action": "ecs:RegisterTaskDefinition",
                "Resource": flow_run_families,
            },
            {
                "Sid": "DescribeAndDeregisterTaskDefinitions",
                "Effect": "Allow",
                # The worker describes a definition (and the family's latest revision) before each
                # run; its observer deregisters the ones it registered once their task stops. It
                # never lists definitions.
                "Action": ["ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition"],
                # AWS: these two actions have no resource type in IAM (the Service Authorization
                # Reference lists none), so a statement naming them must use "*".
                "Resource": "*",
            },
            {
                "Sid": "RunFlowRunTasksInThisCluster",
                "Effect": "Allow",
                "Action": "ecs:RunTask",
                # RunTask's resource is the task definition; the worker derives its family from
                # each deployment's id at run time, so only "task-definition/*" can name them all.
                # The condition keeps every task in this stack's cluster.
                "Resource": task_definitions,
                "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}},
            },
            {
                "Sid": "WatchAndStopFlowRunTasks",
                "Effect": "Allow",
                "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
                # The worker stops a cancelled run's task; its observer describes a task (with its
                # tags) on each ECS event. Task ids exist only after RunTask, so the "*" is the task
                # id; the ARN pins this cluster.
                "Resource": cluster_tasks,
            },
            {
                "Sid": "TagOnCreate",
                "Effect": "Allow",
                "Action": "ecs:TagResource",
                # RunTask with tags (the worker tags every flow-run task with prefect.io/*) needs
                # ecs:TagResource; the condition allows it only inside RunTask or
                # RegisterTaskDefinition, on the same "*" ARNs as above.
                "Resource": [flow_run_families, cluster_tasks],
                "Condition": {"StringEquals": {
                    "ecs:CreateAction": ["RunTask", "RegisterTaskDefinition"]}},
            },
            {
                "Sid": "ReadNetworkForTaskPlacement",
                "Effect": "Allow",
                # With vpc_id and network_configuration in the job variables, the worker checks
                # that the VPC exists and the subnets belong to it before each RunTask.
                "Action": ["ec2:DescribeSubnets", "ec2:DescribeVpcs"],
                # AWS: EC2 Describe* actions support no resource-level permissions.
                "Resource": "*",
            },
            {
                "Sid": "ReadFlowRunLogs",
                "Effect": "Allow",
                # The observer copies a crashed flow run's last log lines into Prefect. Flow runs
                # log to this stack's group (the job variables say so); stream names carry the
                # deployment and task ids, hence the "*".
                "Action": "logs:GetLogEvents",
                "Resource": ctx.arn("logs", f"log-group:{args.log_group_name}:log-stream:*"),
            },
            {
                "Sid": "PassFlowRunRolesToEcsOnly",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": [self.flow_run_execution_role.arn, self.flow_run_task_role.arn],
                "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS}},
            },
            {
                "Sid": "ReadEcsTaskEvents",
                "Effect": "Allow",
                # What prefect-aws's observer calls (observers/ecs.py SqsSubscriber).
                "Action": ["sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                           "sqs:ChangeMessageVisibility"],
                "Resource": ctx.arn("sqs", args.events_queue_name),
            },
        ])

        self.register_outputs({
            "execution_role_arn": self.execution_role.arn,
            "worker_task_role_arn": self.worker_task_role.arn,
            "flow_run_execution_role_arn": self.flow_run_execution_role.arn,
            "flow_run_task_role_arn": self.flow_run_task_role.arn,
        })

    def _role(self, role: str, description: str) -> aws.iam.Role:
        return aws.iam.Role(
            f"{self._name}-{role}",
            description=f"{NAMESPACE}: {description}",
            assume_role_policy=service_trust_policy(ECS_TASKS, self.context.account_id),
            tags=dict(self._args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _attach_execution_policy(self, role: aws.iam.Role, name: str) -> None:
        aws.iam.RolePolicyAttachment(
            f"{self._name}-{name}-managed",
            role=role.name,
            policy_arn=pulumi.Output.format(
                "arn:{0}:iam::aws:{1}", self.context.partition, TASK_EXECUTION_POLICY),
            opts=pulumi.ResourceOptions(parent=role),
        )

    def _inline(self, role: aws.iam.Role, name: str, statements: list[dict[str, Any]]) -> None:
        aws.iam.RolePolicy(
            f"{self._name}-{name}",
            role=role.name,
            policy=policy_document(statements),
            opts=pulumi.ResourceOptions(parent=role),
        )
