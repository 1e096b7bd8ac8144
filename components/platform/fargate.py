"""The Fargate building blocks every task the stack runs shares: a Linux task definition whose
containers have read-only roots, writable only on task volumes; their logs in CloudWatch
(awslogs); their HTTP health check; and the ECS service settings every service uses (platform,
circuit breaker, tags, waiting for a steady state)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws

# Prefect's logging.yml ships a `json` formatter (prefect.logging.formatters.JsonFormatter) and
# reads PREFECT_LOGGING_<PATH>_<TO>_<KEY> overrides from the environment, so a stock image logs
# one JSON object a line with no config file. The worker copies its PREFECT_* settings into the
# flow-run tasks it starts; the logging overrides are not settings, so the pool's job template
# (components/prefect/job_template.py) puts them in the flow-run container too. COLORS off keeps ANSI out.
JSON_LOGGING_ENVIRONMENT = (
    ("PREFECT_LOGGING_HANDLERS_CONSOLE_FORMATTER", "json"),
    ("PREFECT_LOGGING_HANDLERS_DEBUG_FORMATTER", "json"),
    ("PREFECT_LOGGING_COLORS", "false"),
)


# Every container's root filesystem is read-only; these are the only paths a task writes (rung 3
# runs the declared command in a mount namespace where nothing else is writable). Each is a Fargate task
# volume with no host: ephemeral storage, empty at start, gone with the task.
PREFECT_HOME = "/var/lib/prefect"
WRITABLE_PATHS = (("prefect-home", PREFECT_HOME), ("tmp", "/tmp"))


def awslogs(group: pulumi.Input[str], region: pulumi.Input[str], stream_prefix: str) -> dict[str, Any]:
    """A container's logConfiguration: the stack's log group, one stream per task under a prefix."""
    return {"logDriver": "awslogs", "options": {
        "awslogs-group": group,
        "awslogs-region": region,
        "awslogs-stream-prefix": stream_prefix,
    }}


def http_health_check(port: int, path: str, *, start_period: int) -> dict[str, Any]:
    """ECS marks the container unhealthy when GET localhost:<port><path> is not 200 three times in
    a row. The prefect images ship Python, not curl."""
    command = ("python -c \"import sys, urllib.request; sys.exit(urllib.request.urlopen("
               f"'http://localhost:{port}{path}', timeout=4).status != 200)\"")
    return {"command": ["CMD-SHELL", command], "interval": 30, "timeout": 5, "retries": 3,
            "startPeriod": start_period}


def fargate_task_definition(name: str, *, family: str, cpu: int, memory: int,
                            cpu_architecture: str, execution_role_arn: pulumi.Input[str],
                            task_role_arn: Optional[pulumi.Input[str]],
                            containers: pulumi.Input[str], tags: dict[str, str],
                            opts: pulumi.ResourceOptions) -> aws.ecs.TaskDefinition:
    """A Linux Fargate task definition (awsvpc) whose read-only containers write only to
    WRITABLE_PATHS: task volumes with no host path, on the task's ephemeral storage."""
    return aws.ecs.TaskDefinition(
        name,
        family=family,
        network_mode="awsvpc",
        requires_compatibilities=["FARGATE"],
        cpu=str(cpu),
        memory=str(memory),
        runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
            operating_system_family="LINUX", cpu_architecture=cpu_architecture),
        execution_role_arn=execution_role_arn,
        task_role_arn=task_role_arn,
        container_definitions=containers,
        volumes=[aws.ecs.TaskDefinitionVolumeArgs(name=volume) for volume, _ in WRITABLE_PATHS],
        tags=tags,
        opts=opts,
    )


def read_only_root() -> dict[str, Any]:
    """A read-only root filesystem, writable only on the task's volumes (WRITABLE_PATHS)."""
    return {
        "readonlyRootFilesystem": True,
        "mountPoints": [{"sourceVolume": volume, "containerPath": path, "readOnly": False}
                        for volume, path in WRITABLE_PATHS],
    }


def fargate_service(name: str, *, cluster: pulumi.Input[str], task_definition: pulumi.Input[str],
                    desired_count: int, capacity_provider: str,
                    subnets: pulumi.Input[Sequence[pulumi.Input[str]]],
                    security_groups: Sequence[pulumi.Input[str]],
                    assign_public_ip: pulumi.Input[bool], minimum_healthy_percent: int,
                    maximum_percent: int, enable_execute_command: bool, tags: dict[str, str],
                    opts: pulumi.ResourceOptions, service_name: Optional[str] = None,
                    **extra: Any) -> aws.ecs.Service:
    """An ECS service on one Fargate capacity provider in the given subnets, rolled back by the
    deployment circuit breaker when new tasks fail, tagged through to its tasks; `pulumi up`
    waits for it to be steady."""
    return aws.ecs.Service(
        name,
        name=service_name,
        cluster=cluster,
        task_definition=task_definition,
        desired_count=desired_count,
        capacity_provider_strategies=[aws.ecs.ServiceCapacityProviderStrategyArgs(
            capacity_provider=capacity_provider, weight=1, base=0)],
        platform_version="LATEST",
        network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
            subnets=subnets,
            security_groups=list(security_groups),
            assign_public_ip=assign_public_ip,
        ),
        deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
            enable=True, rollback=True),
        deployment_minimum_healthy_percent=minimum_healthy_percent,
        deployment_maximum_percent=maximum_percent,
        enable_execute_command=enable_execute_command,
        enable_ecs_managed_tags=True,
        propagate_tags="SERVICE",
        wait_for_steady_state=True,
        tags=tags,
        opts=opts,
        **extra,
    )
