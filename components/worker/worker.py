"""The ECS cluster and the Fargate service that runs the pull-based Prefect ECS worker.

The worker polls its work pool and launches each flow run as an ECS task in the same cluster. It
gets `PREFECT_API_URL` as a plain variable and its credential only through the task definition's
`secrets` (ECS reads it from Secrets Manager with the execution role at start). It logs to
CloudWatch, and ECS probes its `/health` endpoint from inside the container, so no port is opened.
Its root filesystem is read-only: `PREFECT_HOME` and `/tmp` are task volumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.config.reader import NAMESPACE
from components.platform.fargate import (JSON_LOGGING_ENVIRONMENT, PREFECT_HOME, awslogs,
                                         fargate_service, fargate_task_definition,
                                         http_health_check, read_only_root)
from components.prefect.stuck_run_automation import SUBMISSION_LIMIT, WORKER_RETRY_ENVIRONMENT

CONTAINER_NAME = "prefect-worker"
HEALTH_PORT = 8080
HEALTH_PATH = "/health"


@dataclass(frozen=True)
class WorkerArgs:
    cluster_name: str
    log_group_name: str
    log_retention_days: int
    family: str
    image: str
    cpu: int
    memory: int
    cpu_architecture: str
    capacity_provider: str
    desired_count: int
    work_pool_name: str
    work_queues: Sequence[str]
    prefect_api_url: str
    credential_env_name: str
    credential_secret_arn: pulumi.Input[str]
    execution_role_arn: pulumi.Input[str]
    task_role_arn: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    security_group_ids: Sequence[pulumi.Input[str]]
    assign_public_ip: bool
    region: pulumi.Input[str]
    tags: Mapping[str, str]
    # The queue of ECS task events the worker's observer reads for crash detection.
    events_queue_name: str
    container_insights: bool
    # Application Auto Scaling owns desiredCount; `pulumi up` must not reset it to desired_count.
    autoscaling: bool
    # The stack key (after its policy): encrypts the log groups and ECS Exec sessions.
    log_kms_key_arn: Optional[pulumi.Input[str]] = None
    # Where ECS Exec sessions are logged (`exec_log_group_name`); every cluster has it, though
    # only the server's internal service enables exec.
    exec_log_group_name: Optional[str] = None
    # With the stack's own server: the container that upserts the work pool from inside the VPC
    # before the worker starts (components/prefect/pool_bootstrap.py).
    pool_bootstrap: Optional[Mapping[str, Any]] = None


def exec_log_group_name(prefix: str) -> str:
    """The log group of the cluster's ECS Exec sessions (what was typed and printed)."""
    return f"/ecs/{prefix}/exec"


def worker_command(work_pool_name: str, work_queues: Sequence[str]) -> list[str]:
    # The pool is the stack's (or someone else's): a worker that created a missing one would
    # create it with prefect-aws's bare template (Prefect #20980).
    command = ["prefect", "worker", "start", "--pool", work_pool_name, "--type", "ecs",
               "--with-healthcheck", "--no-create-pool-if-not-found",
               "--limit", str(SUBMISSION_LIMIT)]
    for queue in work_queues:
        command += ["--work-queue", queue]
    return command


def container_definitions(args: WorkerArgs) -> pulumi.Output[str]:
    worker = worker_container(args)
    if args.pool_bootstrap is None:
        return pulumi.Output.json_dumps([worker])
    # The pool exists with the stack's template before the worker polls. Both memories are soft
    # reservations that add up to the task's: the bootstrap exits before the worker starts.
    reservation = args.memory - args.pool_bootstrap["memoryReservation"]
    del worker["memory"]
    worker.update(memoryReservation=reservation, dependsOn=[
        {"containerName": args.pool_bootstrap["name"], "condition": "SUCCESS"}])
    # The bootstrap runs read-only too, writing only where the worker does.
    bootstrap = {**args.pool_bootstrap, **read_only_root()}
    bootstrap["environment"] = [*args.pool_bootstrap["environment"],
                                {"name": "PREFECT_HOME", "value": PREFECT_HOME}]
    return pulumi.Output.json_dumps([worker, bootstrap])


