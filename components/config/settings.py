"""The stack's configuration, read once and validated before any resource is declared.

`load_settings` turns a `pulumi.Config` into a frozen `Settings`, reading each concern's keys through
its own module of this package (`reader` says how keys are read and refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import urlparse

import pulumi

from components.config.credential import (PrefectCredential, parse_api_url, parse_credential,
                                          parse_server_credential)
from components.config.flow_code import FlowCodeSettings, parse_flow_code
from components.config.hardening import HardeningSettings, parse_hardening
from components.config.network import (MAX_AZS, MIN_AZS, ExistingVpc, NatGateways, check_vpc_cidr,
                                       parse_existing_vpc)
from components.config.operations import OperationsSettings, parse_operations
from components.config.reader import ConfigError, Reader
from components.config.run_recovery import RunRecoverySettings, parse_run_recovery
from components.config.server import (ServerSettings, check_restore_target, db_identifier,
                                      parse_server, server_api_url)
from components.config.validators import LOG_RETENTION_DAYS, check_fargate_size, check_image
from components.config.worker import (MAX_WORK_POOL_CONCURRENCY, MAX_WORKERS, CapacityProvider,
                                      CpuArchitecture, parse_policy_arns, parse_tags,
                                      parse_work_pool_name, parse_work_queues)


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    prefect_api_url: str
    credential: PrefectCredential
    work_pool_name: str
    work_queues: tuple[str, ...]
    worker_image: str
    worker_cpu: int
    worker_memory: int
    worker_count: int
    cpu_architecture: CpuArchitecture
    capacity_provider: CapacityProvider
    nat_gateways: NatGateways
    availability_zone_count: int
    vpc_cidr: str
    existing_vpc: Optional[ExistingVpc]
    log_retention_days: int
    flow_run_policy_arns: tuple[str, ...]
    tags: Mapping[str, str]
    work_pool_concurrency_limit: Optional[int]
    flow_run_cpu: int
    flow_run_memory: int
    flow_run_image: str
    manage_work_pool: bool
    operations: OperationsSettings
    hardening: HardeningSettings
    flow_code: FlowCodeSettings
    run_recovery: RunRecoverySettings
    server: ServerSettings

    @property
    def prefix(self) -> str:
        """A stack-unique prefix for physical names AWS requires to be unique."""
        return f"{self.project}-{self.stack}"

    @property
    def events_queue_name(self) -> str:
        """The SQS queue of the cluster's ECS task events; named up front so IAM can grant it."""
        return f"{self.prefix}-ecs-events"

    @property
    def api_port(self) -> int:
        parsed = urlparse(self.prefect_api_url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)


def load_settings(config: pulumi.Config, project: str, stack: str) -> Settings:
    """Read and validate every key; raise `ConfigError` on the first bad value."""
    reader = Reader(config)
    server = parse_server(reader, availability_zone_count=reader.integer("availabilityZoneCount"),
                          adopted_vpc=reader.optional("vpcId") is not None,
                          region=pulumi.Config("aws").get("region"))
    if server.enabled:
        prefect_api_url = server_api_url(project, stack)
        credential = parse_server_credential(config, reader, server, prefect_api_url)
    else:
        prefect_api_url = parse_api_url(reader.required("prefectApiUrl"))
        credential = parse_credential(config, reader, prefect_api_url)
    cpu = reader.integer("workerCpu")
    memory = reader.integer("workerMemory")
    cpu_architecture: CpuArchitecture = reader.choice("cpuArchitecture", CpuArchitecture)
    capacity_provider: CapacityProvider = reader.choice("capacityProvider", CapacityProvider)
    nat_gateways: NatGateways = reader.choice("natGateways", NatGateways)
    check_fargate_size(cpu, memory)
    if capacity_provider == "FARGATE_SPOT" and cpu_architecture == "ARM64":
        raise ConfigError(
            "capacityProvider", capacity_provider,
            "Fargate Spot runs X86_64 tasks only; use cpuArchitecture X86_64 or capacityProvider FARGATE",
        )
    worker_count = reader.integer("workerCount", minimum=1, maximum=MAX_WORKERS)
    availability_zone_count = reader.integer("availabilityZoneCount")
    if not MIN_AZS <= availability_zone_count <= MAX_AZS:
        raise ConfigError(
            "availabilityZoneCount", availability_zone_count,
            f"a whole number from {MIN_AZS} to {MAX_AZS} (a worker in one AZ dies with that AZ)",
        )
    vpc_cidr = reader.string("vpcCidr")
    check_vpc_cidr(vpc_cidr, availability_zone_count,
                    tiers=(1 if nat_gateways == "none" else 2) + (1 if server.enabled else 0))
    flow_run_cpu = reader.integer("flowRunCpu")
    flow_run_memory = reader.integer("flowRunMemory")
    check_fargate_size(flow_run_cpu, flow_run_memory, "flowRunCpu", "flowRunMemory")
    concurrency_limit = reader.integer("workPoolConcurrencyLimit", minimum=0,
                                       maximum=MAX_WORK_POOL_CONCURRENCY)
    settings = Settings(
        project=project,
        stack=stack,
        prefect_api_url=prefect_api_url,
        credential=credential,
        work_pool_name=parse_work_pool_name(reader.required("workPoolName")),
        work_queues=parse_work_queues(reader.string_list("workQueues")),
        worker_image=check_image(reader.string("workerImage"), "workerImage"),
        worker_cpu=cpu,
        worker_memory=memory,
        worker_count=worker_count,
        cpu_architecture=cpu_architecture,
        capacity_provider=capacity_provider,
        nat_gateways=nat_gateways,
        availability_zone_count=availability_zone_count,
        vpc_cidr=vpc_cidr,
        existing_vpc=parse_existing_vpc(reader, nat_gateways),
        log_retention_days=reader.choice_int("logRetentionDays", LOG_RETENTION_DAYS),
        flow_run_policy_arns=parse_policy_arns(reader.string_list("flowRunPolicyArns")),
        tags=parse_tags(reader.string_list("tags"), project, stack),
        work_pool_concurrency_limit=concurrency_limit or None,
        flow_run_cpu=flow_run_cpu,
        flow_run_memory=flow_run_memory,
        flow_run_image=check_image(reader.string("flowRunImage"), "flowRunImage"),
        manage_work_pool=reader.boolean("manageWorkPool"),
        operations=parse_operations(reader, worker_count),
        hardening=parse_hardening(reader, LOG_RETENTION_DAYS),
        flow_code=parse_flow_code(reader, f"{project}-{stack}"),
        run_recovery=parse_run_recovery(reader),
        server=server,
    )
    # Last, once every value is known good: the one check that reads AWS (does the database exist?).
    check_restore_target(server, db_identifier(settings.prefix))
    return settings
