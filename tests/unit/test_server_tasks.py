"""The server's task definitions and services, as declared: the database reached with Prefect's split
settings (never SQLite), every secret through `secrets`, the single and ha process layouts, the
migration ordering, health checks, logs, ECS Exec on the server only, and the work pool upserted
from inside the VPC before the worker starts."""

from __future__ import annotations

import json
import re
from functools import cache

import pytest

from components.server.database import DRIVER
from components.prefect.pool_bootstrap import CONTAINER_NAME as BOOTSTRAP, decode_template
from components.server.server import (
    API_CONTAINER, KEEPALIVE_TIMEOUT_SECONDS, LB_IDLE_TIMEOUT_SECONDS, MIGRATE_CONTAINER,
    MULTI_PROCESS_SETTINGS, SERVER_CONTAINER, SERVICES_CONTAINER,
)
from components.server.server import REQUIREMENTS_ENV, server_requirements
from components.config.server import PREFECT_VERSION
from tests.support.harness import (
    WORK_POOL, WORKER_TASK, Evaluation, evaluate, pool_template, project_defaults,
    server_stack_names, stack_settings, worker_container,
)
from tests.support.server_evaluations import (
    SERVICE, TASK_DEFINITION, all_containers, containers, environment, secrets, server_config,
)
from tools.mock_engine import GENERATED_PASSWORD

SERVER_PROCESSES = (SERVER_CONTAINER, API_CONTAINER, SERVICES_CONTAINER, MIGRATE_CONTAINER)
# Anything that names a credential must never be a plain environment variable.
SECRET_NAME = re.compile(r"PASSWORD|AUTH_STRING|TOKEN|API_KEY|SECRET|DOCKET_URL")
TASK_DEFINITION_LIMIT = 64 * 1024


@cache
def ha_internal() -> Evaluation:
    return evaluate(server_config("selfhosted-prod", serverAccess="internal",
                                  serverDomainName="", serverHostedZoneId="",
                                  serverAllowedCidrs="[]"))


def server_containers(evaluation: Evaluation) -> dict[str, dict]:
    return {key: c for key, c in all_containers(evaluation).items()
            if c["name"] in SERVER_PROCESSES}


def service(evaluation: Evaluation, role: str):
    return evaluation.one(SERVICE, f"server-{role}-service").inputs


@pytest.mark.parametrize("stack", server_stack_names())
def test_every_server_process_uses_postgresql_through_the_split_settings(evaluated, stack):
    """Without the driver Prefect silently ignores the rest and uses SQLite in the container."""
    evaluation = evaluated(stack)
    found = server_containers(evaluation)
    assert {c["name"] for c in found.values()} >= (
        {SERVER_CONTAINER, MIGRATE_CONTAINER} if "dev" in stack
        else {API_CONTAINER, SERVICES_CONTAINER, MIGRATE_CONTAINER})
    app_secret = evaluation.exports["serverDbAppSecretArn"]
    for key, container in found.items():
        env = environment(container)
        assert env["PREFECT_SERVER_DATABASE_DRIVER"] == DRIVER == "postgresql+asyncpg", key
        assert env["PREFECT_SERVER_DATABASE_HOST"] == evaluation.exports["serverDbEndpoint"]
        assert (env["PREFECT_SERVER_DATABASE_PORT"], env["PREFECT_SERVER_DATABASE_USER"],
                env["PREFECT_SERVER_DATABASE_NAME"]) == ("5432", "prefect_server", "prefect")
        assert "PREFECT_API_DATABASE_CONNECTION_URL" not in env
        assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in env
        assert secrets(container)["PREFECT_SERVER_DATABASE_PASSWORD"] == f"{app_secret}:password::"


@pytest.mark.parametrize("stack", server_stack_names())
def test_no_secret_in_any_environment_and_none_in_the_definitions(evaluated, stack):
    evaluation = evaluated(stack)
    for key, container in all_containers(evaluation).items():
        assert not [name for name in environment(container) if SECRET_NAME.search(name)], key
    tasks = evaluation.of_type(TASK_DEFINITION)
    assert tasks
    for task in tasks:
        assert GENERATED_PASSWORD[:16] not in task.inputs["containerDefinitions"]
        assert isinstance(task.inputs["containerDefinitions"], str)  # never a secret Output