def worker_container(args: WorkerArgs) -> dict[str, Any]:
    return {
        "name": CONTAINER_NAME,
        "image": args.image,
        "essential": True,
        "command": worker_command(args.work_pool_name, args.work_queues),
        # Container-level memory equal to the task's: the worker is the only container.
        "memory": args.memory,
        "environment": [
            {"name": "PREFECT_API_URL", "value": args.prefect_api_url},
            # The ECS observer (prefect-aws) needs a region and does not read the task metadata.
            {"name": "AWS_DEFAULT_REGION", "value": args.region},
            {"name": "PREFECT_WORKER_WEBSERVER_PORT", "value": str(HEALTH_PORT)},
            # The image's default (~/.prefect) is on the read-only root; this is a task volume.
            {"name": "PREFECT_HOME", "value": PREFECT_HOME},
            {"name": "PREFECT_INTEGRATIONS_AWS_ECS_OBSERVER_SQS_QUEUE_NAME",
             "value": args.events_queue_name},
            {"name": "PREFECT_INTEGRATIONS_AWS_ECS_OBSERVER_SQS_QUEUE_REGION",
             "value": args.region},
            *({"name": key, "value": value} for key, value in JSON_LOGGING_ENVIRONMENT),
            *({"name": key, "value": value} for key, value in WORKER_RETRY_ENVIRONMENT),
        ],
        "secrets": [{"name": args.credential_env_name, "valueFrom": args.credential_secret_arn}],
        "logConfiguration": awslogs(args.log_group_name, args.region, "worker"),
        "healthCheck": http_health_check(HEALTH_PORT, HEALTH_PATH, start_period=60),
        # An init process forwards SIGTERM so the worker stops cleanly on deploys and scale-in:
        # the Prefect CLI turns SIGTERM into SIGINT and the worker leaves its poll loop; 60 s
        # lets an in-flight RunTask call finish before ECS sends SIGKILL (Fargate allows 120).
        "linuxParameters": {"initProcessEnabled": True},
        "stopTimeout": 60,
        **read_only_root(),
    }


def _as_list(depends_on: Any) -> list[pulumi.Resource]:
    if depends_on is None:
        return []
    return list(depends_on) if isinstance(depends_on, (list, tuple)) else [depends_on]


class PrefectWorker(pulumi.ComponentResource):
    cluster: aws.ecs.Cluster
    log_group: aws.cloudwatch.LogGroup
    task_definition: aws.ecs.TaskDefinition
    service: aws.ecs.Service

    def __init__(self, name: str, args: WorkerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        """`opts.depends_on`: what must exist before a worker starts polling (its work pool, its
        events queue); the service waits for it explicitly."""
        super().__init__(f"{NAMESPACE}:index:PrefectWorker", name, None, opts)
        polling_needs = _as_list(opts.depends_on if opts else None)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        # ECS Exec sessions (the server's `make ui`) are logged to an encrypted group of their
        # own, and their data channel is encrypted with the stack key: OVERRIDE, not the default
        # (which logs only where the task's awslogs driver points, unencrypted by exec itself).
        self.exec_log_group: Optional[aws.cloudwatch.LogGroup] = None
        configuration = None
        if args.exec_log_group_name is not None:
            self.exec_log_group = aws.cloudwatch.LogGroup(
                f"{name}-exec-logs",
                name=args.exec_log_group_name,
                retention_in_days=args.log_retention_days,
                kms_key_id=args.log_kms_key_arn,
                tags=tags,
                opts=child,
            )
            configuration = aws.ecs.ClusterConfigurationArgs(
                execute_command_configuration=aws.ecs.ClusterConfigurationExecuteCommandConfigurationArgs(
                    kms_key_id=args.log_kms_key_arn,
                    logging="OVERRIDE",
                    log_configuration=aws.ecs.ClusterConfigurationExecuteCommandConfigurationLogConfigurationArgs(
                        cloud_watch_encryption_enabled=True,
                        cloud_watch_log_group_name=self.exec_log_group.name,
                    ),
                ))
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=args.cluster_name,
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights",
                                                 value="enabled" if args.container_insights
                                                 else "disabled")],
            configuration=configuration,
            tags=tags,
            opts=child,
        )
        capacity_providers = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity-providers",
            cluster_name=self.cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            opts=pulumi.ResourceOptions(parent=self.cluster),
        )
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=args.log_group_name,
            retention_in_days=args.log_retention_days,
            kms_key_id=args.log_kms_key_arn,
            tags=tags,
            opts=child,
        )
        self.task_definition = fargate_task_definition(
            f"{name}-task", family=args.family, cpu=args.cpu, memory=args.memory,
            cpu_architecture=args.cpu_architecture, execution_role_arn=args.execution_role_arn,
            task_role_arn=args.task_role_arn, containers=container_definitions(args),
            tags=tags, opts=child)
        self.service = fargate_service(
            f"{name}-service",
            cluster=self.cluster.arn,
            task_definition=self.task_definition.arn,
            desired_count=args.desired_count,
            capacity_provider=args.capacity_provider,
            subnets=args.subnet_ids,
            security_groups=args.security_group_ids,
            assign_public_ip=args.assign_public_ip,
            # A new worker starts before the old one stops, so polling never pauses on deploy.
            minimum_healthy_percent=100,
            maximum_percent=200,
            enable_execute_command=False,
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[capacity_providers, *polling_needs],
                ignore_changes=["desiredCount"] if args.autoscaling else None),
        )

        self.register_outputs({
            "cluster_name": self.cluster.name,
            "cluster_arn": self.cluster.arn,
            "service_name": self.service.name,
            "log_group_name": self.log_group.name,
            "task_definition_arn": self.task_definition.arn,
        })
