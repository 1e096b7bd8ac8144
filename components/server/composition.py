"""The self-hosted server's components wired together (`prefectServer` single or ha).

`compose_server` adds, next to the worker stack: the database (components/server/database.py), Redis in ha
(components/server/redis.py), the load balancer when there is one (components/server/access.py), the
server tasks (components/server/server.py), the redeploy on password rotation
(components/server/rotation_redeploy.py) and the alarms on the stack's topic (components/server/alarms.py).
The worker reaches the server at `Settings.prefect_api_url`, the Cloud Map name, and the work pool
is upserted from inside the VPC (components/prefect/pool_bootstrap.py), never from the deploying machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.platform.access_logs import AccessLogs
from components.server.database import DatabaseArgs, PrefectDatabase
from components.platform.network import Network
from components.server.redis import PrefectRedis, RedisArgs
from components.worker.secret import PrefectSecret
from components.server.server import PrefectServer, RedisEndpoint, ServerArgs
from components.server.access import AccessArgs, ServerAccess
from components.server.alarms import ServerAlarms, ServerAlarmsArgs
from components.server.rotation_redeploy import RotationArgs, RotationRedeploy
from components.config.server import db_identifier, physical_name
from components.config.server import SERVER_PORT, SERVER_SERVICE_NAME, server_namespace
from components.config.settings import Settings
from components.platform.aws import AwsContext


# The server's stack outputs and what each is for (components/stack.EXPORTS takes them in): every
# one but serverUrl is there whenever the stack runs a server; serverUrl only with a load balancer.
SERVER_EXPORTS: dict[str, str] = {
    "serverMode": "With a server: `prefectServer` (single or ha).",
    "serverAccess": "With a server: `serverAccess` (internal or public).",
    "serverApiUrl": "With a server: the API URL the worker uses, a Cloud Map name in the VPC.",
    "serverServiceNames": "With a server: its ECS services by role (server, or api and services).",
    "serverExecServiceName": "With a server: the service `make ui` port-forwards into.",
    "serverExecContainer": "With a server: the container `make ui` port-forwards into.",
    "serverExecEnabled": "With a server: whether ECS Exec is on (internal access only).",
    "serverPort": "With a server: the port its API and UI listen on.",
    "serverDbEndpoint": "With a server: the RDS PostgreSQL address.",
    "serverDbSecretArn": "With a server: RDS's managed master secret (used by migrations only).",
    "serverDbAppSecretArn": "With a server: the password of the database role the server runs "
                            "as.",
    "serverRedeployStateMachineArn": "With a server: the state machine that redeploys it after a "
                                     "password rotation.",
    "serverUrl": "With a load balancer: the server's URL for people.",
}


@dataclass(frozen=True)
class ServerStores:
    """The server's database and (ha) Redis: declared before the stack key's policy, which names
    the secrets they hold."""
    database: PrefectDatabase
    redis: Optional[PrefectRedis]

    def key_statements(self, ctx: AwsContext) -> list[dict[str, Any]]:
        """The stack key's statements for the server's stores (components/platform/stack_key.py).

        - The managed database secret and the Redis token are used through Secrets Manager only,
          by principals IAM also grants the key (the deployer; the server's execution role,
          components/server/server.py), as for the credential secret.
        - RDS and ElastiCache encrypt storage, snapshots and backups with the key through their
          own service only (kms:ViaService), for principals of this account.
        """
        secret_arns = [self.database.master_secret_arn, self.database.app_secret_arn,
                       *([self.redis.token_secret_arn] if self.redis else [])]
        root = pulumi.Output.format("arn:{0}:iam::{1}:root", ctx.partition, ctx.account_id)
        services = [ctx.service_host("rds")]
        if self.redis:
            services.append(ctx.service_host("elasticache"))
        return [
            {
                "Sid": "ServerSecretsViaSecretsManagerWithIam",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"],
                # AWS: in a key policy "*" is this key; the condition pins service and secrets.
                "Resource": "*",
                "Condition": {"StringEquals": {
                    "kms:ViaService": ctx.service_host("secretsmanager"),
                    "kms:EncryptionContext:SecretARN": secret_arns}},
            },
            {
                "Sid": "ServerStorageViaRdsAndElastiCache",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                           "kms:CreateGrant", "kms:ListGrants", "kms:DescribeKey"],
                # AWS: in a key policy "*" is this key; the condition pins the services.
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": services,
                                               "kms:CallerAccount": ctx.account_id}},
            },
        ]


@dataclass(frozen=True)
class SelfHostedServer:
    settings: Settings
    database: PrefectDatabase
    redis: Optional[PrefectRedis]
    access: Optional[ServerAccess]
    server: PrefectServer
    rotation: RotationRedeploy
    alarms: ServerAlarms

    def exports(self) -> dict[str, Any]:
        """What an operator and `make ui` need; no secret value, only ARNs and names."""
        server = self.settings.server
        return {
            "serverMode": server.mode,
            "serverAccess": server.access,
            "serverApiUrl": self.settings.prefect_api_url,
            "serverServiceNames": {role: s.name for role, s in self.server.services.items()},
            "serverExecServiceName": self.server.exec_service.name,
            "serverExecContainer": self.server.exec_container,
            "serverExecEnabled": server.access != "public",
            "serverPort": SERVER_PORT,
            "serverDbEndpoint": self.database.address,
            "serverDbSecretArn": self.database.master_secret_arn,
            "serverDbAppSecretArn": self.database.app_secret_arn,
            "serverRedeployStateMachineArn": self.rotation.state_machine.arn,
            # The load balancer's URL for people; none in single/internal (make ui instead).
            **({"serverUrl": self.access.url} if self.access else {}),
        }


def compose_server_stores(settings: Settings, network: Network, key_arn: pulumi.Input[str],
                          key_id: pulumi.Input[str], context: AwsContext) -> ServerStores:
    server, tags, prefix = settings.server, settings.tags, settings.prefix
    assert network.server_security_group is not None, "the network was built without a server"
    server_sg = network.server_security_group.id
    database = PrefectDatabase("server-db", DatabaseArgs(
        identifier=db_identifier(prefix),
        vpc_id=network.vpc_id,
        subnet_ids=network.isolated_subnet_ids,
        client_security_group_id=server_sg,
        instance_class=server.db_instance_class,
        allocated_storage_gb=server.db_allocated_storage_gb,
        max_allocated_storage_gb=server.db_max_allocated_storage_gb,
        backup_retention_days=server.db_backup_retention_days,
        deletion_protection=server.db_deletion_protection,
        final_snapshot=server.db_final_snapshot,
        multi_az=server.ha,
        tags=tags,
        kms_key_arn=key_arn,
        kms_key_id=key_id,
        restore_snapshot=server.db_restore_snapshot,
        context=context,
    ))
    redis = PrefectRedis("server-redis", RedisArgs(
        identifier=physical_name(prefix, "redis", 40),
        vpc_id=network.vpc_id,
        subnet_ids=network.isolated_subnet_ids,
        client_security_group_id=server_sg,
        node_type=server.redis_node_type,
        tags=tags,
        kms_key_arn=key_arn,
    )) if server.ha else None
    return ServerStores(database, redis)


def compose_server(settings: Settings, network: Network, secret: PrefectSecret,
                   stores: ServerStores, access_logs: Optional[AccessLogs], context: AwsContext,
                   cluster_arn: pulumi.Input[str], cluster_name: str, log_group_name: str,
                   exec_log_group_name: str, topic_arn: pulumi.Input[str],
                   key_arn: pulumi.Input[str]) -> SelfHostedServer:
    """The rest of the server, once the stack key's policy is in place (`key_arn` after it)."""
    server, tags, prefix = settings.server, settings.tags, settings.prefix
    assert network.server_security_group is not None, "the network was built without a server"
    server_sg = network.server_security_group.id
    database, redis = stores.database, stores.redis
    access = ServerAccess("server-access", AccessArgs(
        prefix=prefix,
        public=server.public,
        vpc_id=network.vpc_id,
        internal_client_security_group_ids={
            "worker": network.worker_security_group.id,
            "flow runs": network.flow_run_security_group.id,
            "server": server_sg},
        subnet_ids=network.public_subnet_ids if server.public else network.worker_subnet_ids,
        server_security_group_id=server_sg,
        port=SERVER_PORT,
        allowed_cidrs=server.allowed_cidrs,
        domain_name=server.domain_name,
        hosted_zone_id=server.hosted_zone_id,
        certificate_arn=server.certificate_arn,
        tags=tags,
        access_log_bucket=access_logs.bucket.bucket,
        access_log_ready=access_logs.policy,
        deletion_protection=server.lb_deletion_protection,
    )) if server.load_balanced and access_logs is not None else None
    prefect_server = PrefectServer("server", ServerArgs(
        mode=server.mode,
        prefix=prefix,
        context=context,
        cluster_arn=cluster_arn,
        cluster_name=cluster_name,
        log_group_name=log_group_name,
        exec_log_group_name=exec_log_group_name,
        image=server.image,
        cpu=server.cpu,
        memory=server.memory,
        api_count=server.api_count,
        cpu_architecture=settings.cpu_architecture,
        capacity_provider=settings.capacity_provider,
        port=SERVER_PORT,
        vpc_id=network.vpc_id,
        namespace=server_namespace(settings.project, settings.stack),
        service_name=SERVER_SERVICE_NAME,
        subnet_ids=network.worker_subnet_ids,
        assign_public_ip=network.assign_public_ip,
        security_group_id=server_sg,
        client_security_group_ids={"worker": network.worker_security_group.id,
                                   "flow-runs": network.flow_run_security_group.id},
        db_host=database.address,
        db_secret_arn=database.master_secret_arn,
        db_app_secret_arn=database.app_secret_arn,
        auth_secret_arn=secret.arn,
        redis=RedisEndpoint(redis.host, redis.token_secret_arn) if redis else None,
        target_group_arn=access.target_group.arn if access else None,
        exec_enabled=server.access != "public",
        tags=tags,
        kms_key_arn=key_arn,
        events_retention_days=server.events_retention_days,
        flow_run_retention_days=server.flow_run_retention_days,
        depends_on=access.listeners if access else (),
    ))
    rotation = RotationRedeploy("server-rotation", RotationArgs(
        prefix=prefix,
        context=context,
        secret_arns=[database.master_secret_arn, database.app_secret_arn],
        cluster_arn=cluster_arn,
        service_arns={role: s.arn for role, s in prefect_server.services.items()},
        tags=tags,
        log_retention_days=settings.log_retention_days,
        kms_key_arn=key_arn,
    ))
    alarms = ServerAlarms("server-alarms", ServerAlarmsArgs(
        prefix=prefix,
        topic_arn=topic_arn,
        evaluation_minutes=settings.operations.alarm_evaluation_minutes,
        db_identifier=database.instance.identifier,
        db_instance_class=server.db_instance_class,
        db_allocated_storage_gb=server.db_allocated_storage_gb,
        load_balancer_suffix=access.load_balancer.arn_suffix if access else None,
        target_group_suffix=access.target_group.arn_suffix if access else None,
        redis_id=redis.replication_group.replication_group_id if redis else None,
        tags=tags,
    ))
    return SelfHostedServer(settings, database, redis, access, prefect_server, rotation, alarms)
