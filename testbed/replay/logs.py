"""CloudWatch Logs log groups."""

from __future__ import annotations

from typing import Any

from tools.mock_engine import Declared
from testbed.replay.core import HANDLERS, Inputs, Replay, _physical_name


def log_group(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    logs = replay.client("logs")
    name = _physical_name(resource, inputs)
    logs.create_log_group(logGroupName=name, tags=inputs.get("tags") or {})
    retention = inputs.integer("retentionInDays")
    if retention:
        logs.put_retention_policy(logGroupName=name, retentionInDays=retention)
    inputs.engine_side("skipDestroy")
    return {"name": name}


HANDLERS.update({
    "aws:cloudwatch/logGroup:LogGroup": log_group,
})
