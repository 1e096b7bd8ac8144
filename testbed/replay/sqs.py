"""SQS queues and queue policies (the ECS task events queue)."""

from __future__ import annotations

from typing import Any

from tools.mock_engine import Declared
from testbed.replay import aws_rules
from testbed.replay.core import HANDLERS, Inputs, Replay, _physical_name


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
        aws_rules.sqs_attribute_range(resource, key, attribute, value)
    if "Policy" in attributes:
        aws_rules.policy_grammar(resource, attributes["Policy"])
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
    aws_rules.policy_grammar(resource, document)
    replay.client("sqs").set_queue_attributes(
        QueueUrl=inputs.require("queueUrl"), Attributes={"Policy": document})
    return {}


HANDLERS.update({
    "aws:sqs/queue:Queue": sqs_queue,
    "aws:sqs/queuePolicy:QueuePolicy": sqs_queue_policy,
})
