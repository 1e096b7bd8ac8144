"""Rung 3: the worker container, exactly as the dev stack declares it, on a real Prefect server and
the stack-owned work pool, down to a flow run's ECS task and its crash.

The stack is replayed into moto first (rung 2), so the secret the container reads, and the
network, roles, cluster and events queue a flow run uses, exist with moto's ids. The worker runs
as a child process with the container's command, environment and secrets. It starts before its
pool exists, as a worker of a stack with `manageWorkPool: false` may before the pool's owner
creates it: it must wait and create nothing. Then the pool is created through the stack's own
provider with the declared template, as `pulumi up` does, and the worker picks it up. Moto runs no
containers, so what is checked is what reached the AWS API.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error

import pytest

from components.platform.fargate import JSON_LOGGING_ENVIRONMENT
from tests.support.harness import TEST_API_KEY, WORK_POOL, evaluate_stack
from testbed.prefect_worker import (
    CLI_LINES, api, deploy, deploy_and_run, health_status, json_log, wait_for, wait_for_log,
    wait_online, worker_container, worker_launch,
)
from testbed.servers import BIN, free_port, stop

pytestmark = pytest.mark.slow

POOL = "ecs-rung3"
ONLINE_WITHIN_S = 60  # measured ~2 s warm, ~9 s on a loaded 2-core CI box
RUN_TASK_WITHIN_S = 90  # one poll (2 s) plus the worker's submission; botocore retries if refused
SIGTERM_EXIT_WITHIN_S = 15  # ECS waits stopTimeout (60 s) before SIGKILL
# Test speed only: the worker polls for runs, and re-reads a missing pool, every 2 s.
FAST_WORKER = {"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_HEARTBEAT_SECONDS": "2"}


@pytest.fixture(scope="module")
def deployed(moto_server, prefect_server):
    """The dev stack (its own pool name on the shared server) in moto; its pool not yet created."""
    evaluation = evaluate_stack("dev", workPoolName=POOL)
    stack = deploy(evaluation, moto_server, prefect_api_url=None)
    yield stack
    stack.replayed.delete_work_pools()


@pytest.fixture(scope="module")
def worker(deployed, prefect_server, moto_server, tmp_path_factory):
    home = tmp_path_factory.mktemp("worker-home")
    launch = worker_launch(deployed.evaluation, deployed.replayed, api_url=prefect_server.api_url,
                           home=home, aws_env=moto_server.client_env(), extra_env=FAST_WORKER)
    log_path = home / "worker.log"
    moto_server.start_recording()
    process = launch.start(log_path)
    yield launch, process, log_path
    stop(process)
    moto_server.stop_recording()


@pytest.fixture(scope="module")
def pool(deployed, worker, prefect_server):
    """The stack's pool, created through its provider once the worker is waiting for it."""
    _, process, log_path = worker
    wait_for_log(log_path, f"Work pool {POOL!r} not found!", ONLINE_WITHIN_S)
    deployed.replayed.prefect_api_url = prefect_server.api_url
    deployed.replayed.replay_one(deployed.evaluation.one(WORK_POOL))
    return deployed.replayed.created[(WORK_POOL, "work-pool")]


def test_worker_runs_the_declared_command_with_the_credential_from_secrets(deployed, worker):
    launch, *_ = worker
    container = worker_container(deployed.evaluation, deployed.replayed)
    assert launch.command == container["command"]
    assert launch.command[:3] == ["prefect", "worker", "start"] and "--with-healthcheck" in launch.command
    assert "PREFECT_API_KEY" not in launch.declared_env
    assert launch.secret_names == ["PREFECT_API_KEY"]
    # Resolved from moto's Secrets Manager by the declared ARN, as ECS does at task start.
    assert launch.env["PREFECT_API_KEY"] == TEST_API_KEY
    for name, value in launch.declared_env.items():
        # PREFECT_HOME is the task volume's path; here a temp dir stands in for the volume.
        if name not in ("PREFECT_API_URL", "PREFECT_WORKER_WEBSERVER_PORT", "PREFECT_HOME"):
            assert launch.env[name] == value


