"""IAM roles, their inline policies and managed-policy attachments."""

from __future__ import annotations

import json
from typing import Any

from tools.mock_engine import Declared
from testbed.replay import aws_rules
from testbed.replay.core import (
    AWS_MANAGED_POLICY, HANDLERS, Inputs, Replay, _physical_name, aws_managed_policies, aws_tags,
)


def iam_role(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    iam = replay.client("iam")
    name = _physical_name(resource, inputs)
    trust_policy = inputs.require("assumeRolePolicy")
    role = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=trust_policy,
        Description=inputs.get("description") or "",
        Tags=aws_tags(inputs.get("tags")),
        MaxSessionDuration=inputs.integer("maxSessionDuration", 3600),
        Path=inputs.get("path") or "/",
    )["Role"]
    # moto parses a trust policy on UpdateAssumeRolePolicy only, so send it again that way.
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust_policy)
    inputs.engine_side("forceDetachPolicies")
    replay.map(resource.id, role["RoleName"])
    replay.map(resource.outputs.get("arn"), role["Arn"])
    return {"name": role["RoleName"], "arn": role["Arn"]}


def iam_role_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    name = _physical_name(resource, inputs)
    replay.client("iam").put_role_policy(
        RoleName=inputs.require("role"), PolicyName=name,
        PolicyDocument=inputs.require("policy"))
    return {"name": name}


def iam_role_policy_attachment(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """moto starts with no AWS-managed policies. An `arn:aws:iam::aws:policy/...` ARN is looked up
    in moto's copy of AWS's list (a typo fails here, as AttachRolePolicy would fail), and a
    customer-managed stand-in with that path, name and document is attached in its place."""
    iam = replay.client("iam")
    policy_arn = inputs.require("policyArn")
    managed = AWS_MANAGED_POLICY.match(policy_arn)
    if managed:
        path, name = managed.group(1), managed.group(2)
        known = aws_rules.aws_managed_policy_exists(resource, policy_arn, path,
                                                    aws_managed_policies().get(name))
        stand_in = replay.ids.get(policy_arn)
        if stand_in is None:
            try:
                stand_in = iam.create_policy(PolicyName=name, Path=known["Path"], PolicyDocument=json.dumps(
                    known["Document"]))["Policy"]["Arn"]
            except iam.exceptions.EntityAlreadyExistsException:
                # An earlier replay into this account (another stack) made it: AWS's own exist once.
                stand_in = f"arn:aws:iam::{replay.account()}:policy{known['Path']}{name}"
            replay.map(policy_arn, stand_in)
        policy_arn = stand_in
    iam.attach_role_policy(RoleName=inputs.require("role"), PolicyArn=policy_arn)
    return {"policy_arn": policy_arn}


HANDLERS.update({
    "aws:iam/role:Role": iam_role,
    "aws:iam/rolePolicy:RolePolicy": iam_role_policy,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": iam_role_policy_attachment,
})
