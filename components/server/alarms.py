"""Alarms for the self-hosted server, on the stack's existing alarm topic (components/worker/alarms.py).

- Database (AWS/RDS): CPU above 80%, free storage below 20% of the allocation (or a week of growth
  at the stated load, components/server/growth.py, if more), connections above
  80% of what the instance class allows (Prefect holds up to 15 per process).
- Load balancer, when there is one (AWS/ApplicationELB): any unhealthy target (readiness
  `/api/ready` failing: database down or its password rotated under a running task), target 5xx
  responses, and 5xx answered by the ALB itself (no healthy target).
- Redis (ha, AWS/ElastiCache): engine CPU above 80%, memory above 75% of `maxmemory`
  (`REDIS_MEMORY_HIGH_PERCENT`).

Without a load balancer (`single`, internal) the server task's health is its container health
check: ECS replaces an unhealthy task, and the service events rule of components/worker/alarms.py reports
a service that cannot start or place tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.config.reader import NAMESPACE
from components.platform.alarm import AlarmTarget, threshold_alarm
from components.server.database import max_connections
from components.server.growth import ALARM_HEADROOM_DAYS, free_storage_alarm_bytes

CPU_HIGH_PERCENT = 80
# DatabaseMemoryUsagePercentage is used memory over `maxmemory`. Prefect's streams and leases have no
# TTL, and ElastiCache's default policy (volatile-lru) evicts only keys with one, so at 100% Redis
# refuses writes and the server's messaging stops: warn with a quarter of the room left, earlier
# than a CPU alarm would, since memory does not come back by itself.
REDIS_MEMORY_HIGH_PERCENT = 75
FREE_STORAGE_LOW_SHARE = 0.2
CONNECTIONS_HIGH_SHARE = 0.8
TARGET_5XX_PER_MINUTE = 5


@dataclass(frozen=True)
class ServerAlarmsArgs:
    prefix: str
    topic_arn: pulumi.Input[str]
    evaluation_minutes: int
    db_identifier: pulumi.Input[str]
    db_instance_class: str
    db_allocated_storage_gb: int
    # ALB and target group ARN suffixes (the metrics' dimensions); None: no load balancer.
    load_balancer_suffix: Optional[pulumi.Input[str]]
    target_group_suffix: Optional[pulumi.Input[str]]
    redis_id: Optional[pulumi.Input[str]]
    tags: Mapping[str, str]


class ServerAlarms(pulumi.ComponentResource):
    alarms: list[aws.cloudwatch.MetricAlarm]

    def __init__(self, name: str, args: ServerAlarmsArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:ServerAlarms", name, None, opts)
        alarms = AlarmTarget(self, name, args.prefix, args.topic_arn, args.evaluation_minutes,
                             args.tags)
        db = {"DBInstanceIdentifier": args.db_identifier}
        free_storage_low = free_storage_alarm_bytes(args.db_allocated_storage_gb,
                                                    FREE_STORAGE_LOW_SHARE)
        self.alarms = [
            threshold_alarm(alarms, "db-cpu-high", "Prefect database CPU above 80%", "AWS/RDS",
                            "CPUUtilization", db, CPU_HIGH_PERCENT),
            threshold_alarm(alarms, "db-storage-low", "Prefect database free storage below 20% "
                            f"of its allocation or {ALARM_HEADROOM_DAYS} days of growth at the "
                            "stated load", "AWS/RDS", "FreeStorageSpace", db, free_storage_low,
                            operator="LessThanThreshold", statistic="Minimum"),
            threshold_alarm(alarms, "db-connections-high",
                            "Prefect database connections above 80% of the instance's maximum",
                            "AWS/RDS", "DatabaseConnections", db,
                            int(max_connections(args.db_instance_class) * CONNECTIONS_HIGH_SHARE),
                            statistic="Maximum"),
        ]
        if args.load_balancer_suffix is not None and args.target_group_suffix is not None:
            lb = {"LoadBalancer": args.load_balancer_suffix}
            target = {**lb, "TargetGroup": args.target_group_suffix}
            self.alarms += [
                threshold_alarm(alarms, "server-unhealthy-targets", "A Prefect API task fails /api/ready",
                                "AWS/ApplicationELB", "UnHealthyHostCount", target, 0,
                                statistic="Maximum"),
                threshold_alarm(alarms, "server-target-5xx", "The Prefect API answers 5xx",
                                "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", target,
                                TARGET_5XX_PER_MINUTE, statistic="Sum"),
                threshold_alarm(alarms, "server-lb-5xx", "The load balancer answers 5xx (no healthy API "
                                "task)", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", lb,
                                TARGET_5XX_PER_MINUTE, statistic="Sum"),
            ]
        if args.redis_id is not None:
            redis = {"ReplicationGroupId": args.redis_id}
            self.alarms += [
                threshold_alarm(alarms, "redis-cpu-high", "Prefect Redis engine CPU above 80%",
                                "AWS/ElastiCache", "EngineCPUUtilization", redis, CPU_HIGH_PERCENT),
                threshold_alarm(alarms, "redis-memory-high",
                                f"Prefect Redis memory above {REDIS_MEMORY_HIGH_PERCENT}% of "
                                "maxmemory", "AWS/ElastiCache", "DatabaseMemoryUsagePercentage",
                                redis, REDIS_MEMORY_HIGH_PERCENT),
            ]
        self.register_outputs({"alarm_names": [a.name for a in self.alarms]})
