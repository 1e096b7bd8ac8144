"""Upgrades and growth, as declared: a migration as long as the stated bound finishes instead of
looping the service through restarts, and the retention keys reach the process that runs
Prefect's DB vacuum in the format Prefect 3.9.1 reads.

Why each limit matters for a long migration (components/server/server.py and
migrate.py, MIGRATION_BOUND_SECONDS):
- the main container starts only on prefect-migrate's SUCCESS, so its health check (and its
  start period) begins after the migration, however long it takes;
- the ECS agent gives up on a SUCCESS dependency only when the dependency declares a
  `startTimeout` (unset: never), and Fargate would accept at most 120 s;
- a task waiting for another task's migration (the advisory lock) waits longer than the bound;
- a load-balanced service ignores its health checks for longer than that wait plus the start
  period, so ECS does not stop a task whose migration is still running;
- the deployment circuit breaker counts tasks that fail to start; none fails within the bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.upgrade import RESULT
from components.server import migrate
from components.server.migrate import MIGRATION_BOUND_SECONDS, MIGRATION_LOCK_WAIT_SECONDS
from components.server.server import (
    HEALTH_CHECK_GRACE_SECONDS, MIGRATE_CONTAINER, SERVER_CONTAINER, SERVICES_CONTAINER,
)
from tests.support.harness import evaluate, project_defaults, server_stack_names
from tests.support.server_evaluations import (
    SERVICE, TASK_DEFINITION, containers, environment, server_config,
)

# The stated bound is this many times the longest migration measured (bench/results/upgrade.json)
# at least: the measured database is small next to a team's after years.
BOUND_OVER_MEASURED = 10
RETENTION = ("PREFECT_SERVER_EVENTS_RETENTION_PERIOD", "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED",
             "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD")


def server_services(evaluation) -> list:
    """The server's ECS services (server, or api and services), each with its task's name."""
    names = {f"server-{role}-service" for role in ("server", "api", "services")}
    found = [s for s in evaluation.of_type(SERVICE) if s.name in names]
    assert found, "a server stack declares server services"
    return found


def task_name(service) -> str:
    return service.name.removesuffix("-service") + "-task"


def server_tasks(evaluation) -> list[tuple[str, dict[str, dict]]]:
    found = [(task.name, containers(evaluation, task.name))
             for task in evaluation.of_type(TASK_DEFINITION)
             if task.name in {task_name(s)
                              for s in server_services(evaluation)}]
    assert found, "a server stack declares server tasks"
    return found


@pytest.mark.parametrize("stack", server_stack_names())
def test_every_server_task_migrates_first_with_no_dependency_timeout(evaluated, stack):
    for task, found in server_tasks(evaluated(stack)):
        migrate = found.pop(MIGRATE_CONTAINER)
        (main,) = found.values()
        assert main["dependsOn"] == [{"containerName": MIGRATE_CONTAINER,
                                      "condition": "SUCCESS"}], task
        # Unset: the agent never gives up on the migration (a Fargate value is at most 120 s).
        assert "startTimeout" not in migrate, task
        assert environment(main)["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false", task


def test_the_declared_lock_wait_and_grace_outlast_the_migration_bound(evaluated):
    # The declared command runs migrate.py's own text, so its lock wait is this constant.
    for stack in server_stack_names():
        for _task, found in server_tasks(evaluated(stack)):
            command = found[MIGRATE_CONTAINER]["command"]
            assert command[:2] == ["python", "-c"]
            assert command[2] == Path(migrate.__file__).read_text()
    assert MIGRATION_LOCK_WAIT_SECONDS > MIGRATION_BOUND_SECONDS
    assert HEALTH_CHECK_GRACE_SECONDS > MIGRATION_LOCK_WAIT_SECONDS


@pytest.mark.parametrize("stack", server_stack_names())
def test_a_load_balanced_service_ignores_health_checks_past_the_bound(evaluated, stack):
    evaluation = evaluated(stack)
    services = server_services(evaluation)
    balanced = [s for s in services if s.inputs.get("loadBalancers")]
    for service in services:
        breaker = service.inputs["deploymentCircuitBreaker"]
        assert breaker == {"enable": True, "rollback": True}, service.name
    for service in balanced:
        task = evaluation.one(TASK_DEFINITION, task_name(service))
        (main,) = [c for c in json.loads(task.inputs["containerDefinitions"])
                   if c["name"] != MIGRATE_CONTAINER]
        grace = service.inputs["healthCheckGracePeriodSeconds"]
        assert grace >= MIGRATION_LOCK_WAIT_SECONDS + main["healthCheck"]["startPeriod"]
        assert grace > MIGRATION_BOUND_SECONDS


def test_the_stated_bound_is_far_above_every_measured_migration():
    recorded = json.loads(RESULT.read_text())
    measured = [d["migration_s"] for d in recorded["databases"]]
    assert measured and max(d["events"] for d in recorded["databases"]) >= 100_000
    assert BOUND_OVER_MEASURED * max(measured) <= MIGRATION_BOUND_SECONDS, measured


def test_a_long_migration_does_not_restart_the_service(evaluated):
    """ECS's rules for one task, replayed over a migration exactly as long as the bound: what
    stops a task first (a dependency timeout, a lock wait, the ALB or container health check) must
    come after the migration ends."""
    for stack in server_stack_names():
        evaluation = evaluated(stack)
        for service in server_services(evaluation):
            task = evaluation.one(TASK_DEFINITION, task_name(service))
            found = {c["name"]: c for c in json.loads(task.inputs["containerDefinitions"])}
            migrate = found.pop(MIGRATE_CONTAINER)
            (main,) = found.values()
            migration_ends = MIGRATION_BOUND_SECONDS
            stops_at = [
                # The agent's dependency timeout, counted from prefect-migrate's start.
                migrate.get("startTimeout") or float("inf"),
                # A second task's migration gives up waiting for the lock.
                MIGRATION_LOCK_WAIT_SECONDS,
            ]
            if service.inputs.get("loadBalancers"):
                # Health checks count only after the grace, from the task's start.
                stops_at.append(service.inputs["healthCheckGracePeriodSeconds"])
            # The container health check runs only once the main container started, after the
            # migration; its failures count after the start period.
            health = main.get("healthCheck")
            if health:
                stops_at.append(migration_ends + health["startPeriod"]
                                + health["interval"] * health["retries"])
            assert min(stops_at) > migration_ends, (stack, service.name, stops_at)


def test_retention_reaches_only_the_process_that_runs_the_services(evaluated):
    for stack in server_stack_names():
        for _task, found in server_tasks(evaluated(stack)):
            for name, container in found.items():
                env = environment(container)
                runs_services = name in (SERVER_CONTAINER, SERVICES_CONTAINER)
                assert all((key in env) == runs_services for key in RETENTION), (stack, name)


SETTINGS = """
import json
from prefect.settings import Settings
s = Settings().server
print(json.dumps([s.events.retention_period.total_seconds(),
                  sorted(s.services.db_vacuum.enabled_vacuum_types),
                  s.services.db_vacuum.retention_period.total_seconds()]))