@pytest.mark.parametrize("stack", server_stack_names())
def test_server_and_worker_share_the_auth_string_only_through_secrets(evaluated, stack):
    evaluation = evaluated(stack)
    auth = evaluation.exports["credentialSecretArn"]
    for key, container in server_containers(evaluation).items():
        if container["name"] != MIGRATE_CONTAINER:
            assert secrets(container)["PREFECT_SERVER_API_AUTH_STRING"] == auth, key
    worker = worker_container(evaluation)
    assert secrets(worker) == {"PREFECT_API_AUTH_STRING": auth}
    assert environment(worker)["PREFECT_API_URL"] == evaluation.exports["serverApiUrl"]


def test_single_runs_one_server_process_after_its_migration(evaluated):
    evaluation = evaluated("selfhosted-dev")
    found = containers(evaluation, "server-server-task")
    assert sorted(c["name"] for c in found.values()) == [MIGRATE_CONTAINER, SERVER_CONTAINER]
    container = found[SERVER_CONTAINER]
    assert container["essential"] is True and found[MIGRATE_CONTAINER]["essential"] is False
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert container["command"][2].endswith("exec prefect server start --host 0.0.0.0")
    assert container["dependsOn"] == [{"containerName": MIGRATE_CONTAINER, "condition": "SUCCESS"}]
    env = environment(container)
    assert env["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"
    memory = int(evaluation.one(TASK_DEFINITION, "server-server-task").inputs["memory"])
    assert container["memory"] + found[MIGRATE_CONTAINER]["memoryReservation"] == memory
    assert "PREFECT_MESSAGING_BROKER" not in env  # one process: the in-memory broker is right
    svc = service(evaluation, "server")
    # Stop before start: two schedulers never overlap, two processes never migrate at once.
    assert (svc["desiredCount"], svc["deploymentMinimumHealthyPercent"],
            svc["deploymentMaximumPercent"]) == (1, 0, 100)


@pytest.mark.parametrize("stack", server_stack_names())
def test_ui_keepalive_health_and_logs_of_each_api_process(evaluated, stack):
    evaluation = evaluated(stack)
    log_group = evaluation.exports["logGroupName"]
    for _key, container in server_containers(evaluation).items():
        assert container["logConfiguration"]["options"]["awslogs-group"] == log_group
        env = environment(container)
        assert env["PREFECT_LOGGING_HANDLERS_CONSOLE_FORMATTER"] == "json"
        if container["name"] not in (SERVER_CONTAINER, API_CONTAINER):
            continue
        assert env["PREFECT_UI_API_URL"] == "/api"
        assert int(env["PREFECT_SERVER_API_KEEPALIVE_TIMEOUT"]) == KEEPALIVE_TIMEOUT_SECONDS
        assert KEEPALIVE_TIMEOUT_SECONDS > LB_IDLE_TIMEOUT_SECONDS
        assert "/api/health" in container["healthCheck"]["command"][1]
        assert container["portMappings"][0]["containerPort"] == 4200
    lbs = evaluation.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert bool(lbs) == stack_settings(stack).server.load_balanced
    for lb in lbs:
        assert lb.inputs["idleTimeout"] == LB_IDLE_TIMEOUT_SECONDS


@pytest.mark.parametrize("stack", server_stack_names())
def test_server_image_runs_the_workers_prefect_version(evaluated, stack):
    # prefect-aws 0.7.12 images ship prefect 3.9.1.
    assert project_defaults()["workerImage"].startswith("prefecthq/prefect-aws:0.7.12")
    for container in server_containers(evaluated(stack)).values():
        assert container["image"] == f"prefecthq/prefect:{PREFECT_VERSION}-python3.12"


def test_ha_splits_api_and_services_with_redis_for_every_multi_process_setting(evaluated):
    evaluation = evaluated("selfhosted-prod")
    api = containers(evaluation, "server-api-task")[API_CONTAINER]
    services = containers(evaluation, "server-services-task")[SERVICES_CONTAINER]
    assert api["command"][-1].endswith("exec prefect server start --host 0.0.0.0 --no-services")
    assert services["command"][-1].endswith("exec prefect server services start")
    redis_secret = evaluation.one("aws:secretsmanager/secret:Secret", "server-redis-token")
    for container in (api, services):
        env = environment(container)
        assert env["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"
        assert dict(MULTI_PROCESS_SETTINGS).items() <= env.items()
        assert {k for k, v in env.items() if v.startswith("prefect_redis.")} == {
            "PREFECT_MESSAGING_BROKER", "PREFECT_MESSAGING_CACHE",
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING", "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE",
            "PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE"}
        assert env["PREFECT_REDIS_MESSAGING_SSL"] == "true"
        assert env["PREFECT_REDIS_MESSAGING_HOST"].startswith("master.")
        assert env[REQUIREMENTS_ENV] == server_requirements()
        assert "EXTRA_PIP_PACKAGES" not in env  # the entrypoint would write to the read-only root
        assert secrets(container)["PREFECT_REDIS_MESSAGING_PASSWORD"] == redis_secret.outputs["arn"]
        # The docket URL carries the password: composed at start, never declared.
        assert "PREFECT_SERVER_DOCKET_URL" not in env
        assert 'export PREFECT_SERVER_DOCKET_URL="$scheme://:$PREFECT_REDIS_MESSAGING_PASSWORD@' \
            in container["command"][2]
    assert secrets(services)["PREFECT_API_AUTH_STRING"] == evaluation.exports["credentialSecretArn"]
    assert environment(services)["PREFECT_UI_ENABLED"] == "false"


def test_ha_api_tasks_roll_across_azs_and_the_services_task_is_one(evaluated):
    evaluation = evaluated("selfhosted-prod")
    api, services = service(evaluation, "api"), service(evaluation, "services")
    assert api["desiredCount"] == 2 and len(api["networkConfiguration"]["subnets"]) == 3
    assert (api["deploymentMinimumHealthyPercent"], api["deploymentMaximumPercent"]) == (50, 200)
    assert (services["desiredCount"], services["deploymentMinimumHealthyPercent"],
            services["deploymentMaximumPercent"]) == (1, 0, 100)
    assert api["loadBalancers"][0]["containerName"] == API_CONTAINER
    assert "loadBalancers" not in services or not services["loadBalancers"]


@pytest.mark.parametrize("task", ["server-api-task", "server-services-task"])
def test_ha_processes_start_only_after_the_serialized_migration_succeeded(evaluated, task):
    found = containers(evaluated("selfhosted-prod"), task)
    migrate = found[MIGRATE_CONTAINER]
    main = [c for c in found.values() if c["name"] != MIGRATE_CONTAINER]
    (main,) = main
    assert main["dependsOn"] == [{"containerName": MIGRATE_CONTAINER, "condition": "SUCCESS"}]
    assert migrate["essential"] is False and main["essential"] is True
    script = migrate["command"][2]
    assert migrate["command"][:2] == ["python", "-c"]
    # The lock is polled, never waited for inside a statement (that wait holds a snapshot the
    # upgrade's CREATE INDEX CONCURRENTLY waits for: a deadlock, tests/integration/
    # test_server_ha_on_postgres.py).
    assert "pg_try_advisory_lock" in script and "SELECT pg_advisory_lock" not in script
    assert '"prefect", "server", "database", "upgrade", "-y"' in script
    compile(script, "prefect-migrate", "exec")
    memory = int(evaluated("selfhosted-prod").one(TASK_DEFINITION, task).inputs["memory"])
    assert migrate["memoryReservation"] + main["memoryReservation"] == memory


def test_exec_is_on_for_the_server_service_only_and_only_when_internal(evaluated):
    dev = evaluated("selfhosted-dev")
    assert dev.exports["serverExecEnabled"] is True
    assert {s.name: s.inputs["enableExecuteCommand"] for s in dev.of_type(SERVICE)} == {
        "worker-service": False, "server-server-service": True}
    internal = ha_internal()
    assert {s.name: s.inputs["enableExecuteCommand"] for s in internal.of_type(SERVICE)} == {
        "worker-service": False, "server-api-service": True, "server-services-service": False}
    public = evaluated("selfhosted-prod")
    assert not any(s.inputs["enableExecuteCommand"] for s in public.of_type(SERVICE))
    assert not public.of_type("aws:iam/role:Role") or "server-task" not in {
        r.name for r in public.of_type("aws:iam/role:Role")}


@pytest.mark.parametrize("stack", server_stack_names())
def test_worker_reaches_the_server_by_cloud_map_name(evaluated, stack):
    evaluation = evaluated(stack)
    namespace = evaluation.one(
        "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace").inputs
    registry = evaluation.one("aws:servicediscovery/service:Service").inputs
    assert evaluation.exports["serverApiUrl"] == (
        f"http://{registry['name']}.{namespace['name']}:4200/api")
    assert namespace["vpc"] == evaluation.exports["vpcId"]
    assert registry["dnsConfig"]["dnsRecords"] == [{"type": "A", "ttl": 10}]
    registered = [s.name for s in evaluation.of_type(SERVICE) if s.inputs.get("serviceRegistries")]
    assert registered == (["server-server-service"] if "dev" in stack else ["server-api-service"])


# The work pool, from inside the VPC.

@pytest.mark.parametrize("stack", server_stack_names())
def test_pool_is_upserted_by_the_worker_task_before_the_worker_starts(evaluated, stack):
    evaluation = evaluated(stack)
    assert not evaluation.of_type(WORK_POOL)  # pulumi up never calls the server
    found = containers(evaluation, WORKER_TASK)
    bootstrap, worker = found[BOOTSTRAP], found["prefect-worker"]
    assert worker["dependsOn"] == [{"containerName": BOOTSTRAP, "condition": "SUCCESS"}]
    assert bootstrap["essential"] is False and bootstrap["image"] == worker["image"]
    env = environment(bootstrap)
    assert env["PREFECT_API_URL"] == evaluation.exports["serverApiUrl"]
    assert env["PREFECT_WORK_POOL_NAME"] == evaluation.exports["workPoolName"]
    assert secrets(bootstrap) == secrets(worker)
    compile(bootstrap["command"][2], BOOTSTRAP, "exec")
    memory = int(evaluation.one(TASK_DEFINITION, WORKER_TASK).inputs["memory"])
    assert bootstrap["memoryReservation"] + worker["memoryReservation"] == memory
    assert "memory" not in worker


@pytest.mark.parametrize("stack", server_stack_names())
def test_the_upserted_template_is_the_one_template_with_the_stacks_defaults(evaluated, stack):
    evaluation = evaluated(stack)
    template = pool_template(evaluation)
    defaults = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    variables = evaluation.exports["workPoolJobVariables"]
    assert {k: defaults[k] for k in variables} == variables


@pytest.mark.parametrize("stack", server_stack_names())
def test_task_definitions_stay_far_below_the_ecs_size_limit(evaluated, stack):
    tasks = evaluated(stack).of_type(TASK_DEFINITION)
    assert tasks
    for task in tasks:
        size = len(task.inputs["containerDefinitions"].encode())
        assert size < TASK_DEFINITION_LIMIT / 2, (task.name, size)


def test_template_encoding_round_trips_and_is_stable():
    from components.prefect.pool_bootstrap import encode_template

    template = {"job_configuration": {"a": 1}, "variables": {"properties": {}}}
    assert decode_template(encode_template(template)) == template
    assert encode_template(template) == encode_template(json.loads(json.dumps(template)))


@pytest.mark.parametrize("stack", server_stack_names())
def test_every_server_container_runs_read_only_writing_only_to_its_task_volumes(evaluated, stack):
    evaluation = evaluated(stack)
    definitions = evaluation.of_type(TASK_DEFINITION)
    assert definitions
    for definition in definitions:
        volumes = {v["name"] for v in definition.inputs["volumes"]}
        for container in json.loads(definition.inputs["containerDefinitions"]):
            assert container["readonlyRootFilesystem"] is True, container["name"]
            mounts = {m["containerPath"]: m["sourceVolume"] for m in container["mountPoints"]}
            assert set(mounts) == {"/var/lib/prefect", "/tmp"} and set(mounts.values()) <= volumes
            assert environment(container)["PREFECT_HOME"] == "/var/lib/prefect"
    for name in ("server-api-task", "server-services-task") if stack == "selfhosted-prod" else ():
        for container in containers(evaluation, name).values():
            if container["name"] != MIGRATE_CONTAINER:
                # prefect-redis goes onto the PREFECT_HOME volume, not the read-only site-packages.
                assert '--target "$PREFECT_HOME/python"' in container["command"][2]
                assert 'PYTHONPATH="$PREFECT_HOME/python"' in container["command"][2]


@pytest.mark.parametrize("stack", server_stack_names())
def test_only_the_migration_holds_the_master_password(evaluated, stack):
    evaluation = evaluated(stack)
    master = f"{evaluation.exports['serverDbSecretArn']}:password::"
    holders = {key: c for key, c in all_containers(evaluation).items()
               if master in secrets(c).values()}
    assert holders and {c["name"] for c in holders.values()} == {MIGRATE_CONTAINER}
    for container in holders.values():
        assert secrets(container)["DATABASE_MASTER_PASSWORD"] == master
        assert environment(container)["DATABASE_MASTER_USER"] == "prefect"
        assert "PREFECT_SERVER_API_AUTH_STRING" not in secrets(container)
