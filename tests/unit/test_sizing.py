"""The sizing rules: runs a day to a server, a database class, API tasks and workers, from a
measured capacity, with the stated peak factor and headroom."""

import itertools
import json

import pytest

from components.config.server import MAX_API_TASKS, MIN_API_TASKS
from tools.mock_engine import project_defaults
from tools.sizing import (
    DATABASE_BASELINES, HA_MIN_DATABASE, HEADROOM, MAX_USEFUL_SERVER_CPU,
    PEAK_TO_AVERAGE, RUNS_PER_DAY, Measured, beyond_the_stack, database_for, default_verdicts,
    cpu_bound_runs_per_min, runs_per_day, size, sizing_rows, within_headroom,
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
        "single": {"cpu_units": 256, "runs_per_min": 12.5, "database_cpu_s_per_run": 0.3,
                   "server_rss_peak_mib": 210.0},
        "worker": {"submissions_per_min": 40.0, "cpu_units": 256, "worker_rss_peak_mib": 300.0}}))
    measured = Measured.load(record)
    assert measured == Measured(256, 12.5, 0.3, 40.0, "2026-12-04", [3.0, 2.0, 1.0], 210.0, 256,
                                300.0)


@pytest.mark.parametrize("runs", RUNS_PER_DAY)
def test_peak_is_the_stated_multiple_of_the_days_average(runs):
    assert size(runs, MEASURED).peak_runs_per_min == pytest.approx(peak(runs), abs=0.05)


def test_more_api_tasks_than_the_stack_accepts_is_flagged():
    assert not beyond_the_stack(size(20_000, MEASURED))
    huge = size(1_000_000, MEASURED)
    assert huge.api_tasks > MAX_API_TASKS and beyond_the_stack(huge)


def test_each_default_size_is_judged_from_pulumi_yaml_and_the_measurement():
    defaults = project_defaults()
    verdicts = {v.keys: v for v in default_verdicts(MEASURED, defaults)}
    assert set(verdicts) == {"serverCpu / serverMemory", "workerCpu / workerMemory",
                             "serverDbInstanceClass"}
    server = verdicts["serverCpu / serverMemory"]
    assert server.default == f"{defaults['serverCpu']} / {defaults['serverMemory']}"
    rate = MEASURED.server_runs_per_min(int(defaults["serverCpu"]))
    assert server.carries.startswith(f"{rate:.1f} runs/min")
    assert f"{runs_per_day(rate):,} runs a day" in server.carries
    assert verdicts["serverDbInstanceClass"].default == defaults["serverDbInstanceClass"]


def test_runs_per_day_is_the_peak_rate_undone():
    assert runs_per_day(10) == int(10 * HEADROOM * 1440 / PEAK_TO_AVERAGE)
    assert size(runs_per_day(10), MEASURED).peak_runs_per_min <= 10 * HEADROOM + 0.1


def test_the_cpu_bound_rate_is_the_quota_over_the_cpu_a_run_cost():
    single = {"cpu_units": 256, "server_cpu_s_per_run": 0.5}
    assert cpu_bound_runs_per_min(single) == 30.0  # a quarter CPU-second a second, 0.5 a run
    ha = {"cpu_units": 1024, "server_cpu_s_per_run": 2.0, "processes": ["api-0", "api-1", "services"]}
    assert cpu_bound_runs_per_min(ha) == 90.0
    assert cpu_bound_runs_per_min({"cpu_units": 256, "server_cpu_s_per_run": None}) is None


def test_a_default_memory_is_judged_against_the_headroom():
    assert within_headroom(200, 1024) and within_headroom(512, 1024)
    assert not within_headroom(394, 512)
    heavy = Measured(256, 12.0, 0.2, 30.0, "d", [1, 1, 1], server_rss_peak_mib=100,
                     worker_rss_peak_mib=2000)
    verdicts = {v.keys: v for v in default_verdicts(heavy, project_defaults())}
    assert verdicts["serverCpu / serverMemory"].memory_within_headroom is True
    assert verdicts["workerCpu / workerMemory"].memory_within_headroom is False
    assert verdicts["serverDbInstanceClass"].memory_within_headroom is None


def test_the_recorded_measurement_finds_every_default_memory_within_the_headroom():
    """Pulumi.yaml's defaults hold what the recorded run measured, with the stated headroom."""
    measured = Measured.load()
    if measured is None:
        pytest.skip("no capacity run recorded")
    verdicts = default_verdicts(measured, project_defaults())
    assert [v.keys for v in verdicts if v.memory_within_headroom is False] == []
