"""The worker's own credentials, on moto with IAM enforcement on: a work pool template edited to
run flows with another role is refused, and the worker cannot widen its own policy.

The stack is replayed with authentication off (moto's default); then `/moto-api/reset-auth`
(moto's `INITIAL_NO_AUTH_ACTION_COUNT`, what `set_initial_no_auth_action_count` posts in server
mode) turns enforcement on, and every call signs with the worker task role's session
credentials (from AssumeRole). moto enforces each action on its own resource; it does not
evaluate the `iam:PassRole` that AWS checks inside RegisterTaskDefinition and RunTask, so
testbed.replay.aws_rules.pass_role_refusals evaluates that one with moto's own policy engine, on
the worker role's policies as moto stores them.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.support.harness import Evaluation
from testbed.replay import Replay, replay
from testbed.replay.aws_rules import pass_role_refusals

pytestmark = pytest.mark.slow


def set_auth(url: str, free_requests: str) -> None:
    """moto's INITIAL_NO_AUTH_ACTION_COUNT in server mode: requests served before enforcement."""
    # A raw body: a form content type would leave moto's request.data empty.
    request = urllib.request.Request(f"{url}/moto-api/reset-auth", data=free_requests.encode(),
                                     method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


@pytest.fixture
def worker_session(moto, evaluated) -> Iterator[dict[str, Any]]:
    evaluation: Evaluation = evaluated("dev")
    replayed: Replay = replay(evaluation, moto.url)
    exports = replayed.real(evaluation.exports)
    iam = replayed.client("iam")
    worker_role = exports["workerTaskRoleArn"].rsplit("/", 1)[1]
    policies = [iam.get_role_policy(RoleName=worker_role, PolicyName=name)["PolicyDocument"]
                for name in iam.list_role_policies(RoleName=worker_role)["PolicyNames"]]
    assert policies
    credentials = replayed.client("sts").assume_role(
        RoleArn=exports["workerTaskRoleArn"], RoleSessionName="worker")["Credentials"]
    session = boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"],
                            region_name=replayed.region)
    set_auth(moto.url, "0")
    try:
        yield {"exports": exports, "session": session, "url": moto.url,
               "policies": [p if isinstance(p, str) else json.dumps(p) for p in policies]}
    finally:
        set_auth(moto.url, "inf")


def registration(template_variables: dict[str, Any], exports: dict[str, Any]) -> dict[str, Any]:
    """The RegisterTaskDefinition the worker sends for a run of this pool (prefect-aws renders the
    template's `{{ execution_role_arn }}` and `{{ task_role_arn }}` from the job variables)."""
    return {"family": "prefect_ecs-dev_0b1a4c3e", "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512",
            "executionRoleArn": template_variables["execution_role_arn"],
            "taskRoleArn": template_variables["task_role_arn"],
            "containerDefinitions": [{"name": "prefect", "image": "prefecthq/prefect:3",
                                      "memory": 512}]}


def test_a_template_edited_to_pass_another_role_is_refused_on_iam_pass_role(worker_session):
    exports = worker_session["exports"]
    variables = exports["workPoolJobVariables"]
    assert (variables["task_role_arn"], variables["execution_role_arn"]) == (
        exports["flowRunTaskRoleArn"], exports["flowRunExecutionRoleArn"])
    policies = worker_session["policies"]
    # As declared: both roles the template passes are the flow-run roles, which IAM allows.
    assert pass_role_refusals(policies, registration(variables, exports)) == []
    # Edited in the UI to run flows as the worker's execution role (it reads the credential
    # secret), or as the worker's own role: ECS would answer AccessDenied on iam:PassRole.
    for other in (exports["executionRoleArn"], exports["workerTaskRoleArn"]):
        edited = {**variables, "task_role_arn": other}
        assert pass_role_refusals(policies, registration(edited, exports)) == [other]
        edited = {**variables, "execution_role_arn": other}
        assert pass_role_refusals(policies, registration(edited, exports)) == [other]
    # A RunTask override naming another role is refused the same way.
    override = {"taskDefinition": "prefect_ecs-dev_0b1a4c3e:1",
                "overrides": {"taskRoleArn": exports["executionRoleArn"]}}
    assert pass_role_refusals(policies, override) == [exports["executionRoleArn"]]
    # The flow-run roles passed to another service than ECS tasks: refused too.
    assert pass_role_refusals(policies, registration(variables, exports),
                              service="lambda.amazonaws.com") == [
        variables["task_role_arn"], variables["execution_role_arn"]]


def test_with_enforcement_on_the_worker_cannot_widen_its_own_policy(worker_session):
    session = worker_session["session"]
    endpoint = {"endpoint_url": worker_session["url"]}
    exports = worker_session["exports"]
    role_name = exports["workerTaskRoleArn"].rsplit("/", 1)[1]
    iam = session.client("iam", **endpoint)
    for call in (
        lambda: iam.put_role_policy(RoleName=role_name, PolicyName="wider", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
            '"Action": "iam:PassRole", "Resource": "*"}]}')),
        lambda: iam.create_role(RoleName="flow-admin", AssumeRolePolicyDocument="{}"),
        lambda: iam.attach_role_policy(RoleName=role_name,
                                       PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    # Enforcement is on for the worker's identity: an action its policy allows goes through.
    assert session.client("sts", **endpoint).get_caller_identity()["Arn"].startswith(
        "arn:aws:sts::123456789012:assumed-role/")