def test_worker_waits_for_a_missing_pool_and_never_creates_it(worker, prefect_server):
    _, process, log_path = worker
    wait_for_log(log_path, f"Work pool {POOL!r} not found!", ONLINE_WITHIN_S)
    time.sleep(3)  # a few more polls
    with pytest.raises(urllib.error.HTTPError) as missing:
        api(prefect_server.api_url, "GET", f"/work_pools/{POOL}")
    assert missing.value.code == 404
    assert process.poll() is None, "the worker keeps running and polling"


def test_worker_goes_online_in_the_stack_owned_pool_and_answers_health(
        deployed, worker, pool, prefect_server):
    launch, process, log_path = worker
    created = time.monotonic()
    online = wait_online(prefect_server.api_url, POOL, ONLINE_WITHIN_S, process)
    assert online["name"].startswith("ECSWorker")
    assert time.monotonic() - created < ONLINE_WITHIN_S
    assert health_status(launch.health_port) == 200
    assert f"Worker '{online['name']}' started!" in wait_for_log(log_path, "started!", 10)

    live = deployed.pool(prefect_server.api_url)
    assert live["id"] == pool["id"], "the pool the worker polls is the one the provider created"
    defaults = {name: spec.get("default")
                for name, spec in live["base_job_template"]["variables"]["properties"].items()}
    for name, value in deployed.exports["workPoolJobVariables"].items():
        assert defaults[name] == value, name


@pytest.fixture(scope="module")
def launched(deployed, worker, pool, prefect_server, moto_server):
    """Two runs: one of a deployment that sets no job variables (the pool's defaults), one of a
    deployment that passes the stack's exported `workPoolJobVariables`."""
    _, process, log_path = worker
    api_url = prefect_server.api_url
    wait_online(api_url, POOL, ONLINE_WITHIN_S, process)
    runs = {"defaults": deploy_and_run(api_url, POOL, name="defaults"),
            "exported": deploy_and_run(api_url, POOL, deployed.exports["workPoolJobVariables"],
                                       name="exported")}
    ecs = deployed.replayed.client("ecs")
    cluster = deployed.exports["clusterArn"]

    def both_tasks():
        arns = ecs.list_tasks(cluster=cluster)["taskArns"]
        return arns if len(arns) == len(runs) else None

    task_arns = wait_for("a task for each run in the stack's cluster", both_tasks,
                         RUN_TASK_WITHIN_S, log_path)
    tasks = ecs.describe_tasks(cluster=cluster, tasks=task_arns, include=["TAGS"])["tasks"]
    by_run = {}
    for task in tasks:
        run_id = {t["key"]: t["value"] for t in task["tags"]}["prefect.io/flow-run-id"]
        by_run[next(k for k, v in runs.items() if v == run_id)] = task
    return {"runs": runs, "tasks": by_run,
            "run_task": moto_server.recorded("RunTask"),
            "task_definitions": moto_server.recorded("RegisterTaskDefinition")}


