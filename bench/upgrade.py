"""An upgrade from an older Prefect on real PostgreSQL: how long the migration takes, what one
flow run costs in bytes, and that the retention the stack declares really deletes.

    python -m bench.upgrade [--api-runs 100] [--factors 10,100] [--record]

1. The older release (testbed/old_prefect.py) starts on an empty database and migrates it; its
   API is filled with `--api-runs` flow runs of the shape in testbed/upgrade.py (SHAPE), with
   flows, deployments, blocks and variables; those runs, their task runs, states, logs and events
   are then copied in SQL to `factor` times as many, one database per factor (10: 1,000 runs and
   10,000 events; 100: 10,000 runs and 100,000 events).
2. Each database is migrated to the pinned Prefect by the command the prefect-migrate container
   runs under its lock (components/server/migrate.py: `prefect server database upgrade -y`),
   timed; every table's row count is compared before and after.
3. Bytes on disk per 1,000 runs, split into what the flow-run retention deletes (runs, task runs,
   states, logs) and what the events retention deletes (events and their resources).
4. On the smallest database, every other run and event is backdated 3 hours; the pinned server's
   services run with the declared retention settings set to 2 hours (Prefect's floor is 1 hour)
   and a 5 s vacuum loop, until exactly the backdated rows are gone.

`--record` writes bench/results/upgrade.json; `python -m scripts.doc_tables --write` makes the
migration and growth tables in docs/self-hosted-server.md from it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from components.server.server import retention_environment
from components.config.server import PREFECT_VERSION
from testbed.databases import Postgres, start_postgres
from testbed.old_prefect import OLD_PREFECT_VERSION, ensure
from testbed.servers import BIN, free_port
from testbed.upgrade import (
    EVENTS, SHAPE, Api, backdate, fill, multiply, row_counts, running, sizes, wait_for_rows,
)

RESULTS = Path(__file__).resolve().parent / "results"
RESULT = RESULTS / "upgrade.json"
# What the flow-run retention deletes, and what the events retention deletes.
RUN_TABLES = ("flow_run", "flow_run_state", "task_run", "task_run_state", "log")
EVENT_TABLES = ("events", "event_resources")
VACUUM_WITHIN_S = 300
# Tables the migration from 3.6.29 creates (empty); no table it rewrites loses or gains a row.
NEW_TABLES = {"automation_held_event"}


def server_env(pg: Postgres, database: str, home: Path, bin_dir: Path) -> dict[str, str]:
    """What a server container gets for its database (the split settings), plus a home."""
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "PREFECT_HOME": str(home),
            "LANG": "C.UTF-8", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_DATABASE_DRIVER": "postgresql+asyncpg",
            "PREFECT_SERVER_DATABASE_HOST": pg.host,
            "PREFECT_SERVER_DATABASE_PORT": str(pg.port),
            "PREFECT_SERVER_DATABASE_USER": pg.user,
            "PREFECT_SERVER_DATABASE_PASSWORD": pg.password,
            "PREFECT_SERVER_DATABASE_NAME": database}


def migrate(env: dict[str, str], log_path: Path, timeout: float = 7200) -> float:
    """prefect-migrate's upgrade command with the pinned Prefect; its wall time."""
    started = time.monotonic()
    with open(log_path, "wb") as log:
        result = subprocess.run([str(BIN / "prefect"), "server", "database", "upgrade", "-y"],
                                env=env, stdout=log,
                                stderr=subprocess.STDOUT, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(log_path.read_text(errors="replace")[-3000:])
    return time.monotonic() - started


def changed(before: dict[str, int], after: dict[str, int]) -> dict[str, list]:
    return {table: [before.get(table), count] for table, count in after.items()
            if before.get(table) != count}


def vacuum(pg: Postgres, database: str, work: Path) -> dict[str, Any]:
    """The declared retention settings, shortened to 2 hours, on the pinned services process."""
    remaining = backdate(pg, database, hours=3)
    before = row_counts(pg, database)
    env = server_env(pg, database, work / "vacuum-home", BIN)
    (work / "vacuum-home").mkdir()
    declared = dict(retention_environment(1, 1))
    env.update({name: "PT2H" for name in declared if name.endswith("_PERIOD")})
    env["PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"] = declared[
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"]
    env["PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS"] = "5"
    env["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] = "false"
    port = free_port()
    started = time.monotonic()
    with running([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                  str(port)], env, work / "vacuum.log",
                 f"http://127.0.0.1:{port}/api/health"):
        deadline = time.monotonic() + VACUUM_WITHIN_S
        while time.monotonic() < deadline:
            now = row_counts(pg, database)
            if all(now[table] <= count for table, count in remaining.items()):
                break
            time.sleep(2)
    after = row_counts(pg, database)
    return {"retention": "PT2H", "backdated_hours": 3, "loop_seconds": 5,
            "seconds": round(time.monotonic() - started, 1),
            "before": {t: before[t] for t in remaining}, "after": {t: after[t] for t in remaining},
            "expected": remaining,
            "deleted_exactly_the_old": all(after[t] == remaining[t] for t in remaining)}


def per_thousand(grown: dict[str, int], empty: dict[str, int], runs: int,
                 tables: tuple[str, ...]) -> int:
    return round(sum(grown.get(t, 0) - empty.get(t, 0) for t in tables) * 1000 / runs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-runs", type=int, default=100)
    parser.add_argument("--factors", default="10,100")
    parser.add_argument("--record", action="store_true")
    options = parser.parse_args()
    factors = [int(f) for f in options.factors.split(",")]
    old_bin = ensure()
    work = Path(tempfile.mkdtemp(prefix="bench-upgrade-"))
    load = os.getloadavg()[0]
    pg = start_postgres()
    try:
        base = "prefect_old"
        pg.create_database(base)
        (work / "old-home").mkdir()
        port = free_port()
        empty_started = time.monotonic()
        with running(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                     server_env(pg, base, work / "old-home", old_bin), work / "old.log",
                     f"http://127.0.0.1:{port}/api/health"):
            print(f"prefect {OLD_PREFECT_VERSION} up on an empty database after "
                  f"{time.monotonic() - empty_started:.0f} s")
            empty = sizes(pg, base)
            api = Api(f"http://127.0.0.1:{port}/api")
            api("POST", "/work_pools/", {"name": "bench-upgrade", "type": "process"})
            filled_at = time.monotonic()
            fill(api, runs=options.api_runs, pool="bench-upgrade")
            events = wait_for_rows(pg, base, "events", options.api_runs * EVENTS)
            fill_s = time.monotonic() - filled_at
            api.close()
        print(f"{options.api_runs} runs through the API in {fill_s:.0f} s ({events} events)")
        databases: list[dict[str, Any]] = []
        for factor in factors:
            name = f"prefect_x{factor}"
            pg.sql(f'CREATE DATABASE "{name}" TEMPLATE "{base}"')
            multiply(pg, name, factor)
            before = row_counts(pg, name)
            grown = sizes(pg, name)
            seconds = migrate(server_env(pg, name, work, BIN), work / f"migrate-{name}.log")
            after = row_counts(pg, name)
            runs = before["flow_run"]
            figures = {
                "flow_runs": runs, "task_runs": before["task_run"], "logs": before["log"],
                "events": before["events"], "migration_s": round(seconds, 1),
                "bytes_before": grown["_database"],
                "bytes_after": sizes(pg, name)["_database"],
                "run_bytes_per_1000_runs": per_thousand(grown, empty, runs, RUN_TABLES),
                "event_bytes_per_1000_runs": per_thousand(grown, empty, runs, EVENT_TABLES),
                "rows_changed": changed(before, after),
                "rows_before": before,
            }
            databases.append(figures)
            print(f"{runs} runs, {figures['events']} events: migrated in {seconds:.1f} s; "
                  f"rows changed {figures['rows_changed']}")
        smallest = f"prefect_x{factors[0]}"
        retention = vacuum(pg, smallest, work)
        print(f"vacuum: {retention}")
    finally:
        pg.stop()
    record = {
        "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "load_1m": round(load, 1),
        "from_version": OLD_PREFECT_VERSION, "to_version": PREFECT_VERSION,
        "postgresql": pg_version(), "shape": SHAPE, "api_runs": options.api_runs,
        "api_fill_s": round(fill_s, 1), "empty_bytes": empty["_database"],
        "databases": databases, "vacuum": retention,
    }
    print(json.dumps(record))
    if options.record:
        RESULT.write_text(json.dumps(record, indent=2) + "\n")
        print(f"recorded {RESULT.relative_to(RESULTS.parent.parent)}")
    kept = all(not set(d["rows_changed"]) - NEW_TABLES for d in databases)
    return 0 if retention["deleted_exactly_the_old"] and kept else 1


def pg_version() -> str:
    from testbed.databases import _pg_bin

    out = subprocess.run([str(_pg_bin() / "postgres"), "--version"], capture_output=True,
                         text=True).stdout
    found = re.search(r"\d+\.\d+", out)
    return found.group(0) if found else out.strip()


if __name__ == "__main__":
    sys.exit(main())
