"""`scripts/verify.py` against a deployment in moto with the real worker on a real Prefect server.

The dev stack is replayed into moto and its work pool created on the Prefect server; the service's
tasks are started with the service's own
network configuration (moto has no scheduler); the worker container runs as declared against the
Prefect server, and its real output is written to the stack's log group the way the awslogs driver
would (stream `worker/prefect-worker/<task id>`). Each failing case breaks one thing and expects
exactly that check to fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.harness import ROOT, TEST_API_KEY, evaluate_stack
from testbed.prefect_worker import deploy, wait_for_log, wait_online, worker_launch
from testbed.replay import start_service_tasks
from testbed.servers import stop

pytestmark = pytest.mark.slow

POOL = "ecs-verify"
SERVICE = "aws:ecs/service:Service"
VERIFY = ROOT / "scripts" / "verify.py"
CHECKS = 9


@pytest.fixture(scope="module")
def live(moto_server, prefect_server, tmp_path_factory):
    evaluation = evaluate_stack("dev", workPoolName=POOL)
    # The stack's pool too, created through its provider, as `pulumi up` does.
    stack = deploy(evaluation, moto_server, prefect_server.api_url)
    moto_server.hold_tasks()
    replayed, exports = stack.replayed, stack.exports
    service = replayed.created[(SERVICE, evaluation.one(SERVICE).name)]
    tasks = start_service_tasks(replayed, service)

    home = tmp_path_factory.mktemp("verify-worker")
    launch = worker_launch(evaluation, replayed, api_url=prefect_server.api_url, home=home,
                           aws_env=moto_server.client_env())
    log_path = home / "worker.log"
    process = launch.start(log_path)
    wait_online(prefect_server.api_url, POOL, 60, process)
    wait_for_log(log_path, "started!", 10)
    ship_worker_log(replayed, exports["logGroupName"], tasks[0]["taskArn"], log_path)

    outputs = home / "outputs.json"
    outputs.write_text(json.dumps(exports))
    yield {"replayed": replayed, "exports": exports, "service": service, "outputs": outputs,
           "prefect": prefect_server, "moto": moto_server}
    stop(process)
    replayed.delete_work_pools()


def ship_worker_log(replayed, group: str, task_arn: str, log_path: Path) -> str:
    stream = f"worker/prefect-worker/{task_arn.rsplit('/', 1)[1]}"
    logs = replayed.client("logs")
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    logs.put_log_events(logGroupName=group, logStreamName=stream,
                        logEvents=[{"timestamp": now, "message": line} for line in lines])
    return stream


def run_verify(live, *, prefect: bool = True) -> tuple[int, dict[str, str], str]:
    env = {**os.environ, **live["moto"].client_env()}
    env.pop("PREFECT_API_URL", None)
    args = [sys.executable, str(VERIFY), "--outputs", str(live["outputs"])]
    if prefect:
        args += ["--prefect-api-url", live["prefect"].api_url]
        env["PREFECT_API_KEY"] = TEST_API_KEY
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    lines = {}
    for line in done.stdout.splitlines():
        if line[:2] in ("✓ ", "✗ ", "- "):
            name = line[2:].split(":", 1)[0]
            lines[name] = line
    return done.returncode, lines, done.stdout + done.stderr


def test_verify_passes_every_check_on_a_healthy_deployment(live):
    code, lines, output = run_verify(live)
    assert code == 0, output
    assert len(lines) == CHECKS and all(line.startswith("✓") for line in lines.values()), output
    assert "ECSWorker" in lines["worker ONLINE in Prefect"]
    assert "started!" in lines["worker start line in the logs"]
    assert TEST_API_KEY not in output


def test_verify_without_a_prefect_url_skips_only_that_check(live):
    code, lines, output = run_verify(live, prefect=False)
    assert code == 0, output
    assert lines["worker ONLINE in Prefect"].startswith("- ")
    assert sum(line.startswith("✓") for line in lines.values()) == CHECKS - 1


def test_verify_fails_when_the_key_is_in_plain_environment(live):
    replayed, service = live["replayed"], live["service"]
    ecs = replayed.client("ecs")
    current = ecs.describe_task_definition(taskDefinition=service["request"]["taskDefinition"])[
        "taskDefinition"]
    (container,) = current["containerDefinitions"]
    container["environment"].append({"name": "PREFECT_API_KEY", "value": TEST_API_KEY})
    container.pop("secrets")
    leaked = ecs.register_task_definition(
        family=current["family"], containerDefinitions=[container], cpu=current["cpu"],
        memory=current["memory"], networkMode=current["networkMode"],
        requiresCompatibilities=current["requiresCompatibilities"],
        executionRoleArn=current["executionRoleArn"], taskRoleArn=current["taskRoleArn"],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster=service["cluster"], service=service["name"], taskDefinition=leaked)
    try:
        code, lines, output = run_verify(live, prefect=False)
    finally:
        ecs.update_service(cluster=service["cluster"], service=service["name"],
                           taskDefinition=service["request"]["taskDefinition"])
    assert code == 1
    failed = lines["credential from secrets, not environment"]
    assert failed.startswith("✗") and "['PREFECT_API_KEY'] in plain environment" in failed
    assert lines["service runs the stack's task definition"].startswith("✗")
    assert TEST_API_KEY not in output


def test_verify_fails_without_the_worker_start_line(live):
    logs = live["replayed"].client("logs")
    group = live["exports"]["logGroupName"]
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    saved = {s["logStreamName"]: logs.get_log_events(logGroupName=group,
                                                     logStreamName=s["logStreamName"])["events"]
             for s in streams}
    for name in saved:
        logs.delete_log_stream(logGroupName=group, logStreamName=name)
    try:
        code, lines, output = run_verify(live, prefect=False)
    finally:
        for name, events in saved.items():
            logs.create_log_stream(logGroupName=group, logStreamName=name)
            logs.put_log_events(logGroupName=group, logStreamName=name, logEvents=[
                {"timestamp": e["timestamp"], "message": e["message"]} for e in events])
    assert code == 1
    assert lines["worker start line in the logs"].startswith("✗"), output
    assert sum(line.startswith("✗") for line in lines.values()) == 1, output


def test_verify_fails_when_the_service_is_not_stable(live):
    """Last: it replaces the service with one whose rollout has not finished."""
    replayed, service = live["replayed"], live["service"]
    ecs = replayed.client("ecs")
    ecs.delete_service(cluster=service["cluster"], service=service["name"], force=True)
    # moto reports MOTO_ECS_SERVICE_RUNNING (1) task running, so two desired never settle.
    ecs.create_service(**{**service["request"], "desiredCount": 2})

    code, lines, output = run_verify(live, prefect=False)

    assert code == 1
    failed = lines["service stable"]
    assert failed.startswith("✗") and "running 1, desired 2, rollout IN_PROGRESS" in failed, output
