"""Rung 3: the worker container, exactly as the dev stack declares it, against a real Prefect server.

The stack is replayed into moto first (rung 2), so the secret the container reads and the network
and roles a flow run lands in exist, with moto's ids. The worker runs as a child process with the
container's command and environment; moto runs no containers, so what is checked is what reached
the AWS API.
"""

from __future__ import annotations

import time

import pytest

from tests.harness import evaluate_stack
from tests.prefect_worker import (
    create_ecs_pool, deploy_and_run, health_status, wait_for_log, wait_online, worker_container,
    worker_launch,
)
from tests.replay import real_exports, replay
from tests.servers import PrefectServer, free_port, stop

pytestmark = pytest.mark.slow

POOL = "ecs-rung3"
ONLINE_WITHIN_S = 60  # measured ~2 s warm, ~9 s on a loaded 2-core CI box
RUN_TASK_WITHIN_S = 45  # one poll (2 s) plus the worker's submission
SIGTERM_EXIT_WITHIN_S = 15  # ECS waits stopTimeout (60 s) before SIGKILL
POLL_SECONDS = "2"


@pytest.fixture(scope="module")
def deployed(moto_server):
    """The dev stack (its own pool name on the shared server) replayed into a fresh moto."""
    moto_server.reset()
    evaluation = evaluate_stack("dev", workPoolName=POOL)
    replayed = replay(evaluation, moto_server.url)
    return evaluation, replayed, real_exports(evaluation, replayed)


@pytest.fixture(scope="module")
def worker(deployed, prefect_server, moto_server, tmp_path_factory):
    evaluation, replayed, _ = deployed
    # The pool as prefect-aws's template makes it, so a worker started with
    # --no-create-pool-if-not-found would find it too.
    create_ecs_pool(prefect_server.api_url, POOL)
    home = tmp_path_factory.mktemp("worker-home")
    launch = worker_launch(evaluation, replayed, api_url=prefect_server.api_url, home=home,
                           aws_env=moto_server.client_env(),
                           extra_env={"PREFECT_WORKER_QUERY_SECONDS": POLL_SECONDS})
    log_path = home / "worker.log"
    started = time.monotonic()
    process = launch.start(log_path)
    yield launch, process, log_path, started
    stop(process)


def test_worker_runs_the_declared_command_with_the_credential_from_secrets(deployed, worker):
    evaluation, replayed, exports = deployed
    launch, *_ = worker
    container = worker_container(evaluation, replayed)
    assert launch.command == container["command"]
    assert launch.command[:3] == ["prefect", "worker", "start"] and "--with-healthcheck" in launch.command
    assert "PREFECT_API_KEY" not in launch.declared_env
    assert launch.secret_names == ["PREFECT_API_KEY"]
    # Resolved from moto's Secrets Manager by the declared ARN, as ECS does at task start.
    assert launch.env["PREFECT_API_KEY"].startswith("pnu_")
    for name, value in launch.declared_env.items():
        if name not in ("PREFECT_API_URL", "PREFECT_WORKER_WEBSERVER_PORT"):
            assert launch.env[name] == value


def test_worker_goes_online_in_the_pool_and_answers_health(worker, prefect_server):
    launch, process, log_path, started = worker
    online = wait_online(prefect_server.api_url, POOL, ONLINE_WITHIN_S, process)
    assert online["name"].startswith("ECSWorker")
    assert time.monotonic() - started < ONLINE_WITHIN_S
    assert health_status(launch.health_port) == 200
    assert f"Worker '{online['name']}' started!" in wait_for_log(log_path, "started!", 10)