def test_flow_runs_land_in_the_stacks_cluster_network_and_roles_with_or_without_job_variables(
        deployed, launched):
    exports = deployed.exports
    assert len(launched["run_task"]) == 2
    for request in launched["run_task"]:
        assert request["cluster"] == exports["clusterArn"]
        assert request["networkConfiguration"]["awsvpcConfiguration"] == {
            "subnets": exports["workerSubnetIds"],
            "securityGroups": [exports["flowRunSecurityGroupId"]],
            "assignPublicIp": "ENABLED" if exports["workerAssignsPublicIp"] else "DISABLED",
        }
        assert request["overrides"]["taskRoleArn"] == exports["flowRunTaskRoleArn"]
        assert request["capacityProviderStrategy"] == [
            {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}]
        assert "launchType" not in request
        (override,) = request["overrides"]["containerOverrides"]
        environment = {e["name"] for e in override["environment"]}
        # The flow run reads the key from the stack's secret; the worker strips it from the env.
        assert "PREFECT__FLOW_RUN_ID" in environment and "PREFECT_API_KEY" not in environment

    assert launched["task_definitions"]
    for definition in launched["task_definitions"]:
        assert definition["executionRoleArn"] == exports["flowRunExecutionRoleArn"]
        (container,) = definition["containerDefinitions"]
        assert container["secrets"] == [{"name": "PREFECT_API_KEY",
                                         "valueFrom": exports["credentialSecretArn"]}]
        assert container["logConfiguration"]["options"]["awslogs-group"] == exports["logGroupName"]
        assert container["image"] == "prefecthq/prefect:3.9.1-python3.12"
        assert (definition["cpu"], definition["memory"]) == ("512", "1024")

    ec2 = deployed.replayed.client("ec2")
    for task in launched["tasks"].values():
        assert task["clusterArn"] == exports["clusterArn"]
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        assert details["subnetId"] in exports["workerSubnetIds"]
        (eni,) = ec2.describe_network_interfaces(
            NetworkInterfaceIds=[details["networkInterfaceId"]])["NetworkInterfaces"]
        assert [g["GroupId"] for g in eni["Groups"]] == [exports["flowRunSecurityGroupId"]]


def test_a_task_that_stops_with_a_non_zero_exit_code_marks_its_run_crashed(
        deployed, worker, launched, prefect_server):
    _, _, log_path = worker
    task = launched["tasks"]["defaults"]
    # The container exits 1: ECS emits a STOPPED task event, which the declared rule routes to
    # the declared queue, which the worker's observer reads.
    detail = {
        "clusterArn": task["clusterArn"], "taskArn": task["taskArn"],
        "taskDefinitionArn": task["taskDefinitionArn"],
        "lastStatus": "STOPPED", "desiredStatus": "STOPPED", "stopCode": "EssentialContainerExited",
        "containers": [{"name": "prefect", "exitCode": 1, "lastStatus": "STOPPED"}],
    }
    deployed.replayed.client("events").put_events(Entries=[{
        "Source": "aws.ecs", "DetailType": "ECS Task State Change", "Detail": json.dumps(detail)}])

    run_id = launched["runs"]["defaults"]

    def crashed():
        state = api(prefect_server.api_url, "GET", f"/flow_runs/{run_id}")["state"]
        return state if state["type"] == "CRASHED" else None

    state = wait_for("the run turning Crashed", crashed, 60, log_path)
    assert "non-zero exit code" in state["message"]
    other = api(prefect_server.api_url, "GET", f"/flow_runs/{launched['runs']['exported']}")
    assert other["state"]["type"] != "CRASHED", "only the stopped task's run"


def flow_run_environment(deployed, run_task: dict) -> dict[str, str]:
    """What the flow-run container starts with: its task definition's environment, then the
    RunTask override's on top, as ECS merges them."""
    definition = deployed.replayed.client("ecs").describe_task_definition(
        taskDefinition=run_task["taskDefinition"])["taskDefinition"]
    (container,) = definition["containerDefinitions"]
    (override,) = run_task["overrides"]["containerOverrides"]
    return {e["name"]: e["value"]
            for e in [*container.get("environment", []), *override.get("environment", [])]}


def test_flow_run_tasks_get_the_json_logging_settings(deployed, launched):
    for request in launched["run_task"]:
        environment = flow_run_environment(deployed, request)
        # The worker passes its own PREFECT_LOGGING_COLORS on as the setting prints it ("False").
        assert {k: environment.get(k, "").lower() for k, _ in JSON_LOGGING_ENVIRONMENT} == dict(
            JSON_LOGGING_ENVIRONMENT)