"""


@pytest.mark.slow  # a Prefect process reads the settings: 1 s to import Prefect
@pytest.mark.parametrize("events,runs,vacuumed", [
    ("2", "45", ["events", "flow_runs", "orphans"]),
    ("10", "0", ["events"]),
])
def test_prefect_reads_the_declared_retention_as_the_configured_days(events, runs, vacuumed):
    evaluation = evaluate(server_config(serverEventsRetentionDays=events,
                                        serverFlowRunRetentionDays=runs))
    server = containers(evaluation, "server-server-task")[SERVER_CONTAINER]
    env = {k: v for k, v in environment(server).items() if k in RETENTION}
    result = subprocess.run([sys.executable, "-c", SETTINGS], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"),
                                 **env}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    events_s, types, runs_s = json.loads(result.stdout.splitlines()[-1])
    assert events_s == int(events) * 86400 and types == vacuumed
    if int(runs):
        assert runs_s == int(runs) * 86400
    else:  # the flow_runs vacuum is off; Prefect's own default period is then unused
        assert "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD" not in env


def test_storage_autoscales_to_the_configured_ceiling(evaluated):
    defaults = project_defaults()
    for stack in server_stack_names():
        (db,) = evaluated(stack).of_type("aws:rds/instance:Instance")
        assert db.inputs["maxAllocatedStorage"] > db.inputs["allocatedStorage"]
    dev = evaluated("selfhosted-dev").of_type("aws:rds/instance:Instance")[0]
    assert dev.inputs["maxAllocatedStorage"] == defaults["serverDbMaxAllocatedStorageGb"]
