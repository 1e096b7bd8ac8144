"""`make sandbox`: a stack's whole platform on this machine, as a user runs it.

Each test runs `python -m testbed.local_platform` as its own process (testbed/platform_client.py),
as `make sandbox` does, with a state directory of its own (its lock file and logs):

- `--once` for `dev`: up, the sample flow Completed, down, nothing left (`selfhosted-dev`'s
  sandbox is checked in tests/integration/test_sandbox_selfhosted.py);
- one interactive `dev` sandbox: the two commands it prints under "your flow", run as printed,
  deploy a flow of one's own onto the stack's pool and run it to Completed; a second sandbox is
  turned away while it runs; the failing sample
  ends Failed; a flow-run task killed from outside (SIGKILL, exit 137) ends Crashed through the
  stack's own path (the task's STOPPED event, the declared EventBridge rule and queue, the
  worker's observer), and so does one stopped with StopTask on the emulator (SIGTERM, exit 143);
  a run cancelled as the UI cancels it ends Cancelled; Ctrl-C stops every process it started and
  frees every port it served;
- a refused config stops before anything runs, with the program's own message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import boto3
import pytest

from components.config.reader import ConfigError
from testbed.ecs_tasks import FLOW_RUN_TAG
from testbed.platform_client import SandboxProcess, run_once
from tests.support.harness import evaluate, load_stack_config, with_credentials
from tests.support.sandbox_checks import assert_ctrl_c_leaves_nothing, running_sandbox

pytestmark = pytest.mark.slow

READY_WITHIN_S = 600  # ~25 s idle for dev, ~55 s for selfhosted-dev; minutes on a loaded machine
FINAL_WITHIN_S = 180


def test_once_runs_the_sample_flow_to_completed_and_leaves_no_process(tmp_path):
    stack = "dev"
    code, outcome, output = run_once(stack, tmp_path)
    assert code == 0, output[-4000:]
    assert set(outcome) == {"stack", "ready_s", "completed_s", "final_state", "processes_left"}
    assert outcome["stack"] == stack
    assert outcome["final_state"] == "Completed", output[-4000:]
    assert outcome["processes_left"] == 0
    assert outcome["ready_s"] > 0 and outcome["completed_s"] > 0
    # The flow's own log line, from the task the worker started through the emulator's RunTask.
    task_logs = list((tmp_path / stack / "tasks").glob("*.log"))
    assert task_logs and "Hello, sandbox!" in task_logs[0].read_text()
    assert "stopped: exit code 0" in output


def test_a_refused_config_stops_with_the_programs_message(tmp_path):
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  prefect-ecs-worker:workPoolName: ecs-bad\n"
                   "  prefect-ecs-worker:workerCpu: 300\n")
    with pytest.raises(ConfigError) as refused:
        evaluate(with_credentials(load_stack_config(stack_file=bad)), stack="bad")
    code, outcome, output = run_once(str(bad), tmp_path / "state", timeout=300)
    assert code == 1
    assert f"error: {refused.value}" in output.splitlines()
    assert "ready" not in output and outcome == {}, "nothing runs past the refused config"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with running_sandbox("dev", tmp_path_factory.mktemp("sandbox-state"), READY_WITHIN_S) as running:
        yield running


def test_the_sample_run_completes_and_the_summary_says_where_everything_is(sandbox):
    assert "Sample run " in sandbox.output and ": Completed " in sandbox.output
    facts = sandbox.facts
    for key, label in (("ui", "UI"), ("emulator", "emulator")):
        (line,) = [line for line in sandbox.lines if line.strip().startswith(label)]
        assert facts[key] in line
    assert f"PREFECT_API_URL={facts['api']}" in sandbox.output
    assert f"-p {facts['pool']}" in sandbox.output and facts["pool"] == "ecs-dev"
    assert f"kill -INT {sandbox.process.pid}" in sandbox.output


MY_FLOW = """
from prefect import flow, get_run_logger

@flow
def my_flow():
    get_run_logger().info("my own flow ran")