def test_a_flow_run_in_the_environment_its_task_gets_logs_json(deployed, launched, tmp_path):
    """The flow-run container's environment, as the worker set it up through ECS, runs a flow
    whose every line is JSON. The launched run's own id is left out: this runs a flow of its own."""
    env = {name: value for name, value in
           flow_run_environment(deployed, launched["run_task"][0]).items()
           if name != "PREFECT__FLOW_RUN_ID"}
    env.update({"PREFECT_HOME": str(tmp_path), "HOME": str(tmp_path),
                "PATH": f"{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"})
    program = ("from prefect import flow, get_run_logger\n"
               "@flow(name='json-logs-flow')\n"
               "def hello():\n"
               "    get_run_logger().info('hello from the flow')\n"
               "hello()\n")
    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    records, others = json_log(result.stdout + result.stderr)
    assert others == []
    hello = [r for r in records if r.get("msg") == "hello from the flow"]
    assert hello and hello[0]["name"] == "prefect.flow_runs" and hello[0]["flow_run_id"]
    assert any("Finished in state Completed" in r.get("msg", "") for r in records)


def test_a_refused_submission_is_one_json_record_with_its_traceback(worker, launched,
                                                                     prefect_server):
    _, _, log_path = worker
    run_id = deploy_and_run(prefect_server.api_url, POOL, {"cluster": "no-such-cluster"},
                            name="refused")

    def errors_about_the_run():
        records, _ = json_log(log_path.read_text(errors="replace"))
        return [r for r in records if r.get("flow_run_id") == run_id and r["levelno"] >= 40]

    errors = wait_for("the refused submission in the log", errors_about_the_run,
                      RUN_TASK_WITHIN_S, log_path)
    (failure,) = [r for r in errors if r.get("exc_info")]
    assert "cluster 'no-such-cluster' not found" in failure["exc_info"]["message"]
    # The traceback is a field of the same object, not lines of its own.
    assert "ecs_worker.py" in failure["exc_info"]["traceback"]


def test_worker_exits_cleanly_on_sigterm(worker):
    _, process, log_path = worker
    assert process.poll() is None, "worker died before SIGTERM"
    started = time.monotonic()
    code = stop(process, timeout=SIGTERM_EXIT_WITHIN_S)
    assert code == 0, log_path.read_text()[-2000:]
    assert time.monotonic() - started < SIGTERM_EXIT_WITHIN_S
    assert "stopped!" in log_path.read_text()



def test_every_worker_line_but_the_cli_banners_is_one_json_object(worker, launched):
    """The whole log, from start to SIGTERM (run after the SIGTERM test; stopping is idempotent)."""
    _, process, log_path = worker
    stop(process)
    records, others = json_log(log_path.read_text())
    assert [line for line in others if not line.startswith(CLI_LINES)] == []
    assert all({"name", "levelname", "msg", "created"} <= r.keys() for r in records)
    # The fields the README's Logs Insights queries use.
    submitting = {r["flow_run_id"]: r for r in records if "submitting flow run" in r["msg"]}
    assert set(launched["runs"].values()) <= set(submitting)
    assert all(r["worker_name"] and r["levelno"] == 20 for r in submitting.values())


# --- what a user sees when the credential or the URL is wrong ----------------------------------

@pytest.fixture
def run_worker_against(deployed, moto_server, tmp_path):
    started = []

    def start(api_url: str):
        launch = worker_launch(deployed.evaluation, deployed.replayed, api_url=api_url,
                               home=tmp_path, aws_env=moto_server.client_env(),
                               extra_env=FAST_WORKER)
        log_path = tmp_path / "worker.log"
        process = launch.start(log_path)
        started.append(process)
        return launch, process, log_path

    yield start
    for process in started:
        stop(process)


def test_wrong_api_key_exits_with_401_in_the_log_and_no_health(
        run_worker_against, prefect_server_with_auth):
    launch, process, log_path = run_worker_against(prefect_server_with_auth.api_url)
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
