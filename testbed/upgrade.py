"""A Prefect database with years of data in it, for the upgrade and retention measurements.

    fill(api)                    # through an (older) server's REST API, in bulk: see SHAPE
    multiply(pg, database, 10)   # the same rows copied in SQL, 10 x (the larger database)
    row_counts(pg, database)     # every table's exact row count
    sizes(pg, database)          # bytes on disk per table (heap, indexes and TOAST)

The shape of one flow run is what a deployed flow like the repo's sample flows leaves: one flow
run in a terminal state, `TASK_RUNS` task runs, `LOG_LINES` log lines and `EVENTS` events (a flow
run and its task runs emit about that many state-change events). Around the runs: flows, a
deployment per flow on the stack's pool, blocks and variables. The API does the writing, so
every row is what the old server itself stores; `multiply` then copies those rows with new ids
(a run's task runs, states and logs follow it), which makes 10,000 runs in seconds instead of
minutes of API calls.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import httpx

from testbed.databases import Postgres
from testbed.servers import spawn, stop, wait_for_http

TASK_RUNS = 3
LOG_LINES = 6
EVENTS = 10
FLOWS = 5
BLOCKS = 3
VARIABLES = 5
BATCH = 500
SHAPE = {"task_runs_per_run": TASK_RUNS, "log_lines_per_run": LOG_LINES,
         "events_per_run": EVENTS}


@dataclass
class Filled:
    flows: list[str] = field(default_factory=list)
    deployments: list[str] = field(default_factory=list)
    flow_runs: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)


class Api:
    """A thread-safe REST client for one Prefect API (basic auth when given)."""

    def __init__(self, api_url: str, auth: Optional[str] = None, timeout: float = 60):
        user, _, password = (auth or "").partition(":")
        self.client = httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=timeout,
                                   auth=(user, password) if auth else None)

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        response = self.client.request(method, path.lstrip("/"), json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def close(self) -> None:
        self.client.close()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _completed() -> dict[str, Any]:
    return {"type": "COMPLETED", "name": "Completed"}


def _batches(items: list, size: int = BATCH) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def fill(api: Api, *, runs: int, pool: str, concurrency: int = 6, path: str = "/opt/flows",
         entrypoint: str = "flows.py:upgrade_smoke") -> Filled:
    """Flows, deployments on `pool` (their code at `path`), blocks, variables, then `runs` flow
    runs of the SHAPE."""
    filled = Filled()
    for index in range(FLOWS):
        flow = api("POST", "/flows/", {"name": f"upgrade-flow-{index}"})
        filled.flows.append(flow["id"])
        deployment = api("POST", "/deployments/", {
            "name": f"upgrade-{index}", "flow_id": flow["id"], "work_pool_name": pool,
            "entrypoint": entrypoint, "path": path,
            "parameters": {}, "tags": ["upgrade"]})
        filled.deployments.append(deployment["id"])
    (secret_type,) = [api("GET", "/block_types/slug/secret")]
    (schema, *_) = api("POST", "/block_schemas/filter",
                       {"block_schemas": {"block_type_id": {"any_": [secret_type["id"]]}}})
    for index in range(BLOCKS):
        block = api("POST", "/block_documents/", {
            "name": f"upgrade-secret-{index}", "block_type_id": secret_type["id"],
            "block_schema_id": schema["id"], "data": {"value": f"not-a-real-secret-{index}"}})
        filled.blocks.append(block["id"])
    for index in range(VARIABLES):
        variable = api("POST", "/variables/", {"name": f"upgrade_variable_{index}",
                                               "value": {"index": index}})
        filled.variables.append(variable["id"])

    def one_run(index: int) -> str:
        flow_index = index % FLOWS
        run = api("POST", "/flow_runs/", {
            "flow_id": filled.flows[flow_index], "deployment_id": filled.deployments[flow_index],
            "name": f"upgrade-run-{index}", "state": _completed()})
        for task in range(TASK_RUNS):
            api("POST", "/task_runs/", {
                "flow_run_id": run["id"], "task_key": f"upgrade-task-{task}",
                "dynamic_key": str(task), "name": f"upgrade-task-{task}-{index}",
                "state": _completed()})
        return run["id"]

    with ThreadPoolExecutor(concurrency) as pool_:
        filled.flow_runs = list(pool_.map(one_run, range(runs)))
    logs = [{"name": "prefect.flow_runs", "level": 20, "message": f"upgrade log line {line}",
             "timestamp": _now().isoformat(), "flow_run_id": run_id}
            for run_id in filled.flow_runs for line in range(LOG_LINES)]
    events = [{"id": str(uuid.uuid4()), "occurred": _now().isoformat(),
               "event": f"prefect.flow-run.upgrade-{index}",
               "resource": {"prefect.resource.id": f"prefect.flow-run.{run_id}",
                            "prefect.resource.name": f"upgrade-run-{run_id[:8]}"},
               "related": [{"prefect.resource.id": f"prefect.flow.{filled.flows[0]}",
                            "prefect.resource.role": "flow"}],
               "payload": {"index": index}}
              for run_id in filled.flow_runs for index in range(EVENTS)]
    with ThreadPoolExecutor(concurrency) as pool_:
        list(pool_.map(lambda batch: api("POST", "/logs/", batch), _batches(logs)))
        list(pool_.map(lambda batch: api("POST", "/events", batch), _batches(events)))
    return filled


# Table -> its columns that hold another copied table's id (the copy points at the copy).
COPIED = {
    "flow_run": {"state_id": "flow_run_state"},
    "flow_run_state": {"flow_run_id": "flow_run"},
    "task_run": {"flow_run_id": "flow_run", "state_id": "task_run_state"},
    "task_run_state": {"task_run_id": "task_run"},
    "log": {"flow_run_id": "flow_run", "task_run_id": "task_run"},
    "events": {},
    "event_resources": {"event_id": "events"},
}


def multiply(pg: Postgres, database: str, factor: int) -> None:
    """Each row of the COPIED tables `factor - 1` more times with new ids, as the superuser with
    foreign-key triggers off for the one transaction (the copies are consistent among
    themselves)."""
    if factor < 2:
        return
    statements = ["BEGIN", "SET LOCAL session_replication_role = replica"]
    for table in COPIED:
        key = "id"
        statements.append(
            f'CREATE TEMP TABLE "map_{table}" ON COMMIT DROP AS SELECT "{key}" AS old, '
            f'gen_random_uuid() AS new, g FROM "{table}", generate_series(1, {factor - 1}) g')
        statements.append(f'CREATE INDEX ON "map_{table}" (old, g)')
    for table, references in COPIED.items():
        columns = [c for c in pg.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
            f"AND table_name = '{table}' ORDER BY ordinal_position", database).split()]
        values = []
        for column in columns:
            if column == "id":
                values.append("m.new")
            elif column in references:
                other = references[column]
                values.append(f'(SELECT new FROM "map_{other}" x WHERE x.old = t."{column}" '
                              f'AND x.g = m.g)')
            elif column == "event_id" and table == "event_resources":
                values.append("m.new")
            else:
                values.append(f't."{column}"')
        names = ", ".join(f'"{c}"' for c in columns)
        statements.append(f'INSERT INTO "{table}" ({names}) SELECT {", ".join(values)} '
                          f'FROM "{table}" t JOIN "map_{table}" m ON m.old = t.id')
    statements.append("COMMIT")
    pg.sql(";\n".join(statements), database, timeout=1800)


def row_counts(pg: Postgres, database: str) -> dict[str, int]:
    tables = sorted(pg.tables(database))
    if not tables:
        return {}
    query = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM \"{t}\"" for t in tables)
    rows = pg.sql(query, database).splitlines()
    return {name: int(count) for name, count in (row.split("|") for row in rows)}


def sizes(pg: Postgres, database: str) -> dict[str, int]:
    """Bytes per table (pg_total_relation_size: heap, indexes, TOAST), and `_database`."""
    rows = pg.sql("SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables "
                  "WHERE schemaname = 'public'", database).splitlines()
    found = {name: int(size) for name, size in (row.split("|") for row in rows)}
    found["_database"] = int(pg.sql(f"SELECT pg_database_size('{database}')", database))
    return found


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


@contextmanager
def running(command: list[str], env: dict[str, str], log_path: Path, health_url: str,
            timeout: float = 300) -> Iterator[subprocess.Popen]:
    """A server process, healthy, stopped by its PID on the way out."""
    process = spawn(command, env, log_path)
    try:
        try:
            wait_for_http(health_url, timeout, process)
        except Exception:
            raise RuntimeError(log_path.read_text(errors="replace")[-3000:]) from None
        yield process
    finally:
        stop(process)


def wait_for_rows(pg: Postgres, database: str, table: str, at_least: int,
                  timeout: float = 180) -> int:
    """`table`'s row count once it reaches `at_least` (the event persister writes in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        count = int(pg.sql(f'SELECT count(*) FROM "{table}"', database))
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(1)


