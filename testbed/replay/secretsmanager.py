"""The Secrets Manager secret and its value."""

from __future__ import annotations

from typing import Any

from tools.mock_engine import Declared
from testbed.replay.core import HANDLERS, Inputs, Replay, _physical_name, aws_tags


def secret(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    created = replay.client("secretsmanager").create_secret(
        Name=_physical_name(resource, inputs),
        Description=inputs.get("description") or "",
        Tags=aws_tags(inputs.get("tags")),
        **({"KmsKeyId": inputs.get("kmsKeyId")} if inputs.get("kmsKeyId") else {}),
    )
    # Applies when the secret is deleted (DeleteSecret's RecoveryWindowInDays), not at create.
    inputs.engine_side("recoveryWindowInDays")
    replay.map(resource.id, created["ARN"])
    replay.map(resource.outputs.get("arn"), created["ARN"])
    return {"arn": created["ARN"], "name": created["Name"]}


def secret_version(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    version = replay.client("secretsmanager").put_secret_value(
        SecretId=inputs.require("secretId"), SecretString=inputs.secret("secretString"))
    return {"version_id": version["VersionId"]}


HANDLERS.update({
    "aws:secretsmanager/secret:Secret": secret,
    "aws:secretsmanager/secretVersion:SecretVersion": secret_version,
})
