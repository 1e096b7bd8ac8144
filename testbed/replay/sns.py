"""SNS topics, topic policies and subscriptions."""

from __future__ import annotations

from typing import Any

from tools.mock_engine import Declared
from testbed.replay.sqs import _sqs_value
from testbed.replay import aws_rules
from testbed.replay.core import HANDLERS, Inputs, Replay, _physical_name, aws_tags, pascal


# Pulumi input -> SNS topic attribute; SNS takes every attribute as a string.
SNS_TOPIC_ATTRIBUTES = pascal("kmsMasterKeyId", "displayName", "policy", "deliveryPolicy",
                              "fifoTopic", "contentBasedDeduplication", "signatureVersion",
                              "tracingConfig")


def sns_topic(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    attributes = inputs.copy({}, SNS_TOPIC_ATTRIBUTES, _sqs_value)
    if "Policy" in attributes:
        aws_rules.policy_grammar(resource, attributes["Policy"])
    arn = replay.client("sns").create_topic(
        Name=_physical_name(resource, inputs), Attributes=attributes,
        Tags=aws_tags(inputs.get("tags")))["TopicArn"]
    replay.map(resource.outputs.get("arn"), arn)
    return {"arn": arn}


def sns_topic_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """SetTopicAttributes(Policy): AWS checks the grammar; moto stores any string."""
    document = inputs.require("policy")
    aws_rules.policy_grammar(resource, document)
    replay.client("sns").set_topic_attributes(
        TopicArn=inputs.require("arn"), AttributeName="Policy", AttributeValue=document)
    return {}


def sns_topic_subscription(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    protocol = inputs.require("protocol")
    aws_rules.sns_subscription_protocol(resource, protocol)
    attributes = inputs.copy({}, pascal("rawMessageDelivery", "filterPolicy", "filterPolicyScope",
                                        "redrivePolicy", "deliveryPolicy"), _sqs_value)
    # Provider-side: how long to wait for a confirmation, and whether the endpoint confirms itself.
    inputs.engine_side("confirmationTimeoutInMinutes", "endpointAutoConfirms")
    arn = replay.client("sns").subscribe(
        TopicArn=inputs.require("topic"), Protocol=protocol, Endpoint=inputs.require("endpoint"),
        Attributes=attributes, ReturnSubscriptionArn=True)["SubscriptionArn"]
    return {"arn": arn}


HANDLERS.update({
    "aws:sns/topic:Topic": sns_topic,
    "aws:sns/topicPolicy:TopicPolicy": sns_topic_policy,
    "aws:sns/topicSubscription:TopicSubscription": sns_topic_subscription,
})