def test_a_flow_run_lands_in_the_stack_cluster_network_and_roles(deployed, worker, prefect_server):
    _, replayed, exports = deployed
    _, process, log_path, _ = worker
    wait_online(prefect_server.api_url, POOL, ONLINE_WITHIN_S, process)
    job_variables = exports["workPoolJobVariables"]
    deploy_and_run(prefect_server.api_url, POOL, job_variables)

    ecs = replayed.client("ecs")
    deadline = time.monotonic() + RUN_TASK_WITHIN_S
    task_arns: list[str] = []
    while not task_arns and time.monotonic() < deadline:
        task_arns = ecs.list_tasks(cluster=exports["clusterArn"])["taskArns"]
        time.sleep(0.3)
    assert task_arns, f"no RunTask in {exports['clusterArn']}; worker log:\n{log_path.read_text()[-3000:]}"

    (task,) = ecs.describe_tasks(cluster=exports["clusterArn"], tasks=task_arns)["tasks"]
    assert task["clusterArn"] == exports["clusterArn"]
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert details["subnetId"] in exports["workerSubnetIds"]
    (eni,) = replayed.client("ec2").describe_network_interfaces(
        NetworkInterfaceIds=[details["networkInterfaceId"]])["NetworkInterfaces"]
    assert [g["GroupId"] for g in eni["Groups"]] == [exports["flowRunSecurityGroupId"]]
    assert task["overrides"]["taskRoleArn"] == exports["flowRunTaskRoleArn"]

    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    assert definition["executionRoleArn"] == exports["flowRunExecutionRoleArn"]
    (container,) = definition["containerDefinitions"]
    # The flow run reads the key from the stack's secret; the worker strips it from the env.
    assert container["secrets"] == [{"name": "PREFECT_API_KEY",
                                     "valueFrom": exports["credentialSecretArn"]}]
    (override,) = task["overrides"]["containerOverrides"]
    environment = {e["name"]: e["value"] for e in override.get("environment", [])}
    assert "PREFECT__FLOW_RUN_ID" in environment and "PREFECT_API_KEY" not in environment


def test_worker_exits_cleanly_on_sigterm(worker):
    _, process, log_path, _ = worker
    assert process.poll() is None, "worker died before SIGTERM"
    started = time.monotonic()
    code = stop(process, timeout=SIGTERM_EXIT_WITHIN_S)
    assert code == 0, log_path.read_text()[-2000:]
    assert time.monotonic() - started < SIGTERM_EXIT_WITHIN_S
    assert "stopped!" in log_path.read_text()


# --- what a user sees when the credential or the URL is wrong ----------------------------------

@pytest.fixture(scope="module")
def server_with_auth(tmp_path_factory):
    """A Prefect server that, like Prefect Cloud, refuses requests without the right credential."""
    server = PrefectServer(tmp_path_factory.mktemp("auth-server"), extra_env={
        "PREFECT_SERVER_API_AUTH_STRING": "admin:the-right-one"})
    yield server
    server.stop()


@pytest.fixture
def run_worker_against(deployed, moto_server, tmp_path):
    started = []

    def start(api_url: str):
        evaluation, replayed, _ = deployed
        launch = worker_launch(evaluation, replayed, api_url=api_url, home=tmp_path,
                               aws_env=moto_server.client_env(),
                               extra_env={"PREFECT_WORKER_QUERY_SECONDS": POLL_SECONDS})
        log_path = tmp_path / "worker.log"
        process = launch.start(log_path)
        started.append(process)
        return launch, process, log_path

    yield start
    for process in started:
        stop(process)


def test_wrong_api_key_exits_with_401_in_the_log_and_no_health(run_worker_against, server_with_auth):
    launch, process, log_path = run_worker_against(server_with_auth.api_url)
    process.wait(timeout=60)
    log = log_path.read_text()
    assert process.returncode == 1
    assert "401 Unauthorized" in log and "/work_pools/" in log
    assert health_status(launch.health_port) is None
    assert "pnu_" not in log  # the key itself never reaches the log


def test_unreachable_api_keeps_health_green_and_logs_the_retry(run_worker_against):
    unreachable = f"http://127.0.0.1:{free_port()}/api"
    launch, process, log_path = run_worker_against(unreachable)
    deadline = time.monotonic() + 60
    while "Unable to reach the Prefect API" not in log_path.read_text() and time.monotonic() < deadline:
        assert process.poll() is None
        time.sleep(0.5)
    assert "Unable to reach the Prefect API while starting up" in log_path.read_text()
    deadline = time.monotonic() + 30
    while health_status(launch.health_port) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    # /health answers 200: ECS's health check does not catch this; `make verify` does (no worker
    # ONLINE), and the log line above says why.
    assert health_status(launch.health_port) == 200
    assert process.poll() is None
