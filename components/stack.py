"""The whole stack: the components wired together from validated settings, and its exports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.alarms import AlarmsArgs, WorkerAlarms
from components.ecs_events import EcsEvents, EcsEventsArgs
from components.iam import IamArgs, WorkerIam
from components.job_template import FlowRunDefaults
from components.network import Network, NetworkArgs
from components.scaling import ScalingArgs, WorkerScaling
from components.pool_bootstrap import bootstrap_container
from components.secret import PrefectSecret, PrefectSecretArgs
from components.server_stack import ServerStack, build_server
from components.settings import SERVER_PORT, Settings
from components.work_pool import WorkPool, WorkPoolArgs
from components.worker import PrefectWorker, WorkerArgs


@dataclass(frozen=True)
class Stack:
    settings: Settings
    network: Network
    secret: PrefectSecret
    iam: WorkerIam
    worker: PrefectWorker
    flow_runs: FlowRunDefaults
    events: EcsEvents
    # None when manageWorkPool is false: the pool is someone else's.
    work_pool: Optional[WorkPool]
    alarms: WorkerAlarms
    # None unless workerMaxCount exceeds workerMinCount.
    scaling: Optional[WorkerScaling]
    # None unless prefectServer is single or ha.
    server: Optional[ServerStack] = None

    def job_variables(self) -> pulumi.Output[dict[str, Any]]:
        """The ECS work pool's job variables that put flow runs in this stack's cluster, subnets,
        security group and roles, with the credential taken from Secrets Manager."""
        return self.flow_runs.job_variables()

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
            "workPoolManaged": self.work_pool is not None,
            "ecsEventsQueueUrl": self.events.queue.url,
            "alarmTopicArn": self.alarms.topic.arn,
            **({"workerScalingResourceId": self.scaling.target.resource_id}
               if self.scaling is not None else {}),
            **(self.server.exports() if self.server is not None else {}),
        }


def build_stack(settings: Settings) -> Stack:
    tags = settings.tags
    self_hosted = settings.server.enabled
    network = Network("network", NetworkArgs(
        nat_gateways=settings.nat_gateways,
        availability_zone_count=settings.availability_zone_count,
        vpc_cidr=settings.vpc_cidr,
        existing_vpc=settings.existing_vpc,
        worker_egress_ports=[] if self_hosted else [settings.api_port],
        tags=tags,
        server_port=SERVER_PORT if self_hosted else None,
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
        events_queue_name=settings.events_queue_name,
    ))
    # Named up front, as IAM does, so the pool and the events rule exist before the worker polls.
    cluster_arn = iam.context.arn("ecs", f"cluster/{cluster_name}")
    flow_runs = FlowRunDefaults(
        cluster_arn=cluster_arn,
        vpc_id=network.vpc_id,
        subnet_ids=network.worker_subnet_ids,
        security_group_id=network.flow_run_security_group.id,
        assign_public_ip=network.assign_public_ip,
        execution_role_arn=iam.flow_run_execution_role.arn,
        task_role_arn=iam.flow_run_task_role.arn,
        credential_env_name=secret.env_name,
        credential_secret_arn=secret.arn,
        log_group_name=log_group_name,
        region=iam.context.region,
        capacity_provider=settings.capacity_provider,
        cpu=settings.flow_run_cpu,
        memory=settings.flow_run_memory,
        image=settings.flow_run_image,
    )
    events = EcsEvents("ecs-events", EcsEventsArgs(
        queue_name=settings.events_queue_name, cluster_arn=cluster_arn, tags=tags))
    pool_description = f"ECS flow runs of {settings.prefix}, managed by Pulumi"
    work_pool = WorkPool("work-pool", WorkPoolArgs(
        api_url=settings.prefect_api_url,
        name=settings.work_pool_name,
        base_job_template=flow_runs.base_job_template(),
        description=pool_description,
        concurrency_limit=settings.work_pool_concurrency_limit,
    )) if settings.manage_work_pool and not self_hosted else None
    # The stack's own server is out of the deploying machine's reach: the pool is upserted from
    # inside the VPC, by the worker task itself, before the worker starts.
    pool_bootstrap = bootstrap_container(
        image=settings.worker_image, api_url=settings.prefect_api_url,
        work_pool_name=settings.work_pool_name, description=pool_description,
        concurrency_limit=settings.work_pool_concurrency_limit,
        base_job_template=flow_runs.base_job_template(), credential_env_name=secret.env_name,
        credential_secret_arn=secret.arn, log_group_name=log_group_name,
        region=iam.context.region) if settings.manage_work_pool and self_hosted else None
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
        events_queue_name=settings.events_queue_name,
        depends_on=[events, *([work_pool] if work_pool else [])],
        container_insights=settings.operations.container_insights,
        autoscaling=settings.operations.autoscaling,
        pool_bootstrap=pool_bootstrap,
    ))
    alarms, scaling = build_operations(settings, iam, worker,
                                       dead_letter_queue_name=events.dead_letter_queue.name)
    server = build_server(settings, network, secret, iam.context, worker.cluster.arn,
                          cluster_name, log_group_name, alarms.topic.arn) if self_hosted else None
    return Stack(settings, network, secret, iam, worker, flow_runs, events, work_pool,
                 alarms, scaling, server)


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
            tags=settings.tags,
        ))
    return alarms, scaling