"""


def test_the_printed_commands_deploy_and_run_your_own_flow_on_the_pool(sandbox, tmp_path):
    """The two lines under "your flow", run as printed from a directory holding my_flow.py."""
    (tmp_path / "my_flow.py").write_text(MY_FLOW)
    (deploy_line,) = [line for line in sandbox.lines if line.strip().startswith("your flow")]
    (run_line,) = [line for line in sandbox.lines if line.strip().startswith("then:")]
    for line in (deploy_line.split("your flow", 1)[1], run_line.split("then:", 1)[1]):
        result = subprocess.run(["bash", "-c", line.strip()], cwd=tmp_path, capture_output=True,
                                text=True, timeout=300, env={"PATH": os.environ["PATH"],
                                                             "HOME": str(tmp_path)})
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (run,) = sandbox.call("POST", "/flow_runs/filter",
                          {"flows": {"name": {"any_": ["my-flow"]}}})
    state = sandbox.wait_state(run["id"], ("COMPLETED", "FAILED", "CRASHED"), FINAL_WITHIN_S)
    assert state["name"] == "Completed", state
    assert run["work_pool_name"] == sandbox.facts["pool"]


def test_a_second_sandbox_says_so_and_exits(sandbox):
    second = SandboxProcess("dev", sandbox.state_dir)
    code = second.process.wait(120)
    second._reader.join(10)
    assert code == 1
    assert f"already running (PID {sandbox.process.pid}, stack dev" in second.output
    assert sandbox.process.poll() is None, "the first one keeps running"


def test_the_failing_sample_ends_failed(sandbox):
    run_id = sandbox.run("failing/sample")
    state = sandbox.wait_state(run_id, ("FAILED", "COMPLETED", "CRASHED"), FINAL_WITHIN_S)
    assert state["name"] == "Failed", state

    def error_logged() -> bool:
        # The flow's logs travel in batches, and may land after its final state.
        logs = sandbox.call("POST", "/logs/filter",
                            {"logs": {"flow_run_id": {"any_": [run_id]}}})
        return any("this sample flow fails on purpose" in log["message"] for log in logs)

    deadline = time.monotonic() + 60
    while not error_logged():
        assert time.monotonic() < deadline, "the flow's error never reached the run's logs"
        time.sleep(1)


def test_a_task_killed_from_outside_ends_crashed_through_the_queue_and_the_observer(sandbox):
    run_id = sandbox.run("hello/sample", {"seconds": 600})
    running = sandbox.wait_state(run_id, ("RUNNING", *("COMPLETED", "FAILED", "CRASHED")),
                                 FINAL_WITHIN_S)
    assert running["type"] == "RUNNING", running
    pid = sandbox.task_pid(run_id)
    # The whole container at once, as an OOM kill or a lost host kills it: nothing reports back
    # (the engine runs in a child of `prefect flow-run execute`, in the task's process group).
    os.killpg(pid, signal.SIGKILL)
    state = sandbox.wait_state(run_id, ("CRASHED", "COMPLETED", "FAILED"), FINAL_WITHIN_S)
    assert state["name"] == "Crashed", state
    # The observer's message, from the STOPPED event's container exit code (137).
    assert "stopped with a non-zero exit code" in state["message"], state
    worker_log = (sandbox.state_dir / "dev" / "prefect-worker-0.log").read_text()
    marked = [json.loads(line) for line in worker_log.splitlines()
              if line.startswith("{") and run_id in line and "as crashed" in line]
    assert marked and marked[0]["name"].startswith("prefect_aws.observers.ecs"), marked


def test_a_stop_task_on_the_emulator_sends_sigterm_and_the_run_ends_crashed(sandbox):
    run_id = sandbox.run("hello/sample", {"seconds": 600})
    running = sandbox.wait_state(run_id, ("RUNNING", "COMPLETED", "FAILED", "CRASHED"),
                                 FINAL_WITHIN_S)
    assert running["type"] == "RUNNING", running
    ecs = boto3.client("ecs", endpoint_url=sandbox.facts["emulator"], region_name="us-east-1",
                       aws_access_key_id="any", aws_secret_access_key="any")
    cluster = "prefect-ecs-worker-dev"
    tasks = ecs.describe_tasks(cluster=cluster, include=["TAGS"], tasks=ecs.list_tasks(
        cluster=cluster, desiredStatus="RUNNING")["taskArns"])["tasks"]
    (task,) = [t for t in tasks
               if {tag["key"]: tag["value"] for tag in t["tags"]}[FLOW_RUN_TAG] == run_id]
    ecs.stop_task(cluster=cluster, task=task["taskArn"], reason="stopped from outside")
    state = sandbox.wait_state(run_id, ("CRASHED", "COMPLETED", "FAILED"), FINAL_WITHIN_S)
    assert state["name"] == "Crashed", state
    task_id = task["taskArn"].rsplit("/", 1)[1]
    sandbox.wait_for_line(f"flow-run task {task_id} stopped: exit code 143", 60)


def test_a_run_cancelled_in_the_ui_ends_cancelled(sandbox):
    run_id = sandbox.run("hello/sample", {"seconds": 600})
    running = sandbox.wait_state(run_id, ("RUNNING", "COMPLETED", "FAILED", "CRASHED"),
                                 FINAL_WITHIN_S)
    assert running["type"] == "RUNNING", running
    # What the UI's Cancel button sends.
    sandbox.call("POST", f"/flow_runs/{run_id}/set_state",
                 {"state": {"type": "CANCELLING", "name": "Cancelling"}})
    state = sandbox.wait_state(run_id, ("CANCELLED", "CRASHED", "COMPLETED", "FAILED"),
                               FINAL_WITHIN_S)
    assert state["name"] == "Cancelled", state


def test_ctrl_c_stops_every_process_it_started_and_frees_every_port(sandbox):
    assert_ctrl_c_leaves_nothing(sandbox)
