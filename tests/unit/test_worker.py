"""The worker service: the API key reaches the container only through `secrets`; the image is
pinned; the command, health check and logs are what the Prefect ECS worker needs; deployments roll
back on failure; nobody can exec into it; capacity, insights and retention follow the stack."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
from pathlib import Path

import botocore.session
import botocore.validate
import pytest

from components.prefect.stuck_run_automation import SUBMISSION_LIMIT, WORKER_RETRY_ENVIRONMENT
from components.platform.fargate import http_health_check
from components.worker.worker import HEALTH_PATH, HEALTH_PORT
from tests.support.harness import (
    CLOUD_URL, TEST_API_KEY, evaluate, project_defaults, is_secret_input, load_stack_config,
    stack_file_values, runs_server, stack_names, with_credentials, worker_container,
)
from tests.support.loopback_http import serving

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
CLUSTER = "aws:ecs/cluster:Cluster"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
CREDENTIAL_VARIABLES = {"PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"}


def environment(container) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["environment"]}


# The credential

@pytest.mark.parametrize("stack", stack_names())
def test_api_key_reaches_the_container_only_through_secrets(evaluated, stack):
    evaluation = evaluated(stack)
    container = worker_container(evaluation)
    # A stack with its own server authenticates with the basic-auth string, never a key.
    name = "PREFECT_API_AUTH_STRING" if runs_server(stack) else "PREFECT_API_KEY"
    assert container["secrets"] == [
        {"name": name, "valueFrom": evaluation.exports["credentialSecretArn"]}]
    assert not CREDENTIAL_VARIABLES & set(environment(container))
    assert TEST_API_KEY not in json.dumps(container)


@pytest.mark.parametrize("stack", stack_names())
def test_container_definitions_never_received_the_key(evaluated, stack):
    """A secret Output that flowed into the JSON would make the whole input a secret."""
    definitions = evaluated(stack).one(TASK_DEFINITION, "worker-task").inputs["containerDefinitions"]
    assert isinstance(definitions, str) and not is_secret_input(definitions)
    assert TEST_API_KEY not in definitions


def test_task_definition_is_a_valid_register_task_definition_request(evaluated):
    """botocore's own model of the ECS API accepts every field name and type we declare."""
    inputs = evaluated("prod").one(TASK_DEFINITION, "worker-task").inputs
    request = {key: inputs[key] for key in (
        "family", "taskRoleArn", "executionRoleArn", "networkMode", "requiresCompatibilities",
        "cpu", "memory", "runtimePlatform")}
    request["containerDefinitions"] = json.loads(inputs["containerDefinitions"])
    request["tags"] = [{"key": k, "value": v} for k, v in inputs["tags"].items()]
    shape = botocore.session.get_session().get_service_model("ecs").operation_model(
        "RegisterTaskDefinition").input_shape
    report = botocore.validate.ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()


# The container

def test_default_image_is_a_pinned_prefect_aws_release(evaluated):
    image = worker_container(evaluated("dev"))["image"]
    assert image == project_defaults()["workerImage"]
    repository, tag = image.split(":")
    assert repository == "prefecthq/prefect-aws" and "latest" not in tag
    assert tag.split("-")[0].count(".") == 2  # <prefect-aws version>-python<py>


@pytest.mark.parametrize("stack", stack_names())
def test_worker_command_polls_the_stacks_pool_as_an_ecs_worker_with_health_check(evaluated, stack):
    command = worker_container(evaluated(stack))["command"]
    assert command == ["prefect", "worker", "start", "--pool", stack_file_values(stack)["workPoolName"],
                       "--type", "ecs", "--with-healthcheck", "--no-create-pool-if-not-found",
                       "--limit", str(SUBMISSION_LIMIT)]


def test_worker_command_polls_each_configured_work_queue():
    config = with_credentials(load_stack_config("staging"), workQueues='["etl", "reports"]')
    command = worker_container(evaluate(config))["command"]
    assert command[-4:] == ["--work-queue", "etl", "--work-queue", "reports"]
    assert command[:9] == ["prefect", "worker", "start", "--pool", "ecs-staging", "--type", "ecs",
                           "--with-healthcheck", "--no-create-pool-if-not-found"]
    assert command[9:11] == ["--limit", str(SUBMISSION_LIMIT)]


def test_worker_environment_names_the_api_region_health_port_events_queue_and_json_logs(evaluated):
    assert environment(worker_container(evaluated("dev"))) == {
        "PREFECT_API_URL": CLOUD_URL,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PREFECT_WORKER_WEBSERVER_PORT": str(HEALTH_PORT),
        "PREFECT_HOME": "/var/lib/prefect",
        "PREFECT_INTEGRATIONS_AWS_ECS_OBSERVER_SQS_QUEUE_NAME": "prefect-ecs-worker-dev-ecs-events",
        "PREFECT_INTEGRATIONS_AWS_ECS_OBSERVER_SQS_QUEUE_REGION": "us-east-1",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_FORMATTER": "json",
        "PREFECT_LOGGING_HANDLERS_DEBUG_FORMATTER": "json",
        "PREFECT_LOGGING_COLORS": "false",
        **dict(WORKER_RETRY_ENVIRONMENT),
    }


