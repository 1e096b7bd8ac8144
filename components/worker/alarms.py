"""What wakes someone up: an encrypted SNS topic, CloudWatch alarms and EventBridge rules on it.

- Worker CPU and memory high (AWS/ECS, free service metrics).
- Fewer worker tasks running than desired (Container Insights; declared when it is enabled).
- The events dead-letter queue holds a message.
- A flow-run task stopped with a non-zero exit code (EventBridge, this cluster's RunTask tasks).
- The worker service cannot start or place a task, or a deployment failed (EventBridge).

The topic is encrypted with the stack's customer managed KMS key (components/platform/stack_key.py), not
`alias/aws/sns`: CloudWatch and EventBridge publish to an encrypted topic only if the key policy
lets their service principals use the key (`key_statements`), and the AWS managed key's policy
cannot be changed, so with it every notification would be dropped. The topic policy lets
CloudWatch publish for this stack's alarms only and EventBridge for this stack's rules only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.config.reader import NAMESPACE

from components.platform.alarm import PERIOD_SECONDS, AlarmTarget, threshold_alarm
from components.platform.aws import CLOUDWATCH, EVENTBRIDGE, AwsContext

# SQS publishes its metrics every 5 minutes.
SQS_PERIOD_SECONDS = 300
# RunTask without a group puts a task in "family:<task definition family>"; the worker service's
# own tasks are in "service:<name>", so this prefix selects flow runs.
FLOW_RUN_GROUP_PREFIX = "family:"
SERVICE_PROBLEM_EVENT_TYPES = ("WARN", "ERROR")


@dataclass(frozen=True)
class AlarmsArgs:
    prefix: str
    context: AwsContext
    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    service_name: pulumi.Input[str]
    service_arn: pulumi.Input[str]
    container_insights: bool
    email: Optional[str]
    cpu_high_percent: int
    memory_high_percent: int
    evaluation_minutes: int
    tags: Mapping[str, str]
    # The events queue's dead-letter queue (components/worker/ecs_events.py), watched for any message.
    dead_letter_queue_name: pulumi.Input[str]
    # The stack key; its policy must hold `key_statements(context)`.
    key_arn: pulumi.Input[str]


def flow_run_failure_pattern(cluster_arn: str) -> dict[str, Any]:
    """ECS Task State Change for a flow-run task of this cluster that stopped with any container
    exiting non-zero (exit codes are 0..255, so numeric > 0 is "not 0"; a container that never
    started has no exitCode and does not match)."""
    return {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {
            "clusterArn": [cluster_arn],
            "lastStatus": ["STOPPED"],
            "group": [{"prefix": FLOW_RUN_GROUP_PREFIX}],
            "containers": {"exitCode": [{"numeric": [">", 0]}]},
        },
    }


def service_problem_pattern(service_arn: str) -> dict[str, Any]:
    """The service's own warnings and errors: task start impeded, placement or configuration
    failure, a failed (rolled back) deployment."""
    return {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Service Action", "ECS Deployment State Change"],
        "resources": [service_arn],
        "detail": {"eventType": list(SERVICE_PROBLEM_EVENT_TYPES)},
    }


class WorkerAlarms(pulumi.ComponentResource):
    topic: aws.sns.Topic
    alarms: list[aws.cloudwatch.MetricAlarm]
    rules: list[aws.cloudwatch.EventRule]

    def __init__(self, name: str, args: AlarmsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:WorkerAlarms", name, None, opts)
        self._name = name
        self._args = args
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        alarm_prefix = f"{args.prefix}-"

        self.topic = aws.sns.Topic(
            f"{name}-topic",
            name=f"{args.prefix}-alarms",
            kms_master_key_id=args.key_arn,
            tags=tags,
            opts=child,
        )
        if args.email:
            aws.sns.TopicSubscription(
                f"{name}-email", topic=self.topic.arn, protocol="email", endpoint=args.email,
                opts=pulumi.ResourceOptions(parent=self.topic))

        self.rules = [
            self._rule(
                "flow-run-failed",
                "A Prefect flow-run task stopped with a non-zero exit code",
                pulumi.Output.from_input(args.cluster_arn).apply(
                    lambda arn: json.dumps(flow_run_failure_pattern(arn))),
                input_paths={"task": "$.detail.taskArn", "group": "$.detail.group",
                             "reason": "$.detail.stoppedReason",
                             "container": "$.detail.containers[0].name",
                             "exit": "$.detail.containers[0].exitCode"},
                template=(f'"{args.prefix}: flow-run task <task> (<group>) stopped: <reason>; '
                          'container <container> exited with <exit>"'),
            ),
            self._rule(
                "worker-service-problem",
                "The Prefect worker service could not start a task or a deployment failed",
                pulumi.Output.from_input(args.service_arn).apply(
                    lambda arn: json.dumps(service_problem_pattern(arn))),
                input_paths={"event": "$.detail.eventName", "reason": "$.detail.reason"},
                template=f'"{args.prefix}: worker service <event>: <reason>"',
            ),
        ]
        aws.sns.TopicPolicy(
            f"{name}-topic-policy",
            arn=self.topic.arn,
            policy=pulumi.Output.json_dumps({
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "ThisStacksAlarms",
                        "Effect": "Allow",
                        "Principal": {"Service": CLOUDWATCH},
                        "Action": "sns:Publish",
                        "Resource": self.topic.arn,
                        "Condition": {
                            "ArnLike": {"aws:SourceArn": ctx.arn(
                                "cloudwatch", f"alarm:{alarm_prefix}*")},
                            "StringEquals": {"aws:SourceAccount": ctx.account_id},
                        },
                    },
                    {
                        "Sid": "ThisStacksEventRules",
                        "Effect": "Allow",
                        "Principal": {"Service": EVENTBRIDGE},
                        "Action": "sns:Publish",
                        "Resource": self.topic.arn,
                        "Condition": {"ArnEquals": {"aws:SourceArn": [r.arn for r in self.rules]}},
                    },
                ],
            }),
            opts=pulumi.ResourceOptions(parent=self.topic),
        )

        dimensions = {"ClusterName": args.cluster_name, "ServiceName": args.service_name}
        alarms = AlarmTarget(self, name, args.prefix, self.topic.arn, args.evaluation_minutes,
                             args.tags)
        self.alarms = [
            threshold_alarm(
                alarms, "worker-cpu-high", f"Worker CPU above {args.cpu_high_percent}%",
                "AWS/ECS", "CPUUtilization", dimensions, args.cpu_high_percent),
            threshold_alarm(
                alarms, "worker-memory-high", f"Worker memory above {args.memory_high_percent}%",
                "AWS/ECS", "MemoryUtilization", dimensions, args.memory_high_percent),
        ]
        if args.container_insights:
            self.alarms.append(self._running_below_desired(dimensions))
        self.alarms.append(threshold_alarm(
            alarms, "events-dlq-not-empty",
            "ECS events the worker's observer could not process reached the dead-letter queue",
            "AWS/SQS", "ApproximateNumberOfMessagesVisible",
            {"QueueName": args.dead_letter_queue_name}, 0,
            statistic="Maximum", period=SQS_PERIOD_SECONDS, evaluation_periods=1))

        self.register_outputs({"topic_arn": self.topic.arn})

    def _alarm_options(self) -> dict[str, Any]:
        return {"alarm_actions": [self.topic.arn], "ok_actions": [self.topic.arn],
                "tags": dict(self._args.tags)}

    def _running_below_desired(self, dimensions: Mapping[str, pulumi.Input[str]]
                               ) -> aws.cloudwatch.MetricAlarm:
        """desired - running > 0 for the whole window. Deploys start the new task before stopping
        the old (minimum healthy 100%), so running only drops below desired when a task crashed,
        cannot be placed (Spot capacity, image pull) or fails its health check; a short window
        would page for every ordinary replacement, which takes a minute or two."""
        minutes = self._args.evaluation_minutes

        def metric(query_id: str, name: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
            return aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=query_id,
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace="ECS/ContainerInsights", metric_name=name,
                    dimensions=dict(dimensions), period=PERIOD_SECONDS, stat="Average"),
                return_data=False,
            )

        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-running-below-desired",
            name=f"{self._args.prefix}-running-below-desired",
            alarm_description="Fewer Prefect worker tasks running than the service wants",
            metric_queries=[
                metric("desired", "DesiredTaskCount"),
                metric("running", "RunningTaskCount"),
                aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="missing", expression="desired - running",
                    label="Worker tasks missing", return_data=True),
            ],
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
            threshold=0.0,
            comparison_operator="GreaterThanThreshold",
            # Container Insights reports both counts every minute while the service exists, so a
            # gap means no data yet (a new stack), which should not page.
            treat_missing_data="missing",
            **self._alarm_options(),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _rule(self, role: str, description: str, pattern: pulumi.Output[str], *,
              input_paths: Mapping[str, str], template: str) -> aws.cloudwatch.EventRule:
        rule = aws.cloudwatch.EventRule(
            f"{self._name}-{role}",
            name=f"{self._args.prefix}-{role}",
            description=description,
            event_pattern=pattern,
            tags=dict(self._args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.cloudwatch.EventTarget(
            f"{self._name}-{role}-to-topic",
            rule=rule.name,
            arn=self.topic.arn,
            input_transformer=aws.cloudwatch.EventTargetInputTransformerArgs(
                input_paths=dict(input_paths), input_template=template),
            opts=pulumi.ResourceOptions(parent=rule),
        )
        return rule


def key_statements(ctx: AwsContext) -> list[dict[str, Any]]:
    """What the stack key's policy must allow for CloudWatch alarms and EventBridge rules to
    publish to the encrypted topic."""
    use_key = ["kms:GenerateDataKey*", "kms:Decrypt"]
    return [
        {
            "Sid": "CloudWatchAlarmsPublish",
            "Effect": "Allow",
            "Principal": {"Service": CLOUDWATCH},
            "Action": use_key,
            # AWS: in a key policy "*" is this key.
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}},
        },
        {
            # AWS: EventBridge's KMS requests carry no aws:SourceArn/SourceAccount, so a
            # condition on them would silently drop every event.
            "Sid": "EventBridgeRulesPublish",
            "Effect": "Allow",
            "Principal": {"Service": EVENTBRIDGE},
            "Action": use_key,
            # AWS: in a key policy "*" is this key.
            "Resource": "*",
        },
    ]
