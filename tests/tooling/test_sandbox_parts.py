"""The parts of `make sandbox` that need no server: its lock, the stack it reads, the exit codes
it reports for a flow-run task, and how it counts what it left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from testbed.ecs_tasks import exit_code
from testbed.local_platform import Lock
from testbed.platform_stack import stack_config, stack_path
from testbed.processes import Processes, kill_all, session_of, with_environment
from testbed.servers import spawn
from tools.mock_engine import PLACEHOLDER_API_KEY, PROJECT, ROOT


def test_a_second_lock_in_the_same_directory_is_refused_with_the_holders_facts(tmp_path):
    first = Lock(tmp_path)
    assert first.holder() is None
    first.write(pid=os.getpid(), stack="dev", ui="http://127.0.0.1:1")
    held = Lock(tmp_path).holder()
    assert held == {"pid": os.getpid(), "stack": "dev", "ui": "http://127.0.0.1:1", "alive": True}
    first.release()
    again = Lock(tmp_path)
    assert again.holder() is None, "a released lock is free"
    again.release()


def test_a_lock_left_by_a_dead_process_is_free(tmp_path):
    """The kernel drops a dead holder's flock: a killed sandbox does not block the next one."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from testbed.local_platform import Lock; "
        f"lock = Lock(Path({str(tmp_path)!r})); lock.holder(); print('held', flush=True); "
        "time.sleep(60)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert Lock(tmp_path).holder() == {"pid": holder.pid, "alive": True}
    holder.kill()
    holder.wait(10)
    lock = Lock(tmp_path)
    assert lock.holder() is None
    assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid()
    lock.release()


@pytest.mark.parametrize("returncode, reported", [(0, 0), (1, 1), (-signal.SIGKILL, 137),
                                                  (-signal.SIGTERM, 143)])
def test_a_tasks_exit_code_is_what_a_container_runtime_reports(returncode, reported):
    assert exit_code(returncode) == reported


def test_a_stack_is_a_name_or_a_stack_file(tmp_path):
    assert stack_path("dev") == ("dev", ROOT / "Pulumi.dev.yaml")
    path = tmp_path / "Pulumi.mine.yaml"
    path.write_text("config: {}\n")
    assert stack_path(str(path)) == ("mine", path)
    with pytest.raises(SystemExit, match="Pulumi.nosuch.yaml"):
        stack_path("nosuch")


def test_the_stacks_own_credential_never_reaches_the_sandbox(tmp_path):
    path = tmp_path / "Pulumi.real.yaml"
    path.write_text("config:\n  prefect-ecs-worker:workPoolName: ecs-real\n"
                    "  prefect-ecs-worker:prefectApiKeySecretArn: "
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:real-AbCdEf\n")
    config = stack_config(path)
    assert f"{PROJECT}:prefectApiKeySecretArn" not in config
    assert config[f"{PROJECT}:prefectApiKey"] == PLACEHOLDER_API_KEY


def test_what_is_left_counts_a_grandchild_in_a_started_session(tmp_path):
    processes = Processes()
    # A shell whose child outlives it, as `sh -c "... &"` in a container command would.
    started = spawn(["sh", "-c", "sleep 60 & exec sleep 60"], dict(os.environ),
                    tmp_path / "log", new_session=True)
    processes.add("shell", started)
    assert session_of(started.pid) == started.pid
    deadline = time.monotonic() + 10
    while len(processes.left()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(processes.left()) == 2
    processes.stop_all()
    assert processes.left() == []


def test_a_tasks_child_in_a_session_of_its_own_is_found_and_killed_with_the_task(tmp_path):
    """Prefect's runner starts its engine in a new session, out of reach of the task's process
    group: the sandbox finds a task's processes by the task's own HOME, as a container's PID
    namespace holds them, and kills them when the task ends."""
    home = tmp_path / "tasks" / "t1" / "home"
    home.mkdir(parents=True)
    # The leader, and a child that leaves for a session of its own (setsid).
    leader = spawn(["sh", "-c", "setsid sleep 60 & exec sleep 60"],
                   {**os.environ, "HOME": str(home)}, tmp_path / "log", new_session=True)
    deadline = time.monotonic() + 10
    while len(with_environment("HOME", str(home))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    found = with_environment("HOME", str(home))
    assert leader.pid in found and len(found) == 2
    (child,) = set(found) - {leader.pid}
    assert session_of(child) == child, "the child runs in a session of its own"
    os.killpg(leader.pid, signal.SIGKILL)  # the task's group only: the child survives that
    leader.wait(10)
    assert with_environment("HOME", str(home)) == [child]
    kill_all(with_environment("HOME", str(home)))
    deadline = time.monotonic() + 10
    while with_environment("HOME", str(home)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert with_environment("HOME", str(tmp_path)) == []
