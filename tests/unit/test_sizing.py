"""The sizing rules: runs a day to a server, a database class, API tasks and workers, from a
measured capacity, with the stated peak factor and headroom."""

import itertools
import json

import pytest

from components.server_settings import MAX_API_TASKS, MIN_API_TASKS
from tools.sizing import (
    DATABASE_BASELINES, HA_MIN_DATABASE, HEADROOM, MAX_USEFUL_SERVER_CPU,
    PEAK_TO_AVERAGE, RUNS_PER_DAY, Measured, beyond_the_stack, database_for, size, sizing_rows,
)

# 12 runs a minute at a quarter vCPU, 0.2 database CPU-s a run, 30 submissions a minute a worker.
MEASURED = Measured(server_cpu_units=256, runs_per_min=12.0, database_cpu_s_per_run=0.2,
                    worker_submissions_per_min=30.0, date="2026-12-04", load_average=[1, 1, 1])


def peak(runs_per_day: int) -> float:
    return runs_per_day / 1440 * PEAK_TO_AVERAGE


def test_server_rate_scales_with_cpu_up_to_one_vcpu():
    assert MEASURED.server_runs_per_min(256) == 12.0
    assert MEASURED.server_runs_per_min(512) == 24.0
    assert MEASURED.server_runs_per_min(1024) == 48.0
    assert MEASURED.server_runs_per_min(4096) == MEASURED.server_runs_per_min(MAX_USEFUL_SERVER_CPU)


def test_the_smallest_single_server_that_holds_the_peak_within_headroom():
    # 500 runs a day: peak 3.5/min, within half of 12.
    small = size(500, MEASURED)
    assert (small.mode, small.server_cpu, small.api_tasks) == ("single", 256, 1)
    # 2,000 a day: peak 13.9/min, needs half of 48 (1024 units).
    middle = size(2_000, MEASURED)
    assert (middle.mode, middle.server_cpu) == ("single", 1024)
    assert MEASURED.server_runs_per_min(512) * HEADROOM < peak(2_000) <= 48 * HEADROOM
    assert middle.server_memory >= 1024


def test_past_one_vcpu_it_is_ha_with_enough_api_tasks():
    big = size(20_000, MEASURED)
    assert big.mode == "ha" and big.server_cpu == MAX_USEFUL_SERVER_CPU
    assert big.api_tasks >= MIN_API_TASKS
    assert big.api_tasks * 48 * HEADROOM >= peak(20_000)
    assert (big.api_tasks - 1) * 48 * HEADROOM < peak(20_000) or big.api_tasks == MIN_API_TASKS
    assert [n for n, _, _ in DATABASE_BASELINES].index(big.database) >= [
        n for n, _, _ in DATABASE_BASELINES].index(HA_MIN_DATABASE)


def test_database_is_the_smallest_class_whose_baseline_holds_the_peak():
    assert database_for(1.0, 0.2, "single") == "db.t4g.micro"  # 0.0067 vCPU needed, 0.2 there
    needed_vcpu = 100 / 60 * 0.2 / HEADROOM  # 0.67 vCPU: above the t4g classes' baselines
    assert needed_vcpu > 0.6
    assert database_for(100, 0.2, "single") == "db.m7g.large"
    assert database_for(1.0, 0.2, "ha") == HA_MIN_DATABASE
    assert database_for(10_000, 1, "single").startswith("larger than")


def test_workers_cover_the_peak_at_half_their_measured_rate():
    for row in sizing_rows(MEASURED):
        assert row.workers * 30 * HEADROOM >= row.peak_runs_per_min
        assert row.workers == 1 or (row.workers - 1) * 30 * HEADROOM < row.peak_runs_per_min


def test_every_stated_volume_has_a_row_and_volumes_grow():
    rows = sizing_rows(MEASURED)
    assert [r.runs_per_day for r in rows] == list(RUNS_PER_DAY) and len(rows) > 1
    assert all(a.peak_runs_per_min < b.peak_runs_per_min for a, b in itertools.pairwise(rows))


def test_measured_figures_are_read_from_the_bench_record(tmp_path):
    record = tmp_path / "capacity.json"
    assert Measured.load(record) is None
    record.write_text(json.dumps({
        "date": "2026-12-04", "load_average": [3.0, 2.0, 1.0],
        "single": {"cpu_units": 256, "runs_per_min": 12.5, "database_cpu_s_per_run": 0.3},
        "worker": {"submissions_per_min": 40.0}}))
    measured = Measured.load(record)
    assert measured == Measured(256, 12.5, 0.3, 40.0, "2026-12-04", [3.0, 2.0, 1.0])


@pytest.mark.parametrize("runs", RUNS_PER_DAY)
def test_peak_is_the_stated_multiple_of_the_days_average(runs):
    assert size(runs, MEASURED).peak_runs_per_min == pytest.approx(peak(runs), abs=0.05)


def test_more_api_tasks_than_the_stack_accepts_is_flagged():
    assert not beyond_the_stack(size(20_000, MEASURED))
    huge = size(1_000_000, MEASURED)
    assert huge.api_tasks > MAX_API_TASKS and beyond_the_stack(huge)
