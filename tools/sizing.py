"""Sizes for a volume of flow runs, from what `make bench-capacity` measured.

Input: bench/results/capacity.json (bench/capacity.py): the `single` server's held rate at its
declared size, its and PostgreSQL's CPU-seconds per run, and one worker's submissions a minute at
its declared size. For a number of runs a day, each part is sized so that the busiest minute
(`PEAK_TO_AVERAGE` x the day's average rate) stays within `HEADROOM` of what was measured:

- **server:** the measured rate scales with the server task's CPU (the resource that ran out in
  the ramp: the server is throttled at its quota while the database idles), up to one vCPU: one
  `prefect server start` process serves the API on one event loop, so CPU past a core is not used.
  Beyond that, `ha`: API tasks of one vCPU each, the count rounded up (two at least: `ha` spreads
  them across AZs; more than `serverApiCount` accepts is past what one stack carries). The `ha`
  rows are scaled from the single measurement, not measured.
- **database:** PostgreSQL's CPU-seconds per run at the peak rate, against each RDS burstable
  class's baseline CPU (what it sustains without spending credits), the smallest that holds it;
  `ha` needs db.t4g.small at least (a micro instance's ~80 connections are too few, as the stack's
  config check says).
- **workers:** the peak rate over one worker's measured submissions a minute, rounded up.

The figures come from one machine (see the record's load average), not from AWS: re-record with
`make bench-capacity` on a quiet machine and `python -m scripts.doc_tables --write`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from components.config.server import MAX_API_TASKS, MIN_API_TASKS

ROOT = Path(__file__).resolve().parent.parent
CAPACITY_RESULTS = ROOT / "bench" / "results" / "capacity.json"

# Plan each part at half of what it held: the measured step is the edge (p95 at 1 s), and a
# server at its edge has nothing left for the UI, a backfill or a retry storm.
HEADROOM = 0.5
# Runs come from schedules, and schedules bunch at the top of the hour: the busiest minute of a
# day carries about ten times the day's average rate (a day's runs spread over 24 hours, with
# most hourly and daily schedules starting in the same few minutes).
PEAK_TO_AVERAGE = 10.0
RUNS_PER_DAY = (500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000)
# One `prefect server start` process uses about one core (one event loop): a single server is
# sized up to here, and past it `ha` adds API tasks of this size.
MAX_USEFUL_SERVER_CPU = 1024
SERVER_SIZES = (256, 512, 1024)
MIN_SERVER_MEMORY_MIB = 1024  # the stack's floor for serverMemory
HA_MIN_DATABASE = "db.t4g.small"
# RDS burstable classes: vCPUs and the baseline share of each a class sustains without spending
# CPU credits (the EC2 t4g figures RDS uses:
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/burstable-credits-baseline-concepts.html),
# smallest first.
DATABASE_BASELINES: tuple[tuple[str, int, float], ...] = (
    ("db.t4g.micro", 2, 0.10),
    ("db.t4g.small", 2, 0.20),
    ("db.t4g.medium", 2, 0.20),
    ("db.t4g.large", 2, 0.30),
    ("db.m7g.large", 2, 1.0),
)


@dataclass(frozen=True)
class Measured:
    server_cpu_units: int
    runs_per_min: float  # held by the single server at server_cpu_units
    database_cpu_s_per_run: float
    worker_submissions_per_min: float
    date: str
    load_average: list[float]
    server_rss_peak_mib: float = 0.0
    worker_cpu_units: int = 256
    worker_rss_peak_mib: float = 0.0

    @classmethod
    def load(cls, path: Path = CAPACITY_RESULTS) -> Optional["Measured"]:
        if not path.exists():
            return None
        record: dict[str, Any] = json.loads(path.read_text())
        single, worker = record["single"], record["worker"]
        return cls(int(single["cpu_units"]), float(single["runs_per_min"]),
                   float(single["database_cpu_s_per_run"]),
                   float(worker["submissions_per_min"]), record["date"], record["load_average"],
                   float(single["server_rss_peak_mib"]), int(worker["cpu_units"]),
                   float(worker["worker_rss_peak_mib"]))

    def server_runs_per_min(self, cpu_units: int) -> float:
        """What a server of `cpu_units` holds, scaled by the CPU it can use."""
        usable = min(cpu_units, MAX_USEFUL_SERVER_CPU)
        return self.runs_per_min * usable / self.server_cpu_units


@dataclass(frozen=True)
class Sizing:
    runs_per_day: int
    peak_runs_per_min: float
    mode: str
    server_cpu: int
    server_memory: int
    api_tasks: int
    database: str
    workers: int


def server_memory(cpu_units: int) -> int:
    """Fargate's smallest memory for the CPU, at least the stack's floor."""
    return max(MIN_SERVER_MEMORY_MIB, 2 * cpu_units)


def database_for(peak_runs_per_min: float, cpu_s_per_run: float, mode: str) -> str:
    needed = peak_runs_per_min / 60 * cpu_s_per_run / HEADROOM
    names = [name for name, _, _ in DATABASE_BASELINES]
    start = names.index(HA_MIN_DATABASE) if mode == "ha" else 0
    for name, vcpus, baseline in DATABASE_BASELINES[start:]:
        if vcpus * baseline >= needed:
            return name
    return f"larger than {names[-1]}"


def size(runs_per_day: int, measured: Measured) -> Sizing:
    peak = runs_per_day / (24 * 60) * PEAK_TO_AVERAGE
    mode, cpu, api_tasks = "ha", MAX_USEFUL_SERVER_CPU, 0
    for units in SERVER_SIZES:
        if measured.server_runs_per_min(units) * HEADROOM >= peak:
            mode, cpu, api_tasks = "single", units, 1
            break
    if mode == "ha":
        per_task = measured.server_runs_per_min(cpu) * HEADROOM
        api_tasks = max(MIN_API_TASKS, math.ceil(peak / per_task))
    workers = max(1, math.ceil(peak / (measured.worker_submissions_per_min * HEADROOM)))
    return Sizing(runs_per_day, round(peak, 1), mode, cpu, server_memory(cpu), api_tasks,
                  database_for(peak, measured.database_cpu_s_per_run, mode), workers)


def beyond_the_stack(sizing: Sizing) -> bool:
    """More API tasks than `serverApiCount` accepts: past what one stack's server carries."""
    return sizing.api_tasks > MAX_API_TASKS


