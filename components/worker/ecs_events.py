"""Crash detection for flow runs: the cluster's ECS task events, delivered to an SQS queue.

prefect-aws's worker runs an observer that reads "ECS Task State Change" events from the queue
named by `PREFECT_INTEGRATIONS_AWS_ECS_OBSERVER_SQS_QUEUE_NAME`; a flow-run task that stops with a
non-zero exit code marks its run Crashed. This creates that queue (encrypted at rest, with a
dead-letter queue for events the worker keeps failing on), an EventBridge rule for this cluster's
task events only, and a queue policy that lets only that rule send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.platform.aws import EVENTBRIDGE
from components.config.reader import NAMESPACE

# Events older than this are of no use to a worker; the dead-letter queue keeps failures longer.
EVENT_RETENTION_SECONDS = 4 * 24 * 3600
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600
# Longer than the observer's own 300 s visibility extension, so a slow handler keeps its message.
VISIBILITY_TIMEOUT_SECONDS = 300
MAX_RECEIVES = 5


@dataclass(frozen=True)
class EcsEventsArgs:
    queue_name: str
    cluster_arn: pulumi.Input[str]
    tags: Mapping[str, str]


def task_state_change_pattern(cluster_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {"clusterArn": [cluster_arn]},
    })


class EcsEvents(pulumi.ComponentResource):
    queue: aws.sqs.Queue
    dead_letter_queue: aws.sqs.Queue
    rule: aws.cloudwatch.EventRule

    def __init__(self, name: str, args: EcsEventsArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:EcsEvents", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        self.dead_letter_queue = aws.sqs.Queue(
            f"{name}-dead-letter",
            name=f"{args.queue_name}-dlq",
            sqs_managed_sse_enabled=True,
            message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
            tags=tags,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-queue",
            name=args.queue_name,
            sqs_managed_sse_enabled=True,
            message_retention_seconds=EVENT_RETENTION_SECONDS,
            visibility_timeout_seconds=VISIBILITY_TIMEOUT_SECONDS,
            redrive_policy=pulumi.Output.json_dumps({
                "deadLetterTargetArn": self.dead_letter_queue.arn,
                "maxReceiveCount": MAX_RECEIVES,
            }),
            tags=tags,
            opts=child,
        )
        # Auto-named: rule names stop at 64 characters and nothing needs this one up front.
        self.rule = aws.cloudwatch.EventRule(
            f"{name}-task-state",
            description="ECS task state changes of this cluster, for the Prefect worker's observer",
            event_pattern=task_state_change_pattern(args.cluster_arn),
            tags=tags,
            opts=child,
        )
        policy = aws.sqs.QueuePolicy(
            f"{name}-queue-policy",
            queue_url=self.queue.url,
            policy=pulumi.Output.json_dumps({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "OnlyThisRuleSends",
                    "Effect": "Allow",
                    "Principal": {"Service": EVENTBRIDGE},
                    "Action": "sqs:SendMessage",
                    "Resource": self.queue.arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": self.rule.arn}},
                }],
            }),
            opts=pulumi.ResourceOptions(parent=self.queue),
        )
        aws.cloudwatch.EventTarget(
            f"{name}-to-queue",
            rule=self.rule.name,
            arn=self.queue.arn,
            # Without the policy EventBridge's first deliveries would be refused.
            opts=pulumi.ResourceOptions(parent=self.rule, depends_on=[policy]),
        )

        self.register_outputs({
            "queue_name": self.queue.name,
            "queue_url": self.queue.url,
            "dead_letter_queue_url": self.dead_letter_queue.url,
            "rule_arn": self.rule.arn,
        })
