"""EventBridge rules and targets, input transformers included."""

from __future__ import annotations

import re
from typing import Any

from tools.mock_engine import Declared
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


# What an input template may name besides its own input paths (EventBridge's predefined variables).
EVENTBRIDGE_VARIABLES = {"aws.events.rule-arn", "aws.events.rule-name", "aws.events.event",
                         "aws.events.event.json", "aws.events.event.ingestion-time"}


def _input_transformer(resource: Declared, transformer: dict[str, Any]) -> dict[str, Any]:
    """PutTargets refuses a template placeholder that no input path defines, and a path that is
    not JSON path; moto checks neither."""
    paths = transformer.get("inputPaths") or {}
    template = transformer["inputTemplate"]
    undefined = sorted(set(re.findall(r"<([^<>\s]+)>", template)) - set(paths)
                       - EVENTBRIDGE_VARIABLES)
    if undefined:
        raise ReplayError(resource, f"ValidationException: the input template names {undefined}, "
                                    f"which no input path defines")
    not_paths = sorted(k for k, path in paths.items() if not str(path).startswith("$"))
    if not_paths:
        raise ReplayError(resource, f"ValidationException: input paths {not_paths} are not JSON "
                                    f"paths")
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
