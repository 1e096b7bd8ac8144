"""The self-hosted Prefect server: Fargate tasks in the worker's cluster, found through Cloud Map.

Modes (`prefectServer`):

- `single`: one service, one task, container `prefect-server` running
  `prefect server start --host 0.0.0.0`: API, UI and background services in one process, after
  the task's `prefect-migrate` (below). Deployments stop the old task before starting the new one (minimum 0,
  maximum 100 percent), so two schedulers never overlap and two processes never migrate at once.
- `ha`: an API service of `serverApiCount` tasks spread across AZs (container `prefect-api`,
  `prefect server start --host 0.0.0.0 --no-services`, `PREFECT_SERVER_DATABASE_MIGRATE_ON_START`
  false) and a services service of one task (container `prefect-services`,
  `prefect server services start`), both on Redis for every multi-process setting.

Migrations run exactly once before a new server, API or services process starts, and they are
the only place the RDS master password goes. Every task (single and ha) has a first,
non-essential container `prefect-migrate` (same image) and its main container waits for it to exit
0 (`dependsOn` condition `SUCCESS`); main containers never migrate on start. `prefect-migrate` runs
`MIGRATE_PROGRAM` (components/server/migrate.py): under a PostgreSQL advisory lock taken as the
master user, it gives the database to the server's own role (components/server/database.py
`SERVER_USER`; created, or its password set to the secret's current value) and runs
`prefect server database upgrade -y` as that role. Tasks that start together are serialized; a
failed migration stops the task (the main container never starts) and the deployment circuit
breaker rolls back. To test it on real processes: run `MIGRATE_PROGRAM` (the container's command)
two or three times at once with the container's environment against one empty PostgreSQL; all
must exit 0, then an API with migrations off must come up.

How the worker finds the server: a Cloud Map private DNS namespace `<project>-<stack>.internal`
with a service `server` (A records, multivalue, TTL 10 s) where ECS registers each server (single)
or API (ha) task. The worker, its flow runs and the pool bootstrap use
`http://server.<project>-<stack>.internal:4200/api` (`components.config.settings.server_api_url`), known
before any resource exists. Cloud Map costs a hosted zone and a few cents of queries; Service
Connect would add an Envoy sidecar (CPU and memory) to every server and worker task, and an internal
load balancer about $16 a month: for `single` DNS is the cheapest way. In `ha` the ALB
(`components/server/access.py`) serves people (UI, CLI); the worker still goes through DNS, which
also keeps it off a public ALB's allow-list.

Containers get (tests/unit/test_server_*.py assert each):
- `PREFECT_SERVER_DATABASE_DRIVER=postgresql+asyncpg` and `_HOST`, `_PORT`, `_USER` (the server's
  role), `_NAME` as plain values; `PREFECT_SERVER_DATABASE_PASSWORD` only through `secrets`
  (`<server role secret ARN>:password::`). Only `prefect-migrate` also gets the master user and,
  through `secrets`, its password (`<RDS managed secret ARN>:password::`).
- Verified TLS to the database: Prefect's `..._SQLALCHEMY_CONNECT_ARGS_TLS_ENABLED`, `_CHECK_HOSTNAME`
  and `_CA_FILE` (a file on the /tmp volume), which each command writes from `DATABASE_CA_BUNDLE`,
  the stack region's RDS root CAs as text (components/server/database.py `rds_ca_bundle`): nothing is
  downloaded, and a database whose certificate they do not sign is refused.
- `PREFECT_SERVER_API_AUTH_STRING` through `secrets` (the stack's auth-string secret); the services
  process also gets `PREFECT_API_AUTH_STRING`, for its internal client.
- In `ha`, the Redis AUTH token only through `secrets` (`PREFECT_REDIS_MESSAGING_PASSWORD`).
  `PREFECT_SERVER_DOCKET_URL` must be a URL with the password inside, so it is never declared:
  the container's command composes it from the injected password at start (`DOCKET_URL_EXPORT`).
- `PREFECT_UI_API_URL=/api` (unset, the UI would call 127.0.0.1), an API keep-alive of 75 s above
  the ALB's 60 s idle timeout, and JSON logs into the stack's log group.
- CSRF protection on the API (`PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED`): every change needs a
  token the server issued to that client (`GET /api/csrf-token?client=<id>`).
- Liveness: a container health check on `/api/health`; readiness: the ALB's target group checks
  `/api/ready` (it checks the database). Both answer without credentials.

The image is `serverImage`, pinned to the worker's Prefect version. Every server container runs on
a read-only root filesystem: `PREFECT_HOME` (/var/lib/prefect, where Prefect copies its UI build)
and /tmp are task volumes. `ha` needs prefect-redis, which no official Prefect image ships; the
image entrypoint's `EXTRA_PIP_PACKAGES` would install into the read-only site-packages and
unverified, so the `ha` commands first pip-install requirements-server-ha.txt (prefect-redis and its
redis client, each wheel pinned by sha256, passed as text in `SERVER_REQUIREMENTS`) onto the
PREFECT_HOME volume with `--require-hashes --no-deps --only-binary :all:`, and put it on
PYTHONPATH. pip still downloads from the package index through the NAT (a few seconds per start):
the install is verified, not offline. If it cannot install (index unreachable, a hash that does
not match), the task stops within seconds with one ERROR line. A team that builds its own image
with prefect-redis sets `serverImage` to it; the install then finds the packages already there.

ECS Exec is on for the server (single) or API (ha) service only, with a task role that allows the
four `ssmmessages` actions, writing the cluster's exec log group and decrypting with the stack key
(the session's data channel), and nothing else; `make ui` opens a port forward through it
(`scripts/server_ui.py`). Everything else keeps exec off. Who may open a session, and what it
can read, is in docs/self-hosted-server.md ("ECS Exec").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.server import migrate as server_migrate
from components.server.migrate import MIGRATION_LOCK_WAIT_SECONDS
from components.server.migrate import CA_BUNDLE_ENV, CA_FILE_ENV, MASTER_PASSWORD_ENV, MASTER_USER_ENV
from components.config.reader import NAMESPACE
from components.platform.network import POSTGRESQL_PORT as DB_PORT, REDIS_PORT
from components.server.database import DATABASE_NAME, DRIVER, MASTER_USER, SERVER_USER
from components.server.database import password_value_from, rds_ca_bundle
from components.platform.aws import (ECS_TASKS, TASK_EXECUTION_POLICY, AwsContext, policy_document,
                                     service_trust_policy)
from components.config.server import ServerMode
from components.platform.fargate import (JSON_LOGGING_ENVIRONMENT, PREFECT_HOME, awslogs,
                                         fargate_service, fargate_task_definition,
                                         http_health_check, read_only_root)

SERVER_CONTAINER = "prefect-server"
API_CONTAINER = "prefect-api"
SERVICES_CONTAINER = "prefect-services"
MIGRATE_CONTAINER = "prefect-migrate"
# A migration of up to MIGRATION_BOUND_SECONDS finishes instead of looping the service:
# - it runs in prefect-migrate, so no health check runs meanwhile (the main container starts, and
#   its health check's start period begins, only on its SUCCESS);
# - prefect-migrate has no `startTimeout`: the ECS agent applies none to a SUCCESS dependency when
#   it is unset (aws/amazon-ecs-agent agent/engine/dependencygraph/graph.go,
#   hasDependencyTimedOut), and Fargate accepts at most 120 s;
# - a task queued on the lock waits MIGRATION_LOCK_WAIT_SECONDS, longer than the bound;
# - a load-balanced service ignores its health checks for that wait plus the start period.
HEALTH_CHECK_START_PERIOD_SECONDS = 180
HEALTH_CHECK_GRACE_SECONDS = MIGRATION_LOCK_WAIT_SECONDS + HEALTH_CHECK_START_PERIOD_SECONDS
# The ALB's idle timeout; Prefect's keep-alive must outlast it or the ALB reuses a connection the
# server just closed (intermittent 502s).
LB_IDLE_TIMEOUT_SECONDS = 60
KEEPALIVE_TIMEOUT_SECONDS = 75
# Reserved for the one-off migration; the main container gets the rest of the task's memory.
MIGRATE_MEMORY_RESERVATION = 256
STOP_TIMEOUT_SECONDS = 60

HEALTH_PATH = "/api/health"

MULTI_PROCESS_SETTINGS = (
    ("PREFECT_MESSAGING_BROKER", "prefect_redis.messaging"),
    ("PREFECT_MESSAGING_CACHE", "prefect_redis.messaging"),
    ("PREFECT_SERVER_EVENTS_CAUSAL_ORDERING", "prefect_redis.ordering"),
    ("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", "prefect_redis.lease_storage"),
    ("PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE", "prefect_redis.cleanup_queue"),
)

# Composes the docket URL from the secret-injected Redis password at start; the password is never
# part of the task definition. rediss:// when TLS is on (ElastiCache in transit encryption).
DOCKET_URL_EXPORT = (
    'scheme=redis; [ "$PREFECT_REDIS_MESSAGING_SSL" = "true" ] && scheme=rediss; '
    'export PREFECT_SERVER_DOCKET_URL="$scheme://:$PREFECT_REDIS_MESSAGING_PASSWORD@'
    '$PREFECT_REDIS_MESSAGING_HOST:$PREFECT_REDIS_MESSAGING_PORT/$PREFECT_REDIS_MESSAGING_DB"; '
)

# Where the CA bundle is written (the /tmp task volume); Prefect's TLS setting names it.
DATABASE_CA_FILE = "/tmp/database-ca.pem"
WRITE_DATABASE_CA = f'printf "%s\\n" "${CA_BUNDLE_ENV}" > "${CA_FILE_ENV}" && '

# ha: requirements-server-ha.txt, passed as text, installed onto the PREFECT_HOME volume before
# Prefect starts (the root filesystem is read-only); PYTHONPATH puts it ahead of the image's.
SERVER_REQUIREMENTS_FILE = next(p for p in Path(__file__).resolve().parents
                                if (p / "Pulumi.yaml").exists()) / "requirements-server-ha.txt"
REQUIREMENTS_ENV = "SERVER_REQUIREMENTS"
INSTALL_FAILED = json.dumps({
    "level": "ERROR", "name": "prefect.server_install",
    "message": "could not install the hash-pinned server packages (requirements-server-ha.txt); "
               "pip says why above. The task stops."})
EXTRA_PACKAGES_INSTALL = (
    f'printf "%s\\n" "${REQUIREMENTS_ENV}" > "$PREFECT_HOME/requirements.txt" && '
    'pip install --quiet --no-cache-dir --no-deps --require-hashes --only-binary :all: '
    '--retries 2 --timeout 15 --target "$PREFECT_HOME/python" '
    '--requirement "$PREFECT_HOME/requirements.txt" '
    f"|| {{ echo '{INSTALL_FAILED}'; exit 1; }}; "
    'export PYTHONPATH="$PREFECT_HOME/python"; '
)

# The prefect-migrate container's program (components/server/migrate.py), a module of its own
# (linted, type-checked, unit-tested), sent as text and run as `python -c`.
MIGRATE_PROGRAM = Path(server_migrate.__file__).read_text()


def server_requirements() -> str:
    """requirements-server-ha.txt as the containers get it."""
    return SERVER_REQUIREMENTS_FILE.read_text()


def retention_environment(events_days: int, flow_run_days: int) -> list[tuple[str, str]]:
    """Prefect 3.9.1's retention settings (prefect/settings/models/server/services.py and
    events.py) as ISO 8601 durations: the events period is a plain pydantic timedelta, which
    refuses a number of seconds in a string ("259200" stops the server at start), so both take
    `P<n>D`. Events older than `events_days` and, unless `flow_run_days` is 0, finished flow runs
    older than it with their task runs and logs are deleted by the DB vacuum service (it loops
    hourly)."""
    env = [("PREFECT_SERVER_EVENTS_RETENTION_PERIOD", f"P{events_days}D")]
    if flow_run_days:
        env += [("PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED", "events,flow_runs"),
                ("PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD", f"P{flow_run_days}D")]
    else:
        env.append(("PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED", "events"))
    return env


@dataclass(frozen=True)
class RedisEndpoint:
    host: pulumi.Input[str]
    token_secret_arn: pulumi.Input[str]


@dataclass(frozen=True)
class ServerArgs:
    mode: ServerMode
    prefix: str
    context: AwsContext
    cluster_arn: pulumi.Input[str]
    cluster_name: str
    log_group_name: str
    # Where the cluster logs ECS Exec sessions (components/worker/worker.py); the exec task role writes it.
    exec_log_group_name: str
    image: str
    cpu: int
    memory: int
    api_count: int
    cpu_architecture: str
    capacity_provider: str
    port: int
    vpc_id: pulumi.Input[str]
    namespace: str
    service_name: str
    subnet_ids: pulumi.Input[Sequence[str]]
    assign_public_ip: bool
    security_group_id: pulumi.Input[str]
    # Each may open the server's port (the worker, flow runs; the ALB adds its own rule).
    client_security_group_ids: Mapping[str, pulumi.Input[str]]
    db_host: pulumi.Input[str]
    # RDS's managed master secret: prefect-migrate only.
    db_secret_arn: pulumi.Input[str]
    # The server role's secret (components/server/database.py SERVER_USER): every server process.
    db_app_secret_arn: pulumi.Input[str]
    auth_secret_arn: pulumi.Input[str]
    redis: Optional[RedisEndpoint]
    # The ALB's target group (ha, or single with public access); None: no load balancer.
    target_group_arn: Optional[pulumi.Input[str]]
    # ECS Exec (make ui) on the server / API tasks: internal access only.
    exec_enabled: bool
    tags: Mapping[str, str]
    # The stack key: the auth string, the managed database secret and the Redis token are
    # encrypted with it; the key policy lets principals IAM grants decrypt them only through
    # Secrets Manager (components/server/composition.py), and the execution role is granted here.
    kms_key_arn: pulumi.Input[str]
    # What a load-balanced service needs first (the listeners that use its target group).
    # Retention, for the process that runs Prefect's services (DB vacuum): events, and finished
    # flow runs with their task runs and logs (0: kept forever).
    events_retention_days: int
    flow_run_retention_days: int
    # What a load-balanced service needs first (the listeners that use its target group).
    depends_on: Sequence[pulumi.Resource] = ()


class PrefectServer(pulumi.ComponentResource):
    execution_role: aws.iam.Role
    task_role: Optional[aws.iam.Role]
    namespace: aws.servicediscovery.PrivateDnsNamespace
    task_definitions: dict[str, aws.ecs.TaskDefinition]
    # "server" (single) or "api" and "services" (ha).
    services: dict[str, aws.ecs.Service]
    # The service ECS Exec and `make ui` reach, and its main container.
    exec_service: aws.ecs.Service
    exec_container: str

    def __init__(self, name: str, args: ServerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:PrefectServer", name, None, opts)
        self._name, self._args = name, args
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        ctx = args.context

        for role, group_id in args.client_security_group_ids.items():
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-from-{role}",
                security_group_id=args.security_group_id,
                referenced_security_group_id=group_id,
                ip_protocol="tcp", from_port=args.port, to_port=args.port,
                description=f"Prefect API from the {role}",
                tags=tags,
                opts=child,
            )

        secret_arns = [args.db_secret_arn, args.db_app_secret_arn, args.auth_secret_arn]
        if args.redis is not None:
            secret_arns.append(args.redis.token_secret_arn)
        self.execution_role = self._role("execution", "ECS starts the Prefect server with it")
        aws.iam.RolePolicyAttachment(
            f"{name}-execution-managed",
            role=self.execution_role.name,
            policy_arn=pulumi.Output.format("arn:{0}:iam::aws:{1}", ctx.partition,
                                            TASK_EXECUTION_POLICY),
            opts=pulumi.ResourceOptions(parent=self.execution_role),
        )
        aws.iam.RolePolicy(
            f"{name}-execution-secrets",
            role=self.execution_role.name,
            policy=policy_document([{
                "Sid": "ReadServerSecrets",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                # The RDS managed secret (prefect-migrate), the server role's, the auth string
                # and (ha) the Redis token: nothing else.
                "Resource": secret_arns,
            }, {
                "Sid": "DecryptServerSecretsViaSecretsManager",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": args.kms_key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": ctx.service_host("secretsmanager")}},
            }]),
            opts=pulumi.ResourceOptions(parent=self.execution_role),
        )
        # Prefect itself makes no AWS call: the tasks get a role only for ECS Exec (make ui).
        # The cluster logs every session to an encrypted group and encrypts its data channel
        # with the stack key (components/worker/worker.py); the agent in the task does both with this
        # role (Amazon ECS Developer Guide, "ECS Exec": IAM permissions for logging and KMS).
        self.task_role = None
        if args.exec_enabled:
            self.task_role = self._role("task", "ECS Exec into the Prefect server (make ui)")
            exec_logs = ctx.arn("logs", f"log-group:{args.exec_log_group_name}")
            aws.iam.RolePolicy(
                f"{name}-task-exec",
                role=self.task_role.name,
                policy=policy_document([{
                    "Sid": "EcsExecChannels",
                    "Effect": "Allow",
                    "Action": ["ssmmessages:CreateControlChannel",
                               "ssmmessages:CreateDataChannel",
                               "ssmmessages:OpenControlChannel",
                               "ssmmessages:OpenDataChannel"],
                    # AWS: ssmmessages actions support no resource-level permissions (the Service
                    # Authorization Reference lists no resource type), so "*" is the only value.
                    # The role belongs to the server tasks alone, so only they open channels.
                    "Resource": "*",
                }, {
                    "Sid": "LogExecSessions",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams",
                               "logs:PutLogEvents"],
                    # Stream names are the session ids, known only when a session opens.
                    "Resource": pulumi.Output.concat(exec_logs, ":*"),
                }, {
                    "Sid": "FindTheExecLogGroup",
                    "Effect": "Allow",
                    "Action": "logs:DescribeLogGroups",
                    # AWS: DescribeLogGroups lists groups and supports no resource-level
                    # permission (the ECS Developer Guide's ECS Exec policy uses "*" too).
                    "Resource": "*",
                }, {
                    "Sid": "DecryptExecSessions",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": args.kms_key_arn,
                }]),
                opts=pulumi.ResourceOptions(parent=self.task_role),
            )

        self.namespace = aws.servicediscovery.PrivateDnsNamespace(
            f"{name}-namespace",
            name=args.namespace,
            description=f"Prefect server of {args.prefix}",
            vpc=args.vpc_id,
            tags=tags,
            opts=child,
        )
        registry = aws.servicediscovery.Service(
            f"{name}-discovery",
            name=args.service_name,
            dns_config=aws.servicediscovery.ServiceDnsConfigArgs(
                namespace_id=self.namespace.id,
                dns_records=[aws.servicediscovery.ServiceDnsConfigDnsRecordArgs(type="A", ttl=10)],
                routing_policy="MULTIVALUE",
            ),
            tags=tags,
            opts=child,
        )

        self.task_definitions, self.services = {}, {}
        main_memory = args.memory - MIGRATE_MEMORY_RESERVATION
        if args.mode == "single":
            self._service("server", [self._main_container(SERVER_CONTAINER, main_memory),
                                     self._migrate_container()],
                          desired=1, registry=registry, exec_enabled=args.exec_enabled,
                          load_balanced_container=SERVER_CONTAINER)
            self.exec_service, self.exec_container = self.services["server"], SERVER_CONTAINER
        else:
            self._service("api", [self._main_container(API_CONTAINER, main_memory),
                                  self._migrate_container()],
                          desired=args.api_count, registry=registry,
                          exec_enabled=args.exec_enabled, load_balanced_container=API_CONTAINER)
            self._service("services", [self._main_container(SERVICES_CONTAINER, main_memory),
                                       self._migrate_container()],
                          desired=1, registry=None, exec_enabled=False,
                          load_balanced_container=None)
            self.exec_service, self.exec_container = self.services["api"], API_CONTAINER

        self.register_outputs({
            "service_names": {k: s.name for k, s in self.services.items()},
            "namespace_id": self.namespace.id,
        })

    # -- containers ----------------------------------------------------------------------------

    def _environment(self, role: str) -> list[dict[str, Any]]:
        args = self._args
        env: list[tuple[str, Any]] = [
            ("PREFECT_SERVER_DATABASE_DRIVER", DRIVER),
            ("PREFECT_SERVER_DATABASE_HOST", args.db_host),
            ("PREFECT_SERVER_DATABASE_PORT", str(DB_PORT)),
            ("PREFECT_SERVER_DATABASE_USER", SERVER_USER),
            ("PREFECT_SERVER_DATABASE_NAME", DATABASE_NAME),
            # prefect-migrate migrates, once per task, before the main container starts.
            ("PREFECT_SERVER_DATABASE_MIGRATE_ON_START", "false"),
            # Verified TLS: the chain up to the region's RDS root CAs, and the host name.
            ("PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS_ENABLED", "true"),
            ("PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS_CHECK_HOSTNAME", "true"),
            (CA_FILE_ENV, DATABASE_CA_FILE),
            (CA_BUNDLE_ENV, args.context.region.apply(rds_ca_bundle)),
            # The image's default (~/.prefect, where the UI build is copied) is on the read-only
            # root; this is a task volume.
            ("PREFECT_HOME", PREFECT_HOME),
            *JSON_LOGGING_ENVIRONMENT,
        ]
        if role in (SERVER_CONTAINER, API_CONTAINER):
            env += [
                ("PREFECT_SERVER_API_PORT", str(args.port)),
                ("PREFECT_UI_API_URL", "/api"),
                ("PREFECT_SERVER_API_KEEPALIVE_TIMEOUT", str(KEEPALIVE_TIMEOUT_SECONDS)),
                # Off by default in Prefect; with the UI reachable, a change (POST, PUT, PATCH,
                # DELETE) needs a token the API issued to that client. Prefect's client (worker,
                # flow runs, services) and the UI fetch one; so does the pool bootstrap.
                ("PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED", "true"),
            ]
        if role == SERVICES_CONTAINER:
            env.append(("PREFECT_UI_ENABLED", "false"))
        if role in (SERVER_CONTAINER, SERVICES_CONTAINER):
            env += retention_environment(args.events_retention_days,
                                         args.flow_run_retention_days)
        if args.redis is not None and role != MIGRATE_CONTAINER:
            env += [
                *MULTI_PROCESS_SETTINGS,
                ("PREFECT_REDIS_MESSAGING_HOST", args.redis.host),
                ("PREFECT_REDIS_MESSAGING_PORT", str(REDIS_PORT)),
                ("PREFECT_REDIS_MESSAGING_DB", "0"),
                ("PREFECT_REDIS_MESSAGING_SSL", "true"),
            ]
        if role == MIGRATE_CONTAINER:
            env.append((MASTER_USER_ENV, MASTER_USER))
        if args.mode == "ha" and role != MIGRATE_CONTAINER:
            env.append((REQUIREMENTS_ENV, server_requirements()))
        return [{"name": k, "value": v} for k, v in env]

    def _secrets(self, role: str) -> list[dict[str, Any]]:
        args = self._args
        secrets = [{"name": "PREFECT_SERVER_DATABASE_PASSWORD",
                    "valueFrom": password_value_from(args.db_app_secret_arn)}]
        if role == MIGRATE_CONTAINER:
            secrets.append({"name": MASTER_PASSWORD_ENV,
                            "valueFrom": password_value_from(args.db_secret_arn)})
        if role != MIGRATE_CONTAINER:
            secrets.append({"name": "PREFECT_SERVER_API_AUTH_STRING",
                            "valueFrom": args.auth_secret_arn})
        if role == SERVICES_CONTAINER:
            secrets.append({"name": "PREFECT_API_AUTH_STRING", "valueFrom": args.auth_secret_arn})
        if args.redis is not None and role != MIGRATE_CONTAINER:
            secrets.append({"name": "PREFECT_REDIS_MESSAGING_PASSWORD",
                            "valueFrom": args.redis.token_secret_arn})
        return secrets

    def _log_configuration(self, prefix: str) -> dict[str, Any]:
        return awslogs(self._args.log_group_name, self._args.context.region, prefix)

    def _main_container(self, role: str, memory: int) -> dict[str, Any]:
        command = {
            SERVER_CONTAINER: ["/bin/sh", "-c", WRITE_DATABASE_CA
                               + "exec prefect server start --host 0.0.0.0"],
            API_CONTAINER: ["/bin/sh", "-c", WRITE_DATABASE_CA + EXTRA_PACKAGES_INSTALL
                            + DOCKET_URL_EXPORT
                            + "exec prefect server start --host 0.0.0.0 --no-services"],
            SERVICES_CONTAINER: ["/bin/sh", "-c", WRITE_DATABASE_CA + EXTRA_PACKAGES_INSTALL
                                 + DOCKET_URL_EXPORT + "exec prefect server services start"],
        }[role]
        container: dict[str, Any] = {
            "name": role,
            "image": self._args.image,
            "essential": True,
            "command": command,
            "environment": self._environment(role),
            "secrets": self._secrets(role),
            "logConfiguration": self._log_configuration(role),
            # SIGTERM reaches Prefect (not the shell) and 60 s lets requests and services finish.
            "linuxParameters": {"initProcessEnabled": True},
            "stopTimeout": STOP_TIMEOUT_SECONDS,
            **read_only_root(),
        }
        if role == SERVICES_CONTAINER:
            container["memoryReservation"] = memory
        else:
            container["portMappings"] = [{"containerPort": self._args.port, "protocol": "tcp",
                                          "name": "prefect-api"}]
            # The prefect-redis install (ha) and the UI build at start.
            container["healthCheck"] = http_health_check(
                self._args.port, HEALTH_PATH, start_period=HEALTH_CHECK_START_PERIOD_SECONDS)
            container["memory" if role == SERVER_CONTAINER else "memoryReservation"] = memory
        container["dependsOn"] = [{"containerName": MIGRATE_CONTAINER, "condition": "SUCCESS"}]
        return container

    def _migrate_container(self) -> dict[str, Any]:
        return {
            "name": MIGRATE_CONTAINER,
            "image": self._args.image,
            "essential": False,
            "command": ["python", "-c", MIGRATE_PROGRAM],
            "memoryReservation": MIGRATE_MEMORY_RESERVATION,
            "environment": self._environment(MIGRATE_CONTAINER),
            "secrets": self._secrets(MIGRATE_CONTAINER),
            "logConfiguration": self._log_configuration(MIGRATE_CONTAINER),
            **read_only_root(),
        }

    # -- IAM and ECS ---------------------------------------------------------------------------

    def _role(self, role: str, description: str) -> aws.iam.Role:
        return aws.iam.Role(
            f"{self._name}-{role}",
            description=f"{NAMESPACE}: {description}",
            assume_role_policy=service_trust_policy(ECS_TASKS, self._args.context.account_id),
            tags=dict(self._args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _service(self, role: str, containers: Sequence[dict[str, Any]], *, desired: int,
                 registry: Optional[aws.servicediscovery.Service], exec_enabled: bool,
                 load_balanced_container: Optional[str]) -> None:
        args, name = self._args, self._name
        tags = dict(args.tags)
        family = f"{args.prefix}-server" + ("" if role == "server" else f"-{role}")
        # Read-only roots: PREFECT_HOME and /tmp are Fargate task volumes (no host path).
        task_definition = fargate_task_definition(
            f"{name}-{role}-task", family=family, cpu=args.cpu, memory=args.memory,
            cpu_architecture=args.cpu_architecture, execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn if exec_enabled and self.task_role else None,
            containers=pulumi.Output.json_dumps(list(containers)), tags=tags,
            opts=pulumi.ResourceOptions(parent=self))
        # One scheduler and one migrating process at a time: stop, then start (single, services).
        # The API tasks roll: half stay up while new ones start.
        rolling = role == "api"
        load_balanced = load_balanced_container is not None and args.target_group_arn is not None
        service = fargate_service(
            f"{name}-{role}-service",
            service_name=f"{args.prefix}-server" + ("" if role == "server" else f"-{role}"),
            cluster=args.cluster_arn,
            task_definition=task_definition.arn,
            desired_count=desired,
            capacity_provider=args.capacity_provider,
            subnets=args.subnet_ids,
            security_groups=[args.security_group_id],
            assign_public_ip=args.assign_public_ip,
            minimum_healthy_percent=50 if rolling else 0,
            maximum_percent=200 if rolling else 100,
            enable_execute_command=exec_enabled,
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(args.depends_on) if load_balanced else None),
            service_registries=aws.ecs.ServiceServiceRegistriesArgs(
                registry_arn=registry.arn) if registry is not None else None,
            load_balancers=[aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=args.target_group_arn,
                container_name=load_balanced_container or "",
                container_port=args.port,
            )] if load_balanced else None,
            # The ALB's first failures, while prefect-migrate runs or waits for another task's
            # migration, must not stop the task (MIGRATION_BOUND_SECONDS).
            health_check_grace_period_seconds=HEALTH_CHECK_GRACE_SECONDS if load_balanced
            else None,
        )
        self.task_definitions[role] = task_definition
        self.services[role] = service