def backdate(pg: Postgres, database: str, hours: float) -> dict[str, int]:
    """Every other flow run ended, and every other event occurred, `hours` ago: what the vacuum
    must delete after a shorter retention. The counts it must leave."""
    pg.sql(f"""
        UPDATE flow_run SET end_time = now() - interval '{hours} hours'
        WHERE id IN (SELECT id FROM flow_run ORDER BY id LIMIT (SELECT count(*) / 2 FROM flow_run));
        UPDATE flow_run SET end_time = now() WHERE end_time IS NULL OR end_time > now() - interval '1 hour';
        UPDATE events SET occurred = now() - interval '{hours} hours'
        WHERE id IN (SELECT id FROM events ORDER BY id LIMIT (SELECT count(*) / 2 FROM events));
    """, database, timeout=600)
    old_runs = "SELECT id FROM flow_run WHERE end_time < now() - interval '1 hour'"
    return {
        "flow_run": int(pg.sql(f"SELECT count(*) FROM flow_run WHERE id NOT IN ({old_runs})",
                               database)),
        "task_run": int(pg.sql(f"SELECT count(*) FROM task_run WHERE flow_run_id NOT IN "
                               f"({old_runs})", database)),
        "log": int(pg.sql(f"SELECT count(*) FROM log WHERE flow_run_id NOT IN ({old_runs})",
                          database)),
        "events": int(pg.sql("SELECT count(*) FROM events WHERE occurred > now() - "
                             "interval '1 hour'", database)),
    }
