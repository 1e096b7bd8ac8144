"""The capacity bench: cgroups hold a process to its task's size, the ramp's rules, the refusal
without root, and (slow) `--quick` end to end with its JSON line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import capacity
from testbed.cgroups import CgroupsUnavailable, TaskLimits, check_available
from testbed.flow_run_load import StepFigures
from tests.support.harness import ROOT, load_stack_config

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")


def step(**changes) -> StepFigures:
    figures = dict(offered_per_min=20, seconds=120, created=40, completed=40, calls=600,
                   p50_s=0.1, p95_s=0.5, errors=0, in_flight_at_end=3)
    return StepFigures(**{**figures, **changes})


def test_fargate_cpu_units_become_the_cfs_quota_of_a_100ms_period():
    assert TaskLimits("x", 512, 1024).quota_us == 50_000
    assert TaskLimits("x", 256, 512).quota_us == 25_000
    assert TaskLimits("x", 1024, 2048).quota_us == 100_000
    assert TaskLimits("x", None, None).quota_us == -1  # measured only


def test_a_step_is_held_only_within_p95_without_errors_or_backlog():
    assert capacity.held(step(), poll_seconds=10)
    assert not capacity.held(step(p95_s=1.2), poll_seconds=10)
    assert not capacity.held(step(errors=1), poll_seconds=10)
    assert not capacity.held(step(p95_s=None), poll_seconds=10)
    backlog = capacity.backlog_limit(20, 10)
    assert not capacity.held(step(in_flight_at_end=math.ceil(backlog) + 1), poll_seconds=10)


def test_the_bench_refuses_without_root_and_says_why(monkeypatch, capsys):
    monkeypatch.setattr("testbed.cgroups.os.geteuid", lambda: 1000)
    with pytest.raises(CgroupsUnavailable, match="root"):
        check_available()
    assert capacity.main(["--quick"]) == 2
    assert "needs root" in capsys.readouterr().err


def test_a_submissions_phases_are_read_from_the_workers_log_lines(tmp_path):
    run = "c1fbdd50-3c64-4d84-ab8f-ecf8bb58c09e"
    lines = [(100.0, f"Worker 'ECSWorker 1' submitting flow run '{run}'"),
             (102.5, "Retrieving ECS task definition 'arn'..."),
             (102.8, "Using ECS task definition 'arn'..."),
             (103.0, "Creating ECS task run..."),
             (103.25, "Created ECS task 'arn'"),
             (104.0, f"Flow run '{run}' submitted to infrastructure")]
    log = tmp_path / "worker.log"
    log.write_text("\n".join(json.dumps({"created": at, "flow_run_id": run, "message": message})
                             for at, message in lines) + "\nWorker 'x' started!\n")
    phases = list(capacity.submission_phases([log]).values())
    assert phases == [2.5, 0.5, 0.25, 0.75]
    assert len(phases) == len(capacity.PHASES) - 1


@pytest.mark.slow  # a process in the kernel's control groups, for a second of wall time
@AS_ROOT
def test_a_process_in_its_groups_gets_its_cpu_quota_and_the_groups_go_away():
    limits = TaskLimits(f"test-{os.getpid()}", 256, 512).create()
    try:
        # Unthrottled, the loop would take 1.2 s of CPU: well over the bound below.
        busy = "import time\nt = time.time()\nwhile time.time() - t < 1.2: pass"
        began = time.monotonic()
        subprocess.run(limits.wrap([sys.executable, "-c", busy]), check=True, timeout=30)
        wall = time.monotonic() - began
        # The kernel holds the quota; a quarter CPU for the loop's wall time at most (a loaded
        # machine may give it less, and then never throttles it).
        assert limits.read("cpu", "cpu.cfs_quota_us") == "25000"
        assert limits.read("memory", "memory.limit_in_bytes") == str(512 << 20)
        assert 0 < limits.cpu_seconds() <= 0.25 * wall + 0.3
        assert limits.memory_peak_mib() > 0
    finally:
        limits.remove()
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{limits.name}"))


def positive_numbers(part: dict, keys: tuple[str, ...]) -> None:
    assert keys, "the part has figures"
    for key in keys:
        value = part[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)


@pytest.mark.slow
@AS_ROOT
def test_quick_mode_measures_the_single_server_and_a_worker_and_ends_with_one_json_line():
    # One step of 10 s (two runs): what the test checks is the machinery, end to end.
    result = subprocess.run([sys.executable, "-m", "bench.capacity", "--quick", "--steps", "12",
                             "--step-seconds", "10"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(figures) == {"single", "worker", "load_average"}
    positive_numbers(figures["single"], ("runs_per_min", "p95_s", "cpu_units", "memory_mib",
                                         "server_cpu_s_per_run", "database_cpu_s_per_run",
                                         "server_rss_peak_mib"))
    positive_numbers(figures["worker"], ("submissions_per_min", "p95_s", "cpu_units", "memory_mib",
                                         "worker_cpu_s_per_submission", "worker_rss_peak_mib"))
    for part in ("single", "worker"):
        assert figures[part]["errors"] == 0, figures
    assert len(figures["load_average"]) == 3
    # The worker ran at dev's declared size.
    dev = load_stack_config("dev")
    assert (figures["worker"]["cpu_units"], figures["worker"]["memory_mib"]) == (
        int(dev["prefect-ecs-worker:workerCpu"]), int(dev["prefect-ecs-worker:workerMemory"]))
