"""Replay handlers for the hardening resources (issue 10): the stack key's policy, the VPC's
default security group, VPC flow logs, and log groups encrypted with a customer managed key.

Each repeats a check AWS makes that moto skips, linked to the AWS document it follows:
- PutKeyPolicy refuses a policy that would lock the caller out of the key (the "policy lockout
  safety check", kms/latest/APIReference/API_PutKeyPolicy.html) and one naming an IAM principal
  that does not exist ("MalformedPolicyDocumentException: ... invalid principals").
- CreateLogGroup with kmsKeyId takes the key's ARN only, and fails unless the key policy lets the
  CloudWatch Logs service principal of the region use it, for this log group
  (logs/latest/userguide/encrypt-log-data-kms.html).
- CreateFlowLogs to CloudWatch Logs needs a delivery role, and accepts an aggregation interval of
  60 or 600 seconds only (vpc/latest/userguide/flow-logs-cwl.html, API_CreateFlowLogs.html).
"""

from __future__ import annotations

import json
import re
from typing import Any

from testbed.replay.core import (
    HANDLERS, Inputs, Replay, ReplayError, _physical_name, aws_tags,
)
from testbed.replay.ec2 import _ip_permission
from testbed.replay.aws_rules import _allows_account_to_manage_key, policy_grammar
from testbed.replay.logs import log_group as plain_log_group
from tools.mock_engine import Declared

# CreateLogGroup's name rule, checked before the key (logs/latest/APIReference/API_CreateLogGroup).
LOG_GROUP_NAME = re.compile(r"^[.\-_/#A-Za-z0-9]{1,512}$")
KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]+$")
IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/(?:.*/)?([^/]+)$")
FLOW_LOG_INTERVALS = (60, 600)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _check_principals_exist(replay: Replay, resource: Declared, document: dict[str, Any]) -> None:
    iam = replay.client("iam")
    for statement in document.get("Statement", []):
        principal = statement.get("Principal") or {}
        for arn in _as_list(principal.get("AWS") if isinstance(principal, dict) else principal):
            match = IAM_PRINCIPAL.match(str(arn))
            if not match:
                continue
            kind, name = match.groups()
            try:
                (iam.get_role if kind == "role" else iam.get_user)(
                    **({"RoleName": name} if kind == "role" else {"UserName": name}))
            except iam.exceptions.NoSuchEntityException:
                raise ReplayError(resource, "MalformedPolicyDocumentException: Policy contains a "
                                            f"statement with one or more invalid principals ({arn})") from None


def kms_key_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    document = inputs.require("policy")
    policy_grammar(resource, document)
    parsed = json.loads(document)
    bypass = bool(inputs.get("bypassPolicyLockoutSafetyCheck"))
    if not bypass and not _allows_account_to_manage_key(parsed, replay.account()):
        raise ReplayError(resource, "MalformedPolicyDocumentException: the new key policy will "
                                    "not allow you to update the key policy in the future "
                                    "(PutKeyPolicy's lockout safety check)")
    _check_principals_exist(replay, resource, parsed)
    key_id = inputs.require("keyId")
    replay.client("kms").put_key_policy(KeyId=key_id, PolicyName="default", Policy=document,
                                        BypassPolicyLockoutSafetyCheck=bypass)
    return {"key_id": key_id}


def _logs_may_use(document: dict[str, Any], region: str, log_group_arn: str) -> bool:
    service = f"logs.{region}.amazonaws.com"
    for statement in document.get("Statement", []):
        principal = statement.get("Principal") or {}
        services = _as_list(principal.get("Service")) if isinstance(principal, dict) else []
        actions = set(_as_list(statement.get("Action")))
        if statement.get("Effect") != "Allow" or service not in services:
            continue
        if not ({"kms:*", "kms:GenerateDataKey*", "kms:Encrypt*"} & actions):
            continue
        conditions = statement.get("Condition") or {}
        context = [v for block in conditions.values() for k, v in (block or {}).items()
                   if k == "kms:EncryptionContext:aws:logs:arn"]
        if not context or any(log_group_arn in _as_list(v) for v in context):
            return True
    return False


