"""How fast the Prefect server's database grows, from the bytes measured on real PostgreSQL.

`make bench-upgrade` records in bench/results/upgrade.json what 1,000 flow runs of a stated
shape (task runs, log lines and events per run) hold on disk, split into what the flow-run
retention deletes (runs, task runs, their states, logs) and what the events retention deletes
(events and their resources). This module is the one reader of those figures: the growth table in
docs/self-hosted-server.md (scripts/doc_tables.py) and the free-storage alarm
(components/server/alarms.py) both come from here.

Deleted rows leave space PostgreSQL reuses (autovacuum) rather than returns, so a database at
its retention steady state stops growing: what it holds is runs a day x (run bytes x flow-run
retention + event bytes x events retention).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Optional

MEASURED = Path(__file__).resolve().parents[2] / "bench" / "results" / "upgrade.json"
GIB = 1024 ** 3
# The load the Pulumi.yaml defaults are stated for (docs/self-hosted-server.md).
STATED_RUNS_PER_DAY = 1000
# The free-storage alarm leaves at least this many days of growth at the stated load to act.
ALARM_HEADROOM_DAYS = 7
# Longest horizon the table looks at.
HORIZON_DAYS = 3650


@dataclass(frozen=True)
class Measured:
    run_bytes_per_1000: int
    event_bytes_per_1000: int
    empty_bytes: int
    shape: dict


@cache
def measured() -> Measured:
    """The largest recorded database's figures (its fixed overhead is the smallest share)."""
    record = json.loads(MEASURED.read_text())
    largest = max(record["databases"], key=lambda d: d["flow_runs"])
    return Measured(largest["run_bytes_per_1000_runs"], largest["event_bytes_per_1000_runs"],
                    record.get("empty_bytes", 0), record["shape"])


def daily_bytes(runs_per_day: float) -> float:
    """What a day of runs adds before any retention deletes it."""
    m = measured()
    return runs_per_day / 1000 * (m.run_bytes_per_1000 + m.event_bytes_per_1000)


def held_bytes(runs_per_day: float, events_days: int, flow_run_days: int, day: int) -> float:
    """Bytes held after `day` days at this load (flow_run_days 0: runs are never deleted)."""
    m = measured()
    run_days = day if flow_run_days == 0 else min(day, flow_run_days)
    return m.empty_bytes + runs_per_day / 1000 * (
        m.run_bytes_per_1000 * run_days + m.event_bytes_per_1000 * min(day, events_days))


def days_until_full(runs_per_day: float, events_days: int, flow_run_days: int,
                    storage_gb: int) -> Optional[int]:
    """The first day the data outgrows `storage_gb`, or None if the steady state fits."""
    capacity = storage_gb * GIB
    steady_day = max(events_days, flow_run_days) if flow_run_days else HORIZON_DAYS
    if held_bytes(runs_per_day, events_days, flow_run_days, steady_day) <= capacity:
        return None
    low, high = 0, steady_day
    while low < high:  # held_bytes grows with the day: the first day above capacity
        middle = (low + high) // 2
        if held_bytes(runs_per_day, events_days, flow_run_days, middle) > capacity:
            high = middle
        else:
            low = middle + 1
    return low


def free_storage_alarm_bytes(allocated_gb: int, low_share: float) -> int:
    """The free-storage alarm's threshold: `low_share` of the allocation, or the growth of
    ALARM_HEADROOM_DAYS at the stated load (before retention deletes any), whichever is more."""
    return math.ceil(max(allocated_gb * GIB * low_share,
                         ALARM_HEADROOM_DAYS * daily_bytes(STATED_RUNS_PER_DAY)))
