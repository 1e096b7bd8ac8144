"""EventBridge rules and targets, input transformers included."""

from __future__ import annotations

from typing import Any

from tools.mock_engine import Declared
from testbed.replay import aws_rules
from testbed.replay.core import (
    HANDLERS, Inputs, Replay, ReplayError, _physical_name, aws_tags, pascal,
)


def event_rule(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """PutRule: moto parses the event pattern as EventBridge does (JSON; every leaf a non-empty
    list or an object)."""
    request: dict[str, Any] = {"Name": _physical_name(resource, inputs),
                               "Tags": aws_tags(inputs.get("tags"))}
    inputs.copy(request, pascal("eventPattern", "scheduleExpression", "description", "state",
                                "roleArn", "eventBusName"))
    arn = replay.client("events").put_rule(**request)["RuleArn"]
    replay.map(resource.id, request["Name"])
    replay.map(resource.outputs.get("arn"), arn)
    return {"name": request["Name"], "arn": arn}


def _input_transformer(resource: Declared, transformer: dict[str, Any]) -> dict[str, Any]:
    paths = transformer.get("inputPaths") or {}
    template = transformer["inputTemplate"]
    aws_rules.input_transformer(resource, paths, template)
    return {"InputPathsMap": paths, "InputTemplate": template}


def event_target(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    # Without a declared targetId the provider generates one; the logical name stands in.
    target = {"Id": inputs.get("targetId") or resource.name, "Arn": inputs.require("arn")}
    inputs.copy(target, pascal("roleArn", "input", "inputPath"))
    transformer = inputs.get("inputTransformer")
    if transformer is not None:
        target["InputTransformer"] = _input_transformer(resource, transformer)
    request: dict[str, Any] = {"Rule": inputs.require("rule"), "Targets": [target]}
    if inputs.get("eventBusName"):
        request["EventBusName"] = inputs.get("eventBusName")
    response = replay.client("events").put_targets(**request)
    if response.get("FailedEntryCount"):
        raise ReplayError(resource, f"PutTargets refused: {response['FailedEntries']}")
    return {"rule": request["Rule"], "id": target["Id"], "arn": target["Arn"]}


HANDLERS.update({
    "aws:cloudwatch/eventRule:EventRule": event_rule,
    "aws:cloudwatch/eventTarget:EventTarget": event_target,
})