def sizing_rows(measured: Measured) -> list[Sizing]:
    return [size(runs, measured) for runs in RUNS_PER_DAY]


def runs_per_day(runs_per_min: float) -> int:
    """The daily volume whose peak minute is `runs_per_min` at the headroom."""
    return int(runs_per_min * HEADROOM * 24 * 60 / PEAK_TO_AVERAGE)


def database_runs_per_min(database: str, cpu_s_per_run: float) -> float:
    """Runs a minute a class's baseline CPU sustains at PostgreSQL's measured CPU per run."""
    vcpus, baseline = next((v, b) for name, v, b in DATABASE_BASELINES if name == database)
    return vcpus * baseline / cpu_s_per_run * 60


@dataclass(frozen=True)
class DefaultVerdict:
    keys: str
    default: str
    carries: str
    memory: str
    # The process's measured RSS peak within HEADROOM of the memory (None: no memory to judge).
    memory_within_headroom: Optional[bool] = None


def within_headroom(rss_mib: float, memory_mib: int) -> bool:
    return rss_mib <= memory_mib * HEADROOM


def default_verdicts(measured: Measured, defaults: dict[str, Any]) -> list[DefaultVerdict]:
    """What each default size carries by the measurement (`defaults`: Pulumi.yaml's)."""
    server_cpu, server_memory = int(defaults["serverCpu"]), int(defaults["serverMemory"])
    worker_cpu, worker_memory = int(defaults["workerCpu"]), int(defaults["workerMemory"])
    database = str(defaults["serverDbInstanceClass"])
    server_rate = measured.server_runs_per_min(server_cpu)
    worker_rate = measured.worker_submissions_per_min * worker_cpu / measured.worker_cpu_units
    database_rate = database_runs_per_min(database, measured.database_cpu_s_per_run)
    return [
        DefaultVerdict("serverCpu / serverMemory", f"{server_cpu} / {server_memory}",
                       f"{server_rate:.1f} runs/min: {runs_per_day(server_rate):,} runs a day",
                       f"RSS peak {measured.server_rss_peak_mib:.0f} MiB of {server_memory}",
                       within_headroom(measured.server_rss_peak_mib, server_memory)),
        DefaultVerdict("workerCpu / workerMemory", f"{worker_cpu} / {worker_memory}",
                       f"{worker_rate:.1f} submissions/min: {runs_per_day(worker_rate):,} runs a day",
                       f"RSS peak {measured.worker_rss_peak_mib:.0f} MiB of {worker_memory}",
                       within_headroom(measured.worker_rss_peak_mib, worker_memory)),
        DefaultVerdict("serverDbInstanceClass", database,
                       f"{database_rate:.0f} runs/min at its baseline CPU: "
                       f"{runs_per_day(database_rate):,} runs a day", "-"),
    ]


def cpu_bound_runs_per_min(server: dict[str, Any]) -> Optional[float]:
    """What a recorded server's CPU quota would carry at the CPU a run cost it (all its processes'
    quotas over their CPU-seconds a run): the rate on a machine that gives the processes all of
    their quota. A busy machine gives less, so the held rate is lower."""
    per_run = server.get("server_cpu_s_per_run")
    if not per_run:
        return None
    processes = len(server.get("processes", ["server"]))
    return round(processes * server["cpu_units"] / 1024 / per_run * 60, 1)