def log_group(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """The base handler, plus the key: AWS checks the key policy when a group is associated."""
    key = inputs.get("kmsKeyId")
    if key and LOG_GROUP_NAME.match(_physical_name(resource, inputs)):
        if not KMS_KEY_ARN.match(key):
            raise ReplayError(resource, f"kmsKeyId {key!r}: CloudWatch Logs takes a key ARN")
        logs = replay.client("logs")
        name = _physical_name(resource, inputs)
        arn = f"arn:aws:logs:{replay.region}:{replay.account()}:log-group:{name}"
        document = json.loads(replay.client("kms").get_key_policy(
            KeyId=key, PolicyName="default")["Policy"])
        if not _logs_may_use(document, replay.region, arn):
            raise ReplayError(resource, "AccessDeniedException: the key policy does not let "
                                        f"CloudWatch Logs use the key for {arn}")
        logs.create_log_group(logGroupName=name, kmsKeyId=key, tags=inputs.get("tags") or {})
        retention = inputs.integer("retentionInDays")
        if retention:
            logs.put_retention_policy(logGroupName=name, retentionInDays=retention)
        inputs.engine_side("skipDestroy")
        return {"name": name, "kms_key_id": key}
    # No key, or a name AWS refuses before it looks at the key: moto says why.
    inputs.get("kmsKeyId")
    return plain_log_group(replay, resource, inputs)


def default_security_group(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """Like the provider: adopt the VPC's default group, revoke every rule AWS put there, then
    authorize exactly the declared ones."""
    ec2 = replay.client("ec2")
    vpc_id = inputs.require("vpcId")
    (group,) = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]},
    ])["SecurityGroups"]
    group_id = group["GroupId"]
    if group["IpPermissions"]:
        ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=group["IpPermissions"])
    if group["IpPermissionsEgress"]:
        ec2.revoke_security_group_egress(GroupId=group_id,
                                         IpPermissions=group["IpPermissionsEgress"])
    ingress = [_ip_permission(rule) for rule in inputs.get("ingress") or []]
    egress = [_ip_permission(rule) for rule in inputs.get("egress") or []]
    if ingress:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=ingress)
    if egress:
        ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=egress)
    tags = aws_tags(inputs.get("tags"))
    if tags:
        ec2.create_tags(Resources=[group_id], Tags=tags)
    inputs.engine_side("revokeRulesOnDelete")
    replay.map(resource.id, group_id)
    return {"id": group_id}


def flow_log(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    destination_type = inputs.get("logDestinationType") or "cloud-watch-logs"
    role = inputs.get("iamRoleArn")
    if destination_type == "cloud-watch-logs" and not role:
        raise ReplayError(resource, "InvalidParameter: flow logs to CloudWatch Logs need "
                                    "DeliverLogsPermissionArn")
    interval = inputs.integer("maxAggregationInterval", 600)
    if interval not in FLOW_LOG_INTERVALS:
        raise ReplayError(resource, f"maxAggregationInterval {interval}: AWS accepts 60 or 600")
    destination = inputs.require("logDestination")
    # The destination is the log group's ARN; it must exist (AWS does not create it here).
    group_name = destination.split(":log-group:", 1)[1].removesuffix(":*")
    groups = replay.client("logs").describe_log_groups(logGroupNamePrefix=group_name)["logGroups"]
    if not any(g["logGroupName"] == group_name for g in groups):
        raise ReplayError(resource, f"log group {group_name} does not exist")
    tags = aws_tags(inputs.get("tags"))
    response = replay.client("ec2").create_flow_logs(
        ResourceIds=[inputs.require("vpcId")], ResourceType="VPC",
        TrafficType=inputs.require("trafficType"), LogDestinationType=destination_type,
        LogDestination=destination, DeliverLogsPermissionArn=role,
        MaxAggregationInterval=interval,
        TagSpecifications=[{"ResourceType": "vpc-flow-log", "Tags": tags}] if tags else [],
    )
    if response.get("Unsuccessful"):
        raise ReplayError(resource, f"CreateFlowLogs refused: {response['Unsuccessful']}")
    (flow_log_id,) = response["FlowLogIds"]
    replay.map(resource.id, flow_log_id)
    return {"id": flow_log_id}


HANDLERS.update({
    "aws:kms/keyPolicy:KeyPolicy": kms_key_policy,
    "aws:cloudwatch/logGroup:LogGroup": log_group,
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": default_security_group,
    "aws:ec2/flowLog:FlowLog": flow_log,
})
