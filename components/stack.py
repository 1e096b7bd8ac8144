"""The whole stack: the components wired together from validated settings, and its exports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.iam import IamArgs, WorkerIam
from components.network import Network, NetworkArgs
from components.secret import PrefectSecret, PrefectSecretArgs
from components.settings import Settings
from components.worker import PrefectWorker, WorkerArgs
from components.alarms import AlarmsArgs, WorkerAlarms
from components.scaling import ScalingArgs, WorkerScaling


@dataclass(frozen=True)
class Stack:
    settings: Settings
    network: Network
    secret: PrefectSecret
    iam: WorkerIam
    worker: PrefectWorker
    alarms: Optional[WorkerAlarms] = None
    scaling: Optional[WorkerScaling] = None

    def job_variables(self) -> pulumi.Output[dict[str, Any]]:
        """The ECS work pool's job variables that put flow runs in this stack's cluster, subnets,
        security group and roles, with the credential taken from Secrets Manager."""
        secret_variable = (
            "prefect_api_key_secret_arn" if self.secret.env_name == "PREFECT_API_KEY"
            else "prefect_api_auth_string_secret_arn"
        )
        return pulumi.Output.all(
            cluster=self.worker.cluster.arn,
            vpc_id=self.network.vpc_id,
            subnets=self.network.worker_subnet_ids,
            security_group=self.network.flow_run_security_group.id,
            execution_role_arn=self.iam.flow_run_execution_role.arn,
            task_role_arn=self.iam.flow_run_task_role.arn,
            secret_arn=self.secret.arn,
        ).apply(lambda v: {
            "cluster": v["cluster"],
            "vpc_id": v["vpc_id"],
            "network_configuration": {
                "subnets": v["subnets"],
                "securityGroups": [v["security_group"]],
                "assignPublicIp": "ENABLED" if self.network.assign_public_ip else "DISABLED",
            },
            "execution_role_arn": v["execution_role_arn"],
            "task_role_arn": v["task_role_arn"],
            secret_variable: v["secret_arn"],
        })

    def exports(self) -> dict[str, Any]:
        return {
            "vpcId": self.network.vpc_id,
            "publicSubnetIds": self.network.public_subnet_ids,
            "privateSubnetIds": self.network.private_subnet_ids,
            "workerSubnetIds": self.network.worker_subnet_ids,
            "workerAssignsPublicIp": self.network.assign_public_ip,
            "workerSecurityGroupId": self.network.worker_security_group.id,
            "flowRunSecurityGroupId": self.network.flow_run_security_group.id,
            "clusterName": self.worker.cluster.name,
            "clusterArn": self.worker.cluster.arn,
            "serviceName": self.worker.service.name,
            "taskDefinitionArn": self.worker.task_definition.arn,
            "logGroupName": self.worker.log_group.name,
            "credentialSecretArn": self.secret.arn,
            "executionRoleArn": self.iam.execution_role.arn,
            "workerTaskRoleArn": self.iam.worker_task_role.arn,
            "flowRunExecutionRoleArn": self.iam.flow_run_execution_role.arn,
            "flowRunTaskRoleArn": self.iam.flow_run_task_role.arn,
            "workPoolName": self.settings.work_pool_name,
            "workPoolJobVariables": self.job_variables(),
            **self.operations_exports(),
        }

    def operations_exports(self) -> dict[str, Any]:
        exports: dict[str, Any] = {}
        if self.alarms is not None:
            exports["alarmTopicArn"] = self.alarms.topic.arn
        if self.scaling is not None:
            exports["workerScalingResourceId"] = self.scaling.target.resource_id
        return exports


def build_stack(settings: Settings) -> Stack:
    tags = settings.tags
    network = Network("network", NetworkArgs(
        nat_gateways=settings.nat_gateways,
        availability_zone_count=settings.availability_zone_count,
        vpc_cidr=settings.vpc_cidr,
        existing_vpc=settings.existing_vpc,
        worker_egress_ports=[settings.api_port],
        tags=tags,
    ))
    secret = PrefectSecret("prefect-credential", PrefectSecretArgs(
        credential=settings.credential,
        description=f"{settings.credential.env_name} of the Prefect worker of {settings.prefix}",
        tags=tags,
    ))
    cluster_name = settings.prefix
    log_group_name = f"/ecs/{settings.prefix}"
    iam = WorkerIam("iam", IamArgs(
        cluster_name=cluster_name,
        log_group_name=log_group_name,
        secret_arn=secret.arn,
        flow_run_policy_arns=settings.flow_run_policy_arns,
        tags=tags,
    ))
    worker = PrefectWorker("worker", WorkerArgs(
        cluster_name=cluster_name,
        log_group_name=log_group_name,
        log_retention_days=settings.log_retention_days,
        family=f"{settings.prefix}-worker",
        image=settings.worker_image,
        cpu=settings.worker_cpu,
        memory=settings.worker_memory,
        cpu_architecture=settings.cpu_architecture,
        capacity_provider=settings.capacity_provider,
        desired_count=settings.worker_count,
        work_pool_name=settings.work_pool_name,
        work_queues=settings.work_queues,
        prefect_api_url=settings.prefect_api_url,
        credential_env_name=secret.env_name,
        credential_secret_arn=secret.arn,
        execution_role_arn=iam.execution_role.arn,
        task_role_arn=iam.worker_task_role.arn,
        subnet_ids=network.worker_subnet_ids,
        security_group_ids=[network.worker_security_group.id],
        assign_public_ip=network.assign_public_ip,
        region=iam.context.region,
        tags=tags,
        container_insights=settings.operations.container_insights,
        autoscaling=settings.operations.autoscaling,
    ))
    alarms, scaling = build_operations(settings, iam, worker)
    return Stack(settings, network, secret, iam, worker, alarms, scaling)


def build_operations(settings: Settings, iam: WorkerIam, worker: PrefectWorker,
                     dead_letter_queue_name: Optional[pulumi.Input[str]] = None,
                     ) -> tuple[WorkerAlarms, Optional[WorkerScaling]]:
    """Alarms always; scaling when workerMaxCount exceeds workerMinCount. The events queue's
    dead-letter queue, when the stack has one, is passed in for its alarm."""
    ops = settings.operations
    alarms = WorkerAlarms("alarms", AlarmsArgs(
        prefix=settings.prefix,
        context=iam.context,
        cluster_name=worker.cluster.name,
        cluster_arn=worker.cluster.arn,
        service_name=worker.service.name,
        service_arn=worker.service.arn,
        container_insights=ops.container_insights == "enabled",
        email=ops.alarm_email,
        cpu_high_percent=ops.alarm_cpu_high_percent,
        memory_high_percent=ops.alarm_memory_high_percent,
        evaluation_minutes=ops.alarm_evaluation_minutes,
        tags=settings.tags,
        dead_letter_queue_name=dead_letter_queue_name,
    ))
    scaling = None
    if ops.autoscaling:
        scaling = WorkerScaling("scaling", ScalingArgs(
            cluster_name=worker.cluster.name,
            service_name=worker.service.name,
            min_count=ops.worker_min_count,
            max_count=ops.worker_max_count,
            cpu_target_percent=ops.scaling_cpu_target_percent,
            memory_target_percent=ops.scaling_memory_target_percent,
        ))
    return alarms, scaling
