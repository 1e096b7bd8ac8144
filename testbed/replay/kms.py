"""KMS keys and aliases (the alarm topic's key)."""

from __future__ import annotations

import json
from typing import Any

from tools.mock_engine import Declared
from testbed.replay import aws_rules
from testbed.replay.core import HANDLERS, Inputs, Replay, aws_tags, pascal


def kms_key(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    kms = replay.client("kms")
    request: dict[str, Any] = {"Tags": aws_tags(inputs.get("tags"), "TagKey", "TagValue")}
    inputs.copy(request, {**pascal("description", "keyUsage", "multiRegion",
                                   "bypassPolicyLockoutSafetyCheck"),
                          "customerMasterKeySpec": "KeySpec"})
    document = inputs.get("policy")
    if document is not None:
        aws_rules.policy_grammar(resource, document)
        if not request.get("BypassPolicyLockoutSafetyCheck"):
            aws_rules.kms_key_policy_lockout(resource, json.loads(document), replay.account())
        request["Policy"] = document
    aws_rules.kms_deletion_window(resource, inputs.integer("deletionWindowInDays"))
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