def test_health_check_probes_the_workers_own_endpoint_with_no_port_published(evaluated):
    container = worker_container(evaluated("dev"))
    check = container["healthCheck"]
    assert check["command"][0] == "CMD-SHELL"
    assert f"http://localhost:{HEALTH_PORT}/health" in check["command"][1]
    # ECS bounds: interval 5-300, timeout 2-120, retries 1-10, startPeriod 0-300.
    assert 5 <= check["interval"] <= 300 and 2 <= check["timeout"] < check["interval"]
    assert 1 <= check["retries"] <= 10 and 0 <= check["startPeriod"] <= 300
    assert "portMappings" not in container


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def _run_health_check(port: int) -> int:
    command = http_health_check(port, HEALTH_PATH, start_period=60)["command"][1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True,
                          timeout=30).returncode


def test_health_check_command_passes_only_while_the_worker_answers_200():
    with serving(_Health) as url:
        port = int(url.rsplit(":", 1)[1])
        _Health.status = 200
        assert _run_health_check(port) == 0
        _Health.status = 503  # the worker stopped polling
        assert _run_health_check(port) != 0
    assert _run_health_check(port) != 0  # nothing listening


@pytest.mark.parametrize("stack", stack_names())
def test_worker_logs_to_the_stacks_group_with_the_stacks_retention(evaluated, stack):
    evaluation = evaluated(stack)
    log_group = evaluation.one(LOG_GROUP, "worker-logs").inputs
    assert log_group["retentionInDays"] == stack_file_values(stack)["logRetentionDays"]
    assert log_group["name"] == evaluation.exports["logGroupName"] == f"/ecs/prefect-ecs-worker-{stack}"
    assert worker_container(evaluation)["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {"awslogs-group": log_group["name"], "awslogs-region": "us-east-1",
                    "awslogs-stream-prefix": "worker"},
    }


def test_dev_keeps_logs_a_week_and_prod_a_year(evaluated):
    assert evaluated("dev").one(LOG_GROUP, "worker-logs").inputs["retentionInDays"] == 7
    assert evaluated("prod").one(LOG_GROUP, "worker-logs").inputs["retentionInDays"] == 365


# The task definition and service

@pytest.mark.parametrize("stack", stack_names())
def test_task_is_a_fargate_awsvpc_task_of_the_stacks_size_and_architecture(evaluated, stack):
    evaluation = evaluated(stack)
    values = stack_file_values(stack)
    task = evaluation.one(TASK_DEFINITION, "worker-task").inputs
    assert task["networkMode"] == "awsvpc" and task["requiresCompatibilities"] == ["FARGATE"]
    assert (task["cpu"], task["memory"]) == (str(values["workerCpu"]), str(values["workerMemory"]))
    assert task["runtimePlatform"] == {"operatingSystemFamily": "LINUX",
                                       "cpuArchitecture": values["cpuArchitecture"]}
    assert task["executionRoleArn"] == evaluation.exports["executionRoleArn"]
    assert task["taskRoleArn"] == evaluation.exports["workerTaskRoleArn"]


@pytest.mark.parametrize("stack", stack_names())
def test_failed_deployments_roll_back_and_nobody_can_exec_in(evaluated, stack):
    service = evaluated(stack).one(SERVICE, "worker-service").inputs
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["enableExecuteCommand"] is False
    # The new worker is up before the old one stops, so polling never pauses.
    assert service["deploymentMinimumHealthyPercent"] == 100
    assert service["deploymentMaximumPercent"] == 200
    assert service["waitForSteadyState"] is True


@pytest.mark.parametrize("stack", stack_names())
def test_service_runs_the_stacks_count_on_the_stacks_capacity_provider(evaluated, stack):
    evaluation = evaluated(stack)
    values = stack_file_values(stack)
    service = evaluation.one(SERVICE, "worker-service").inputs
    assert service["desiredCount"] == values["workerCount"]
    assert service["capacityProviderStrategies"] == [
        {"capacityProvider": values["capacityProvider"], "weight": 1, "base": 0}]
    assert "launchType" not in service
    assert service["taskDefinition"] == evaluation.exports["taskDefinitionArn"]
    assert service["cluster"] == evaluation.exports["clusterArn"]
    providers = evaluation.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders").inputs
    assert values["capacityProvider"] in providers["capacityProviders"]


def test_dev_is_one_spot_x86_task_and_prod_two_on_demand_tasks(evaluated):
    dev, prod = (evaluated(s) for s in ("dev", "prod"))
    assert worker_container(dev) and dev.one(SERVICE, "worker-service").inputs["desiredCount"] == 1
    assert dev.one(SERVICE, "worker-service").inputs["capacityProviderStrategies"][0]["capacityProvider"] == \
        "FARGATE_SPOT"
    assert dev.one(TASK_DEFINITION, "worker-task").inputs["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    assert prod.one(SERVICE, "worker-service").inputs["desiredCount"] == 2
    assert prod.one(SERVICE, "worker-service").inputs["capacityProviderStrategies"][0]["capacityProvider"] == "FARGATE"


def test_cluster_has_container_insights(evaluated):
    cluster = evaluated("staging").one(CLUSTER).inputs
    assert cluster["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    assert cluster["name"] == "prefect-ecs-worker-staging"
