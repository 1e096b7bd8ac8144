"""KMS keys and aliases (the alarm topic's key)."""

from __future__ import annotations

import json
from typing import Any

from tools.mock_engine import Declared
from testbed.replay.core import (
    HANDLERS, Inputs, Replay, ReplayError, _check_policy_grammar, aws_tags, pascal,
)


def _allows_account_to_manage_key(document: dict[str, Any], account: str) -> bool:
    """CreateKey's lockout safety check, with the account as the caller: some statement lets the
    account's principals change the key policy later."""
    root = {f"arn:aws:iam::{account}:root", account}
    for statement in document.get("Statement", []):
        principals = (statement.get("Principal") or {})
        principals = principals.get("AWS", []) if isinstance(principals, dict) else principals
        principals = [principals] if isinstance(principals, str) else principals
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if (statement.get("Effect") == "Allow" and (root & set(principals) or "*" in principals)
                and {"kms:*", "kms:PutKeyPolicy", "*"} & set(actions)):
            return True
    return False


def kms_key(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    kms = replay.client("kms")
    request: dict[str, Any] = {"Tags": aws_tags(inputs.get("tags"), "TagKey", "TagValue")}
    inputs.copy(request, {**pascal("description", "keyUsage", "multiRegion",
                                   "bypassPolicyLockoutSafetyCheck"),
                          "customerMasterKeySpec": "KeySpec"})
    document = inputs.get("policy")
    if document is not None:
        _check_policy_grammar(resource, document)
        # moto stores any key policy; AWS refuses one that would lock the caller out of the key.
        if not request.get("BypassPolicyLockoutSafetyCheck") and not _allows_account_to_manage_key(
                json.loads(document), replay.account()):
            raise ReplayError(resource, "MalformedPolicyDocumentException: the key policy would "
                                        "not let the account change it later (CreateKey's lockout "
                                        "safety check)")
        request["Policy"] = document
    # AWS accepts 7..30 days at ScheduleKeyDeletion, which the provider calls on delete.
    window = inputs.integer("deletionWindowInDays")
    if window is not None and not 7 <= window <= 30:
        raise ReplayError(resource, f"deletionWindowInDays = {window} is outside 7..30")
    metadata = kms.create_key(**request)["KeyMetadata"]
    if inputs.get("enableKeyRotation"):
        period = inputs.integer("rotationPeriodInDays")
        kms.enable_key_rotation(KeyId=metadata["KeyId"],
                                **({"RotationPeriodInDays": period} if period else {}))
    else:
        inputs.engine_side("rotationPeriodInDays")
    if inputs.get("isEnabled", True) is False:
        kms.disable_key(KeyId=metadata["KeyId"])
    replay.map(resource.id, metadata["KeyId"])
    replay.map(resource.outputs.get("keyId"), metadata["KeyId"])
    replay.map(resource.outputs.get("arn"), metadata["Arn"])
    return {"key_id": metadata["KeyId"], "arn": metadata["Arn"]}


def kms_alias(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    name = inputs.require("name")
    replay.client("kms").create_alias(AliasName=name, TargetKeyId=inputs.require("targetKeyId"))
    return {"name": name}


HANDLERS.update({
    "aws:kms/key:Key": kms_key,
    "aws:kms/alias:Alias": kms_alias,
})
