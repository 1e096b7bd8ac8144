"""SQS queues and queue policies (the ECS task events queue)."""

from __future__ import annotations

from typing import Any

from tools.mock_engine import Declared
from testbed.replay.core import (
    HANDLERS, Inputs, Replay, ReplayError, _check_policy_grammar, _physical_name,
)


# Pulumi input -> SQS attribute. SQS takes every attribute as a string.
SQS_ATTRIBUTES = {
    "delaySeconds": "DelaySeconds",
    "maxMessageSize": "MaximumMessageSize",
    "messageRetentionSeconds": "MessageRetentionPeriod",
    "receiveWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "visibilityTimeoutSeconds": "VisibilityTimeout",
    "kmsDataKeyReusePeriodSeconds": "KmsDataKeyReusePeriodSeconds",
    "kmsMasterKeyId": "KmsMasterKeyId",
    "sqsManagedSseEnabled": "SqsManagedSseEnabled",
    "fifoQueue": "FifoQueue",
    "contentBasedDeduplication": "ContentBasedDeduplication",
    "redrivePolicy": "RedrivePolicy",
    "redriveAllowPolicy": "RedriveAllowPolicy",
    "policy": "Policy",
}


# The ranges the SQS API reference (CreateQueue) gives; moto checks only MaximumMessageSize.
SQS_RANGES = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 262144),
    "MessageRetentionPeriod": (60, 1209600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43200),
    "KmsDataKeyReusePeriodSeconds": (60, 86400),
}


def _sqs_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def sqs_queue(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    attributes = {}
    for key, attribute in SQS_ATTRIBUTES.items():
        value = inputs.get(key)
        if value is None:
            continue
        attributes[attribute] = _sqs_value(value)
        bounds = SQS_RANGES.get(attribute)
        if bounds and not bounds[0] <= float(value) <= bounds[1]:
            raise ReplayError(resource, f"{key} = {value!r} is outside {bounds[0]}..{bounds[1]}, "
                                        f"the range SQS accepts for {attribute}")
    if "Policy" in attributes:
        _check_policy_grammar(resource, attributes["Policy"])
    sqs = replay.client("sqs")
    url = sqs.create_queue(QueueName=_physical_name(resource, inputs), Attributes=attributes,
                           tags=inputs.get("tags") or {})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    replay.map(resource.id, url)
    replay.map(resource.outputs.get("url"), url)
    replay.map(resource.outputs.get("arn"), arn)
    return {"url": url, "arn": arn}


def sqs_queue_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    document = inputs.require("policy")
    _check_policy_grammar(resource, document)
    replay.client("sqs").set_queue_attributes(
        QueueUrl=inputs.require("queueUrl"), Attributes={"Policy": document})
    return {}


HANDLERS.update({
    "aws:sqs/queue:Queue": sqs_queue,
    "aws:sqs/queuePolicy:QueuePolicy": sqs_queue_policy,
})
