"""Replay of Step Functions state machines (the server's redeploy after a password rotation) into
moto, with the checks Step Functions makes at CreateStateMachine and moto skips. Registers into
`testbed.replay.core.HANDLERS`.

- The definition is Amazon States Language: `StartAt` names a state, every `Next` names a state,
  and some state ends the execution (ASL specification, "Top-level fields", "Transitions").
- An AWS SDK integration task (`arn:aws:states:::aws-sdk:<service>:<action>`) calls the API
  operation of that name with `Parameters` as its request, every name in PascalCase even where the
  API itself is camelCase, as ECS is ("AWS SDK service integrations" in the Step Functions
  Developer Guide); it refuses a parameter the API does not have. Here the operation and each
  parameter are looked up in botocore's model of the same API.
"""

from __future__ import annotations

import json
import re
from typing import Any

import botocore.session

from tools.mock_engine import Declared
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError, aws_tags

SDK_TASK = re.compile(r"^arn:aws[a-z-]*:states:::aws-sdk:(?P<service>[a-z0-9]+):"
                      r"(?P<action>[a-zA-Z0-9]+)(?:\.[a-zA-Z]+)?$")


def check_definition(resource: Declared, definition: dict[str, Any]) -> None:
    states = definition.get("States") or {}
    if definition.get("StartAt") not in states:
        raise ReplayError(resource, f"InvalidDefinition: StartAt {definition.get('StartAt')!r} "
                                    f"is not a state")
    ends = False
    for name, state in states.items():
        following = state.get("Next")
        if following is not None and following not in states:
            raise ReplayError(resource, f"InvalidDefinition: {name} -> missing state {following!r}")
        ends |= bool(state.get("End")) or state.get("Type") in ("Succeed", "Fail")
        if state.get("Type") == "Task":
            _check_sdk_task(resource, name, state)
    if not ends:
        raise ReplayError(resource, "InvalidDefinition: no state ends the execution")


def _check_sdk_task(resource: Declared, name: str, state: dict[str, Any]) -> None:
    match = SDK_TASK.match(state.get("Resource", ""))
    if match is None:
        return
    session = botocore.session.get_session()
    model = session.get_service_model(match.group("service"))
    action = match.group("action")
    operation = action[0].upper() + action[1:]
    if operation not in model.operation_names:
        raise ReplayError(resource, f"InvalidDefinition: {name}: {match.group('service')} has no "
                                    f"operation {operation}")
    input_shape = model.operation_model(operation).input_shape
    pascal = {m[0].upper() + m[1:] for m in input_shape.members}
    given = {key[:-2] if key.endswith(".$") else key for key in state.get("Parameters", {})}
    unknown = sorted(given - pascal)
    if unknown:
        raise ReplayError(resource, f"InvalidDefinition: {name}: {operation} has no parameter "
                                    f"{unknown} (in PascalCase it takes {sorted(pascal)})")
    missing = sorted({m[0].upper() + m[1:] for m in input_shape.required_members} - given)
    if missing:
        raise ReplayError(resource, f"InvalidDefinition: {name}: {operation} needs {missing}")


def state_machine(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    try:
        definition = json.loads(inputs.require("definition"))
    except json.JSONDecodeError as error:
        raise ReplayError(resource, f"InvalidDefinition: not JSON: {error}") from error
    check_definition(resource, definition)
    request: dict[str, Any] = {
        "name": inputs.get("name") or resource.outputs["name"],
        "definition": json.dumps(definition), "roleArn": inputs.require("roleArn"),
        "type": inputs.get("type") or "STANDARD",
        "tags": aws_tags(inputs.get("tags"), "key", "value"),
    }
    for key in ("loggingConfiguration", "tracingConfiguration"):
        if inputs.get(key):
            block = inputs.get(key)
            request[key] = {k: v for k, v in block.items() if v not in (None, "")}
    logging = request.get("loggingConfiguration")
    if logging is not None and "logDestination" in logging:
        # The provider's one `logDestination` (a log group ARN ending ":*") is the API's list.
        destination = logging.pop("logDestination")
        if not str(destination).endswith(":*"):
            raise ReplayError(resource, "InvalidLoggingConfiguration: the log group ARN must end "
                                        f"with ':*', got {destination!r}")
        logging["destinations"] = [{"cloudWatchLogsLogGroup": {"logGroupArn": destination}}]
    if logging is not None and logging.get("level", "OFF") != "OFF" and not logging.get(
            "destinations"):
        raise ReplayError(resource, "InvalidLoggingConfiguration: a level other than OFF needs "
                                    "a destination")
    inputs.engine_side("publish")
    arn = replay.client("stepfunctions").create_state_machine(**request)["stateMachineArn"]
    replay.map(resource.outputs.get("arn"), arn)
    replay.map(resource.id, arn)
    return {"arn": arn, "definition": definition}


HANDLERS["aws:sfn/stateMachine:StateMachine"] = state_machine
