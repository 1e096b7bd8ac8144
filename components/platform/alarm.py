"""The CloudWatch threshold alarm every component declares the same way: one metric against a
threshold for N consecutive one-minute periods, notifying a topic when it fires and when it
clears, and quiet when there is no data (no tasks, an idle queue)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pulumi
import pulumi_aws as aws

# One-minute datapoints: the finest CloudWatch keeps for a standard metric.
PERIOD_SECONDS = 60


@dataclass(frozen=True)
class AlarmTarget:
    """Where a component's alarms go and how they are named: `<prefix>-<role>`, the topic they
    notify, the periods a condition must hold, the tags they carry."""

    parent: pulumi.Resource
    resource_prefix: str
    prefix: str
    topic_arn: pulumi.Input[str]
    evaluation_periods: int
    tags: Mapping[str, str]


def threshold_alarm(target: AlarmTarget, role: str, description: str, namespace: str, metric: str,
                    dimensions: Mapping[str, pulumi.Input[str]], threshold: float, *,
                    statistic: str = "Average", period: int = PERIOD_SECONDS,
                    evaluation_periods: int = 0,
                    operator: str = "GreaterThanThreshold") -> aws.cloudwatch.MetricAlarm:
    """`evaluation_periods` 0 takes the target's."""
    periods = evaluation_periods or target.evaluation_periods
    return aws.cloudwatch.MetricAlarm(
        f"{target.resource_prefix}-{role}",
        name=f"{target.prefix}-{role}",
        alarm_description=description,
        namespace=namespace,
        metric_name=metric,
        dimensions=dict(dimensions),
        statistic=statistic,
        period=period,
        evaluation_periods=periods,
        datapoints_to_alarm=periods,
        threshold=float(threshold),
        comparison_operator=operator,
        # No data means no tasks or an idle queue: not a reason to page.
        treat_missing_data="notBreaching",
        alarm_actions=[target.topic_arn],
        ok_actions=[target.topic_arn],
        tags=dict(target.tags),
        opts=pulumi.ResourceOptions(parent=target.parent),
    )
