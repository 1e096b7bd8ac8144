"""The whole stack: the components wired together from validated settings, and its exports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.platform.access_logs import AccessLogs, AccessLogsArgs
from components.worker.alarms import AlarmsArgs, WorkerAlarms, key_statements as alarm_key_statements
from components.worker.ecs_events import EcsEvents, EcsEventsArgs
from components.platform.flow_code import FlowCode, FlowCodeArgs, created_bucket_name
from components.worker.iam import IamArgs, WorkerIam
from components.prefect.job_template import FlowRunDefaults
from components.platform.aws import AwsContext
from components.platform.network import Network, NetworkArgs
from components.prefect.stuck_run_automation import StuckRunAutomation, StuckRunAutomationArgs, stuck_pending_automation
from components.worker.scaling import ScalingArgs, WorkerScaling
from components.prefect.pool_bootstrap import bootstrap_container
from components.worker.secret import PrefectSecret, PrefectSecretArgs
from components.server.composition import (SERVER_EXPORTS, SelfHostedServer, compose_server,
                                           compose_server_stores)
from components.config.server import SERVER_PORT
from components.config.settings import Settings
from components.platform.stack_key import (StackKey, StackKeyArgs, exec_sessions_statement,
                                           logs_statement, secrets_manager_statements)
from components.platform.vpc_hardening import VpcHardening, VpcHardeningArgs, flow_log_group_name
from components.prefect.work_pool import WorkPool, WorkPoolArgs
from components.server.rotation_redeploy import execution_log_group_name
from components.worker.worker import PrefectWorker, WorkerArgs, exec_log_group_name


# Every stack output and what it is for: the README's exports table and the test of which outputs
# exist both read this. An output that only some stacks have is listed in CONDITIONAL_EXPORTS.
EXPORTS: dict[str, str] = {
    "vpcId": "The VPC the worker and its flow runs live in (new, or the adopted `vpcId`).",
    "publicSubnetIds": "The VPC's public subnets.",
    "privateSubnetIds": "The VPC's private subnets (none with `natGateways: none`).",
    "workerSubnetIds": "The subnets the worker and its flow runs are placed in.",
    "workerAssignsPublicIp": "Whether tasks get a public IP (only with `natGateways: none`).",
    "workerSecurityGroupId": "The worker's security group: no inbound, out to HTTPS and the API port.",
    "flowRunSecurityGroupId": "The flow runs' security group: no inbound, any outbound.",
    "clusterName": "The ECS cluster of the worker and its flow runs.",
    "clusterArn": "The cluster's ARN.",
    "serviceName": "The ECS service that runs the worker.",
    "taskDefinitionArn": "The worker's task definition (image, size, command).",
    "logGroupName": "The CloudWatch log group of the worker and the flow runs.",
    "credentialSecretArn": "The Secrets Manager secret holding the Prefect credential.",
    "executionRoleArn": "The role ECS starts the worker with (image, logs, the secret).",
    "workerTaskRoleArn": "The worker process's role: RunTask into this cluster and no more.",
    "flowRunExecutionRoleArn": "The role ECS starts flow-run tasks with.",
    "flowRunTaskRoleArn": "What flow code may do in AWS (`flowRunPolicyArns`).",
    "workPoolName": "The ECS work pool the worker polls.",
    "workPoolJobVariables": "The job variables that put flow runs in this stack's cluster, subnets, "
                            "security group and roles.",
    "workPoolManaged": "Whether the stack owns the work pool (`manageWorkPool`).",
    "ecsEventsQueueUrl": "The SQS queue of the cluster's task events, read by the worker's observer.",
    "alarmTopicArn": "The SNS topic the alarms notify (`alarmEmail` subscribes to it).",
    "workerScalingResourceId": "With autoscaling only: the Application Auto Scaling target.",
    "stackKeyArn": "The stack's KMS key: the credential secret, the log groups, the alarm topic.",
    "defaultSecurityGroupId": "A created VPC's default security group, stripped of every rule.",
    "vpcFlowLogGroupName": "With `vpcFlowLogs` on a created VPC: the flow log's log group.",
    "flowImageRepositoryUrl": "Unless `flowImageRepository` is none: the ECR repository for flow "
                              "images (push with `flowPublisherRoleArn`).",
    "flowCodeBucketName": "Unless `flowCodeBucket` is none: the S3 bucket for flow code "
                          "(`flows/`) and results (`results/`).",
    **SERVER_EXPORTS,
}
CONDITIONAL_EXPORTS = frozenset({"workerScalingResourceId", "defaultSecurityGroupId",
                                 "vpcFlowLogGroupName", "flowImageRepositoryUrl",
                                 "flowCodeBucketName", *SERVER_EXPORTS})


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
    key: Optional[StackKey] = None
    # None for an adopted VPC.
    vpc_hardening: Optional[VpcHardening] = None
    flow_code: Optional[FlowCode] = None
    # With the pool (manageWorkPool): returns runs stuck in Pending to Scheduled.
    stuck_runs: Optional[StuckRunAutomation] = None
    # None unless prefectServer is single or ha.
    server: Optional[SelfHostedServer] = None

    def exports(self) -> dict[str, Any]:
        """The stack outputs; each one is described in EXPORTS."""
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
            "workPoolJobVariables": self.flow_runs.job_variables(),
            "workPoolManaged": self.work_pool is not None,
            "ecsEventsQueueUrl": self.events.queue.url,
            "alarmTopicArn": self.alarms.topic.arn,
            **({"workerScalingResourceId": self.scaling.target.resource_id}
               if self.scaling is not None else {}),
            **self.hardening_exports(),
            **(self.flow_code.exports() if self.flow_code is not None else {}),
            **(self.server.exports() if self.server is not None else {}),
        }

    def hardening_exports(self) -> dict[str, Any]:
        exports: dict[str, Any] = {"stackKeyArn": self.key.arn} if self.key else {}
        if self.vpc_hardening is not None:
            exports["defaultSecurityGroupId"] = self.vpc_hardening.default_security_group.id
            if self.vpc_hardening.flow_log_group is not None:
                exports["vpcFlowLogGroupName"] = self.vpc_hardening.flow_log_group.name
        return exports


def compose_stack(settings: Settings) -> Stack:
    tags = settings.tags
    hardening = settings.hardening
    self_hosted = settings.server.enabled
    # Partition, region and account, looked up once for every ARN the components build.
    context = AwsContext.current(pulumi.InvokeOptions())
    key = StackKey("stack-key", StackKeyArgs(
        prefix=settings.prefix, tags=tags, context=context,
        retain=self_hosted and settings.server.db_keeps_backups))
    network = Network("network", NetworkArgs(
        nat_gateways=settings.nat_gateways,
        availability_zone_count=settings.availability_zone_count,
        vpc_cidr=settings.vpc_cidr,
        existing_vpc=settings.existing_vpc,
        worker_egress_ports=[] if self_hosted else [settings.api_port],
        tags=tags,
        flow_run_egress=hardening.flow_run_egress,
        server_port=SERVER_PORT if self_hosted else None,
    ))
    secret = PrefectSecret("prefect-credential", PrefectSecretArgs(
        credential=settings.credential,
        description=f"{settings.credential.env_name} of the Prefect worker of {settings.prefix}",
        tags=tags,
        kms_key_arn=key.arn,
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
        context=context,
        work_pool_name=settings.work_pool_name,
    ))
    flow_logs = settings.existing_vpc is None and hardening.vpc_flow_logs
    # The server's database and Redis hold secrets on the stack key: declared before its policy.
    stores = (compose_server_stores(settings, network, key.arn, key.key_id, context)
              if self_hosted else None)
    exec_logs = exec_log_group_name(settings.prefix)
    key.set_policy([
        *(secrets_manager_statements(context, [iam.execution_role.arn,
                                                   iam.flow_run_execution_role.arn], secret.arn)
          if secret.created else []),
        logs_statement(context, [log_group_name, exec_logs, *(
            [flow_log_group_name(settings.prefix)] if flow_logs else []), *(
            [execution_log_group_name(settings.prefix)] if self_hosted else [])]),
        exec_sessions_statement(context),
        *alarm_key_statements(context),
        *(stores.key_statements(context) if stores else []),
    ])
    vpc_hardening = VpcHardening("vpc-hardening", VpcHardeningArgs(
        vpc_id=network.vpc_id, prefix=settings.prefix, context=context, flow_logs=flow_logs,
        flow_log_retention_days=hardening.vpc_flow_log_retention_days,
        kms_key_arn=key.arn_after_policy, tags=tags,
    )) if settings.existing_vpc is None else None
    # One bucket for the server ALB's and the flow-code bucket's access logs, when either exists.
    flow_code_bucket = settings.flow_code.bucket.mode == "create"
    access_logs = AccessLogs("access-logs", AccessLogsArgs(
        prefix=settings.prefix, context=context,
        retention_days=settings.log_retention_days, tags=tags,
        s3_sources=[created_bucket_name(settings.flow_code, settings.prefix, context)]
        if flow_code_bucket else [],
    )) if flow_code_bucket or settings.server.load_balanced else None
    flow_code = FlowCode("flow-code", FlowCodeArgs(
        settings.flow_code, settings.prefix, context, iam.flow_run_execution_role.name,
        iam.flow_run_execution_role.arn, iam.flow_run_task_role.name, tags,
        access_log_bucket=access_logs.bucket.bucket if access_logs else None,
        access_log_ready=access_logs.policy if access_logs else None))
    # Named up front, as IAM does, so the pool and the events rule exist before the worker polls.
    cluster_arn = context.arn("ecs", f"cluster/{cluster_name}")
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
        region=context.region,
        capacity_provider=settings.capacity_provider,
        cpu=settings.flow_run_cpu,
        memory=settings.flow_run_memory,
        image=flow_code.flow_run_image(settings.flow_run_image),
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
    automation_name = f"{settings.prefix}: reschedule stuck Pending runs"
    stuck_runs = StuckRunAutomation("stuck-runs", StuckRunAutomationArgs(
        api_url=settings.prefect_api_url, name=automation_name,
        work_pool_name=settings.work_pool_name,
        pending_seconds=settings.run_recovery.stuck_pending_seconds,
    ), pulumi.ResourceOptions(depends_on=[work_pool])) if work_pool else None
    # The stack's own server is out of the deploying machine's reach: the pool and the automation
    # are upserted from inside the VPC, by the worker task itself, before the worker starts.
    pool_bootstrap = bootstrap_container(
        image=settings.worker_image, api_url=settings.prefect_api_url,
        work_pool_name=settings.work_pool_name, description=pool_description,
        concurrency_limit=settings.work_pool_concurrency_limit,
        base_job_template=flow_runs.base_job_template(), credential_env_name=secret.env_name,
        credential_secret_arn=secret.arn, log_group_name=log_group_name,
        region=context.region, automation=stuck_pending_automation(
            automation_name, settings.work_pool_name,
            settings.run_recovery.stuck_pending_seconds),
    ) if settings.manage_work_pool and self_hosted else None
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
        region=context.region,
        tags=tags,
        events_queue_name=settings.events_queue_name,
        container_insights=settings.operations.container_insights,
        autoscaling=settings.operations.autoscaling,
        log_kms_key_arn=key.arn_after_policy,
        exec_log_group_name=exec_logs,
        pool_bootstrap=pool_bootstrap,
    ), pulumi.ResourceOptions(depends_on=[events, *([work_pool] if work_pool else [])]))
    alarms, scaling = compose_operations(settings, context, worker,
                                         dead_letter_queue_name=events.dead_letter_queue.name,
                                         key_arn=key.arn_after_policy)
    server = compose_server(settings, network, secret, stores, access_logs, context,
                            worker.cluster.arn, cluster_name, log_group_name, exec_logs,
                            alarms.topic.arn, key.arn_after_policy) if stores else None
    return Stack(settings, network, secret, iam, worker, flow_runs, events, work_pool,
                 alarms, scaling, key, vpc_hardening, flow_code, stuck_runs, server)


def compose_operations(settings: Settings, context: AwsContext, worker: PrefectWorker,
                       dead_letter_queue_name: pulumi.Input[str], *,
                       key_arn: pulumi.Input[str],
                       ) -> tuple[WorkerAlarms, Optional[WorkerScaling]]:
    """Alarms always, one of them on the events queue's dead-letter queue; scaling when
    workerMaxCount exceeds workerMinCount. The stack key encrypts the alarm topic."""
    ops = settings.operations
    alarms = WorkerAlarms("alarms", AlarmsArgs(
        prefix=settings.prefix,
        context=context,
        cluster_name=worker.cluster.name,
        cluster_arn=worker.cluster.arn,
        service_name=worker.service.name,
        service_arn=worker.service.arn,
        container_insights=ops.container_insights,
        email=ops.alarm_email,
        cpu_high_percent=ops.alarm_cpu_high_percent,
        memory_high_percent=ops.alarm_memory_high_percent,
        evaluation_minutes=ops.alarm_evaluation_minutes,
        tags=settings.tags,
        dead_letter_queue_name=dead_letter_queue_name,
        key_arn=key_arn,
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
