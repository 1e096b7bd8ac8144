"""The policy pack's rule for the server: a Prefect server container without the database driver
(which would silently run on SQLite inside the container) is a violation at preview."""

from __future__ import annotations

import json

import pytest

# The pack's module as Pulumi loads it, flat from policies/ (pytest's pythonpath has it).
import worker_rules as rules
from tests.support.harness import server_stack_names
from tests.support.server_evaluations import TASK_DEFINITION


def without_driver(props: dict, container_name: str) -> dict:
    containers = json.loads(props["containerDefinitions"])
    for container in containers:
        if container["name"] == container_name:
            container["environment"] = [e for e in container["environment"]
                                        if e["name"] != "PREFECT_SERVER_DATABASE_DRIVER"]
    return {**props, "containerDefinitions": json.dumps(containers)}


@pytest.mark.parametrize("task,container", [
    ("server-api-task", "prefect-api"),
    ("server-api-task", "prefect-migrate"),
    ("server-services-task", "prefect-services"),
])
def test_a_server_process_without_the_driver_is_a_violation(evaluated, task, container):
    props = evaluated("selfhosted-prod").one(TASK_DEFINITION, task).inputs
    assert rules.prefect_server_never_on_sqlite(TASK_DEFINITION, props) == []
    (message,) = rules.prefect_server_never_on_sqlite(TASK_DEFINITION,
                                                       without_driver(props, container))
    assert container in message and "SQLite" in message


def test_the_single_server_without_the_driver_is_a_violation(evaluated):
    props = evaluated("selfhosted-dev").one(TASK_DEFINITION, "server-server-task").inputs
    assert rules.prefect_server_never_on_sqlite(
        TASK_DEFINITION, without_driver(props, "prefect-server"))


@pytest.mark.parametrize("stack", server_stack_names())
def test_the_worker_task_is_not_a_server(evaluated, stack):
    props = evaluated(stack).one(TASK_DEFINITION, "worker-task").inputs
    assert rules.prefect_server_never_on_sqlite(TASK_DEFINITION, props) == []
    assert not any(rules.PREFECT_SERVER_COMMAND.search(" ".join(c["command"]))
                   for c in json.loads(props["containerDefinitions"]))
