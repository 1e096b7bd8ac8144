"""IAM: four roles, each with exactly what its holder does. The worker's task role allows every AWS
call prefect-aws's ECS worker and observer make and nothing else, scoped to this stack's cluster,
log group and flow-run roles; no action is a wildcard. (Every "*" resource's reason:
test_wildcard_resources.py.)"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest

from tests.support.harness import (
    ACCOUNT, REGION, ROOT, evaluate, load_stack_config, policy, stack_names, with_credentials,
)

ROLE = "aws:iam/role:Role"
INLINE = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
TASK_EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
ROLES = {"iam-execution", "iam-worker-task", "iam-flow-run-execution", "iam-flow-run-task"}
# Found without importing it (importing prefect takes seconds).
PREFECT_AWS = Path(importlib.util.find_spec("prefect_aws").origin).parent
# The clients prefect-aws's worker and observer use, and the IAM service prefix of each.
CLIENT_CALL = re.compile(r"\b(ecs|ec2|logs|sqs)_client\.([a-z][a-z_]*)\(")


def role_arn(evaluation, name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{role_name(evaluation, name)}"


def role_name(evaluation, name: str) -> str:
    """The physical name the mock gave the role, read back from an export."""
    exports = {"iam-execution": "executionRoleArn", "iam-worker-task": "workerTaskRoleArn",
               "iam-flow-run-execution": "flowRunExecutionRoleArn",
               "iam-flow-run-task": "flowRunTaskRoleArn"}
    return evaluation.exports[exports[name]].rsplit("/", 1)[1]


def inline(evaluation, name: str) -> list[dict]:
    return policy(evaluation.one(INLINE, name))["Statement"]


def all_statements(evaluation) -> list[dict]:
    return [s for r in evaluation.of_type(INLINE) for s in policy(r)["Statement"]] + [
        s for r in evaluation.of_type(ROLE) for s in json.loads(r.inputs["assumeRolePolicy"])["Statement"]]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def calls_prefect_aws_makes() -> set[str]:
    """IAM actions for the boto3 calls in the worker and observer source, e.g. ecs:RunTask."""
    actions = set()
    for path in (PREFECT_AWS / "workers" / "ecs_worker.py", PREFECT_AWS / "observers" / "ecs.py"):
        for service, operation in CLIENT_CALL.findall(path.read_text()):
            actions.add(f"{service}:" + "".join(p.capitalize() for p in operation.split("_")))
    return actions


@pytest.mark.parametrize("stack", stack_names())
def test_four_roles_assumable_only_by_ecs_tasks_of_this_account(evaluated, stack):
    # The VPC flow-log delivery role is VPC Flow Logs' (tests/unit/test_hardening_network.py);
    # the server's own roles are not the worker's either.
    roles = [r for r in evaluated(stack).of_type(ROLE) if r.name.startswith("iam-")]
    assert {r.name for r in roles} == ROLES
    for role in roles:
        assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [{
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        }]


@pytest.mark.parametrize("role", ["iam-execution", "iam-flow-run-execution"])
def test_execution_roles_get_the_managed_policy_and_read_exactly_the_secret(evaluated, role):
    evaluation = evaluated("staging")
    attachment = evaluation.one(ATTACHMENT, f"{role}-managed").inputs
    assert attachment == {"role": role_name(evaluation, role), "policyArn": TASK_EXECUTION_POLICY}
    assert inline(evaluation, f"{role}-secret") == [{
        "Sid": "ReadPrefectCredential",
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": evaluation.exports["credentialSecretArn"],
    }]


def test_worker_task_role_has_exactly_these_statements(evaluated):
    evaluation = evaluated("prod")
    cluster = evaluation.exports["clusterName"]
    tasks = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/*"
    task_definitions = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/*"
    # prefect-aws's family for the pool's runs: prefect_<pool>_<deployment id>, any revision.
    families = (f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/"
                f"prefect_{evaluation.exports['workPoolName']}_*:*")
    log_group = evaluation.exports["logGroupName"]
    assert inline(evaluation, "iam-worker-task") == [
        {"Sid": "RegisterFlowRunTaskDefinitions", "Effect": "Allow",
         "Action": "ecs:RegisterTaskDefinition", "Resource": families},
        {"Sid": "DescribeAndDeregisterTaskDefinitions", "Effect": "Allow",
         "Action": ["ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition"],
         "Resource": "*"},
        {"Sid": "RunFlowRunTasksInThisCluster", "Effect": "Allow", "Action": "ecs:RunTask",
         "Resource": task_definitions,
         "Condition": {"ArnEquals": {"ecs:cluster": evaluation.exports["clusterArn"]}}},
        {"Sid": "WatchAndStopFlowRunTasks", "Effect": "Allow",
         "Action": ["ecs:DescribeTasks", "ecs:StopTask"], "Resource": tasks},
        {"Sid": "TagOnCreate", "Effect": "Allow", "Action": "ecs:TagResource",
         "Resource": [families, tasks],
         "Condition": {"StringEquals": {"ecs:CreateAction": ["RunTask", "RegisterTaskDefinition"]}}},
        {"Sid": "ReadNetworkForTaskPlacement", "Effect": "Allow",
         "Action": ["ec2:DescribeSubnets", "ec2:DescribeVpcs"], "Resource": "*"},
        {"Sid": "ReadFlowRunLogs", "Effect": "Allow", "Action": "logs:GetLogEvents",
         "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{log_group}:log-stream:*"},
        {"Sid": "PassFlowRunRolesToEcsOnly", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": [role_arn(evaluation, "iam-flow-run-execution"),
                      role_arn(evaluation, "iam-flow-run-task")],
         "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}},
        {"Sid": "ReadEcsTaskEvents", "Effect": "Allow",
         "Action": ["sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility"],
         "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{cluster}-ecs-events"},
    ]


def test_worker_task_role_allows_every_call_prefect_aws_makes_and_no_other(evaluated):
    granted = {a for s in inline(evaluated("prod"), "iam-worker-task") for a in as_list(s["Action"])}
    called = calls_prefect_aws_makes()
    assert {"ecs:RunTask", "ecs:RegisterTaskDefinition", "ecs:DescribeTasks",
            "logs:GetLogEvents", "sqs:ReceiveMessage"} <= called  # the source scan still finds the calls
    # TagResource and PassRole are authorised inside RunTask/RegisterTaskDefinition, not called.
    assert granted - {"ecs:TagResource", "iam:PassRole"} == called


def test_worker_can_pass_only_the_flow_run_roles_and_only_to_ecs(evaluated):
    evaluation = evaluated("dev")
    (pass_role,) = [s for s in inline(evaluation, "iam-worker-task") if s["Action"] == "iam:PassRole"]
    assert sorted(pass_role["Resource"]) == sorted(
        [role_arn(evaluation, "iam-flow-run-execution"), role_arn(evaluation, "iam-flow-run-task")])
    assert role_arn(evaluation, "iam-execution") not in pass_role["Resource"]
    assert role_arn(evaluation, "iam-worker-task") not in pass_role["Resource"]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_worker_task_role_cannot_pull_images_or_write_logs(evaluated):
    actions = [a for s in inline(evaluated("dev"), "iam-worker-task") for a in as_list(s["Action"])]
    assert not [a for a in actions if a.startswith("ecr:")]
    assert not [a for a in actions if a.startswith("logs:") and a != "logs:GetLogEvents"]
    assert evaluated("dev").of_type(ATTACHMENT) and not [
        a for a in evaluated("dev").of_type(ATTACHMENT) if a.name.startswith("iam-worker-task")]


@pytest.mark.parametrize("stack", stack_names())
def test_no_statement_allows_a_wildcard_action(evaluated, stack):
    actions = [a for s in all_statements(evaluated(stack)) for a in as_list(s["Action"])]
    assert actions and not [a for a in actions if "*" in a]
    assert all(s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s
               for s in all_statements(evaluated(stack)))


def test_flow_run_task_role_starts_with_no_permissions(evaluated):
    # Without the flow-code bucket (tests/unit/test_flow_code.py covers the grant to it).
    evaluation = evaluated("prod", flowCodeBucket="none")
    assert not [r for r in evaluation.of_type(INLINE) if r.name.startswith("iam-flow-run-task")]
    assert not [r for r in evaluation.of_type(ATTACHMENT) if r.name.startswith("iam-flow-run-task")]


def test_flow_run_policy_arns_attach_to_the_flow_run_task_role_only():
    arns = ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
            f"arn:aws:iam::{ACCOUNT}:policy/flows-write-results"]
    evaluation = evaluate(with_credentials(load_stack_config("prod"),
                                           flowRunPolicyArns=json.dumps(arns)))
    attached = [r.inputs for r in evaluation.of_type(ATTACHMENT)
                if r.name.startswith("iam-flow-run-task-policy-")]
    flow_run_task = role_name(evaluation, "iam-flow-run-task")
    assert attached == [{"role": flow_run_task, "policyArn": arn} for arn in arns]
    others = [r.inputs["policyArn"] for r in evaluation.of_type(ATTACHMENT)
              if not r.name.startswith("iam-flow-run-task-policy-")]
    assert others == [TASK_EXECUTION_POLICY, TASK_EXECUTION_POLICY]


def test_iam_module_builds_policies_without_apply():
    """Policies are json_dumps of Outputs, so preview shows them; no resource is made in an apply."""
    tree = ast.parse((ROOT / "components" / "worker" / "iam.py").read_text())
    applies = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "apply"]
    assert applies == []
