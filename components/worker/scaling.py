"""Application Auto Scaling for the worker service: a scalable target and two target-tracking
policies, one on average CPU and one on average memory.

Scaling out is quick: a worker that is busy submitting runs and watching their tasks uses more CPU
and memory, and a second one shares the pool's runs. Scaling in is slow on purpose. ECS picks the
task to stop and sends it SIGTERM; the Prefect CLI turns that into SIGINT, the worker stops
polling, and `stopTimeout` (components/worker/worker.py) gives an in-flight RunTask call time to finish.
Flow runs already started are their own ECS tasks and keep running. What is left to protect is the
submission window, so scale-in waits for a long, calm period:

- target tracking only removes capacity after 15 minutes of low readings (its scale-in alarm), and
- `SCALE_IN_COOLDOWN` then spaces each removal by 15 minutes more, so a burst of scheduled runs
  (hourly, quarter-hourly) does not see its worker stopped halfway through the burst;
- `SCALE_OUT_COOLDOWN` is short so a burst gets its second worker within minutes.

With two policies, Application Auto Scaling scales out if either asks and in only when both do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.config.reader import NAMESPACE

SCALE_IN_COOLDOWN_SECONDS = 900
SCALE_OUT_COOLDOWN_SECONDS = 120
SERVICE_DESIRED_COUNT = "ecs:service:DesiredCount"


@dataclass(frozen=True)
class ScalingArgs:
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    min_count: int
    max_count: int
    cpu_target_percent: int
    memory_target_percent: int
    tags: Mapping[str, str]


class WorkerScaling(pulumi.ComponentResource):
    target: aws.appautoscaling.Target
    cpu_policy: aws.appautoscaling.Policy
    memory_policy: aws.appautoscaling.Policy

    def __init__(self, name: str, args: ScalingArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:WorkerScaling", name, None, opts)
        if not 1 <= args.min_count < args.max_count:
            raise ValueError(f"scaling needs 1 <= min < max, got {args.min_count}..{args.max_count}")
        # Application Auto Scaling uses its ECS service-linked role; no role is passed.
        self.target = aws.appautoscaling.Target(
            f"{name}-target",
            service_namespace="ecs",
            scalable_dimension=SERVICE_DESIRED_COUNT,
            resource_id=pulumi.Output.format("service/{0}/{1}", args.cluster_name,
                                             args.service_name),
            min_capacity=args.min_count,
            max_capacity=args.max_count,
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.cpu_policy = self._policy(name, "cpu", "ECSServiceAverageCPUUtilization",
                                       args.cpu_target_percent)
        self.memory_policy = self._policy(name, "memory", "ECSServiceAverageMemoryUtilization",
                                          args.memory_target_percent)
        self.register_outputs({"resource_id": self.target.resource_id})

    def _policy(self, name: str, metric: str, predefined: str, target: int
                ) -> aws.appautoscaling.Policy:
        return aws.appautoscaling.Policy(
            f"{name}-{metric}",
            policy_type="TargetTrackingScaling",
            resource_id=self.target.resource_id,
            scalable_dimension=self.target.scalable_dimension,
            service_namespace=self.target.service_namespace,
            target_tracking_scaling_policy_configuration=(
                aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                    target_value=float(target),
                    predefined_metric_specification=(
                        aws.appautoscaling
                        .PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                            predefined_metric_type=predefined)),
                    scale_in_cooldown=SCALE_IN_COOLDOWN_SECONDS,
                    scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS,
                    disable_scale_in=False,
                )),
            opts=pulumi.ResourceOptions(parent=self.target),
        )
