"""The operations keys: how the worker service scales, what wakes someone up, Container Insights."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional

from components.config.reader import ConfigError, Reader
from components.config.worker import MAX_WORKERS

ContainerInsights = Literal["enabled", "disabled"]

EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


@dataclass(frozen=True)
class OperationsSettings:
    """How the worker service scales and what wakes someone up.

    Autoscaling is on when `worker_max_count` exceeds `worker_min_count`; the service then starts
    at `workerCount` and Application Auto Scaling owns its desired count.
    """

    worker_min_count: int
    worker_max_count: int
    scaling_cpu_target_percent: int
    scaling_memory_target_percent: int
    container_insights: bool
    alarm_email: Optional[str]
    alarm_cpu_high_percent: int
    alarm_memory_high_percent: int
    alarm_evaluation_minutes: int

    @property
    def autoscaling(self) -> bool:
        return self.worker_max_count > self.worker_min_count


def parse_operations(reader: Reader, worker_count: int) -> OperationsSettings:
    # 0 is Pulumi.yaml's "unset" (an integer key needs a default): follow workerCount.
    minimum = reader.integer("workerMinCount", minimum=0, maximum=MAX_WORKERS) or worker_count
    maximum = reader.integer("workerMaxCount", minimum=0, maximum=MAX_WORKERS) or minimum
    if maximum < minimum:
        raise ConfigError("workerMaxCount", maximum,
                          f"a whole number from workerMinCount ({minimum}) to {MAX_WORKERS}")
    if not minimum <= worker_count <= maximum:
        raise ConfigError("workerCount", worker_count,
                          f"a whole number from workerMinCount ({minimum}) to workerMaxCount "
                          f"({maximum}): the service starts there before scaling takes over")
    email = reader.optional("alarmEmail")
    if email is not None and (len(email) > 254 or not EMAIL.match(email)):
        raise ConfigError("alarmEmail", email, "an email address, e.g. oncall@example.com, or "
                          "unset for no subscription")
    return OperationsSettings(
        worker_min_count=minimum,
        worker_max_count=maximum,
        # Above 90% a task has no headroom left before the next scale-out lands; below 10% the
        # service would scale on noise.
        scaling_cpu_target_percent=reader.integer("scalingCpuTargetPercent", minimum=10,
                                                  maximum=90),
        scaling_memory_target_percent=reader.integer("scalingMemoryTargetPercent",
                                                     minimum=10, maximum=90),
        # The config says enabled/disabled (the ECS setting's words); the stack needs a yes or no.
        container_insights=reader.choice("containerInsights", ContainerInsights) == "enabled",
        alarm_email=email,
        alarm_cpu_high_percent=reader.integer("alarmCpuHighPercent", minimum=1, maximum=100),
        alarm_memory_high_percent=reader.integer("alarmMemoryHighPercent", minimum=1,
                                                 maximum=100),
        alarm_evaluation_minutes=reader.integer("alarmEvaluationMinutes", minimum=1,
                                                maximum=60),
    )
