"""`prefectServer: ha`, run from its declared task definitions on real PostgreSQL and Redis.

The stack is replayed into moto (RDS, ElastiCache, secrets, the cluster). PostgreSQL gets the RDS
instance's master user, database and managed-secret password (TLS only); Redis gets the AUTH
token of the stack's secret and serves TLS only, as ElastiCache with in-transit encryption. Every
process is a declared container started as ECS would (testbed/server_containers.py), in the order
the declarations promise:

1. each task's `prefect-migrate` first, all at once as ECS starts the services' tasks together
   (2 API tasks and 1 services task): an advisory lock must serialize them, and the schema must
   change exactly once;
2. then, as `dependsOn: SUCCESS` allows, two `prefect-api` (migrations off) and one
   `prefect-services`, all on Redis;
3. the worker task: `prefect-work-pool` upserts the pool, then one `prefect-worker` per API.

Flow runs created on either API are submitted as RunTask on moto, each exactly once; a flow run's
task-run events, sent to one API, reach the services through Redis, so the other API reads its
task run.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from components.server.server import MIGRATE_PROGRAM
from components.server.migrate import CA_BUNDLE_ENV
from testbed.databases import start_redis
from testbed.prefect_worker import api, basic_auth, deploy, wait_for, workers
from testbed.server_containers import (
    container_launch, desired_counts, families_by_role, find_container, resolve_value_from,
    serve_rds_master, server_evaluation,
)
from testbed.servers import BIN, free_port, stop, wait_for_http

pytestmark = pytest.mark.slow

MIGRATE_WITHIN_S = 300  # three serialized upgrades; measured 8 s + 2 x 4 s idle, 80 s loaded
HEALTHY_WITHIN_S = 240  # one API alone: ~10 s idle, 49 s at load 10 on 2 cores
ONLINE_WITHIN_S = 240  # ~2 s idle; the worker imports prefect-aws first (90 s was short at load 10)
RUNS = 6
RUN_TASK_WITHIN_S = 240
FAST_WORKER = {"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_HEARTBEAT_SECONDS": "2"}
# Every DDL statement with the time it ran: who changed the schema, and when.
DDL_AUDIT = """
CREATE SCHEMA IF NOT EXISTS ddl_audit;
CREATE TABLE ddl_audit.ddl (at double precision NOT NULL, tag text NOT NULL);
CREATE FUNCTION ddl_audit.record() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  INSERT INTO ddl_audit.ddl VALUES (extract(epoch FROM clock_timestamp()), tg_tag);
END $$;
CREATE EVENT TRIGGER record_ddl ON ddl_command_end EXECUTE FUNCTION ddl_audit.record();
"""


@pytest.fixture(scope="module")
def stack(moto_server):
    return deploy(server_evaluation("ha"), moto_server, prefect_api_url=None)


@pytest.fixture(scope="module")
def families(stack) -> dict[str, str]:
    return families_by_role(stack.evaluation)


@pytest.fixture(scope="module")
def database(stack, postgres_server):
    master = serve_rds_master(stack.replayed, postgres_server)
    postgres_server.sql(DDL_AUDIT, master.database)
    return master


@pytest.fixture(scope="module")
def redis(stack, families):
    _, api_container = find_container(stack.evaluation, "prefect-api")
    (token,) = [s["valueFrom"] for s in stack.replayed.real(api_container)["secrets"]
                if s["name"] == "PREFECT_REDIS_MESSAGING_PASSWORD"]
    server = start_redis(resolve_value_from(stack.replayed, token), tls=True)
    yield server
    server.stop()


def launch(stack, postgres_server, name: str, family: str, home: Path, redis=None,
           **endpoints: str):
    # The test PostgreSQL's own CA in place of the RDS root CAs: the one TLS seam.
    db = {"PREFECT_SERVER_DATABASE_HOST": "127.0.0.1",
          "PREFECT_SERVER_DATABASE_PORT": str(postgres_server.port),
          CA_BUNDLE_ENV: postgres_server.ca_file.read_text()}
    cache = {} if redis is None else {"PREFECT_REDIS_MESSAGING_HOST": redis.host,
                                      "PREFECT_REDIS_MESSAGING_PORT": str(redis.port)}
    extra = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if redis is not None:
        # The image trusts the public CAs that sign ElastiCache's certificate; here, the test's.
        extra["SSL_CERT_FILE"] = str(redis.ca_file)
    return container_launch(stack.evaluation, stack.replayed, name, family=family, home=home,
                            endpoints={**db, **cache, **endpoints}, extra_env=extra)


# A session blocked in pg_advisory_lock() is inside a statement, so it holds a snapshot; Prefect's
# migrations run CREATE INDEX CONCURRENTLY, which waits for every older snapshot (wait event
# "virtualxid"). The lock holder waits for its upgrade, the upgrade for the blocked sessions, they
# for the holder: a deadlock PostgreSQL cannot see (the holder's wait is outside the database).
DEADLOCK = """
SELECT count(*) FILTER (WHERE wait_event = 'advisory') > 0
   AND count(*) FILTER (WHERE wait_event = 'virtualxid') > 0
FROM pg_stat_activity WHERE datname = '{database}'
"""
# Whether the declared migration would wait for the lock inside a statement (see DEADLOCK).
BLOCKING_LOCK_WAIT = "SELECT pg_advisory_lock($1)" in MIGRATE_PROGRAM


@pytest.fixture(scope="module")
def migrations(stack, families, database, postgres_server, tmp_path_factory):
    """Every task's prefect-migrate, started together as ECS starts the services' tasks: one per
    API task and one for the services task. If they deadlock, the ones still waiting for the lock
    are stopped by PID (ECS would leave them hanging, and their tasks would never start), so the
    holder finishes and the tests after this one still have a migrated database."""
    desired = desired_counts(stack.evaluation)
    runs = []
    for role in ("api", "services"):
        for index in range(desired[families[role]]):
            home = tmp_path_factory.mktemp(f"migrate-{role}-{index}")
            runs.append(launch(stack, postgres_server, "prefect-migrate", families[role],
                               home).start_timed())
    deadlocked = False
    deadline = time.monotonic() + MIGRATE_WITHIN_S
    while any(run.process.poll() is None for run in runs) and time.monotonic() < deadline:
        if not deadlocked and postgres_server.sql(
                DEADLOCK.format(database=database.database), database.database) == "t":
            deadlocked = True
            for run in runs:
                if not any('"migrating"' in line for _, line in run.lines):
                    stop(run.process)
            # A backend blocked in a lock wait never notices its client is gone (measured: it
            # stays, and the deadlock with it), so end those sessions too.
            postgres_server.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                f"WHERE datname = '{database.database}' "
                                "AND wait_event = 'advisory'", database.database)
        time.sleep(1)
    activity = postgres_server.sql(
        "SELECT pid, wait_event, left(query, 40) FROM pg_stat_activity "
        f"WHERE datname = '{database.database}'", database.database)
    for run in runs:
        stop(run.process)  # past the deadline: stop by PID, report below
    codes = [run.wait(10) for run in runs]
    print(f"\nmigrations: codes {codes}, deadlocked {deadlocked}; still connected:\n{activity}")
    return runs, codes, deadlocked


def test_each_ha_task_runs_its_migration_first_and_starts_only_on_its_success(stack, families):
    for role in ("api", "services"):
        main, migrate = (find_container(stack.evaluation, name, families[role])[1]
                         for name in (f"prefect-{role}", "prefect-migrate"))
        assert main["dependsOn"] == [{"containerName": "prefect-migrate",
                                      "condition": "SUCCESS"}]
        assert migrate["essential"] is False and main["essential"] is True
        env = {e["name"]: e["value"] for e in main["environment"]}
        assert env["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"


def test_the_declared_migration_never_waits_for_its_lock_inside_a_statement():
    # A blocking pg_advisory_lock() deadlocks with the holder's CREATE INDEX CONCURRENTLY (see
    # DEADLOCK); the declared script polls pg_try_advisory_lock() between idle sleeps instead.
    assert not BLOCKING_LOCK_WAIT and "pg_try_advisory_lock($1)" in MIGRATE_PROGRAM


def test_concurrent_migrations_all_succeed_serialized_and_change_the_schema_once(
        migrations, database, postgres_server):
    runs, codes, deadlocked = migrations
    assert not deadlocked, "the migrations deadlocked (see DEADLOCK)"
    assert codes == [0] * len(runs), [run.log[-1500:] for run in runs]
    assert len(runs) == 3
    # The lock: each upgrade starts only after the one before it finished.
    intervals = sorted((run.at('"migrating"'), run.at('"migration finished"')) for run in runs)
    for (_, finished), (started, _) in itertools.pairwise(intervals):
        assert started >= finished - 0.05, intervals
    # Exactly once: every DDL statement ran inside the first upgrade, none in the later ones.
    ddl = [float(at) for at in postgres_server.sql(
        "SELECT at FROM ddl_audit.ddl ORDER BY at", database.database).split()]
    assert len(ddl) > 50, "the first upgrade creates Prefect's schema"
    first_start, first_end = intervals[0]
    assert first_start <= ddl[0] and ddl[-1] <= first_end, (intervals, ddl[0], ddl[-1])
    assert postgres_server.sql("SELECT count(*) FROM alembic_version", database.database) == "1"


@pytest.fixture(scope="module")
def servers(stack, families, migrations, redis, postgres_server, tmp_path_factory):
    """Two API processes and one services process, once every migration succeeded."""
    runs, codes, deadlocked = migrations
    assert not deadlocked and codes == [0] * len(runs), [r.log[-800:] for r in runs]
    started = []
    try:
        apis = []
        for index in range(desired_counts(stack.evaluation)[families["api"]]):
            home = tmp_path_factory.mktemp(f"api-{index}")
            api_launch = launch(stack, postgres_server, "prefect-api", families["api"], home,
                                redis)
            started.append(api_launch.start(home / "api.log"))
            apis.append((api_launch, started[-1], home / "api.log"))
        home = tmp_path_factory.mktemp("services")
        services_launch = launch(stack, postgres_server, "prefect-services",
                                 families["services"], home, redis)
        services = services_launch.start(home / "services.log")
        started.append(services)
        began = time.monotonic()
        for api_launch, process, log_path in apis:
            try:
                wait_for_http(f"{api_launch.api_url}/health", HEALTHY_WITHIN_S, process)
            except Exception:
                raise AssertionError(log_path.read_text(errors="replace")[-3000:]) from None
        print(f"\nboth prefect-api healthy {time.monotonic() - began:.1f} s after start")
        yield {"apis": apis, "services": (services_launch, services, home / "services.log")}
    finally:
        for process in started:
            stop(process)


def test_both_apis_serve_the_same_database_and_the_services_process_stays_up(servers):
    (first, *_), (second, *_) = servers["apis"]
    auth = basic_auth(first.env["PREFECT_SERVER_API_AUTH_STRING"])
    for api_launch in (first, second):
        assert "--no-services" in api_launch.command[-1]
        assert api(api_launch.api_url, "GET", "/ready") == {"message": "OK"}
    flow = api(first.api_url, "POST", "/flows/", {"name": "ha-shared"}, headers=auth)
    assert api(second.api_url, "GET", f"/flows/{flow['id']}", headers=auth)["name"] == "ha-shared"
    _, services, log_path = servers["services"]
    assert services.poll() is None, log_path.read_text(errors="replace")[-2000:]


@pytest.fixture(scope="module")
def worker_fleet(stack, families, servers, moto_server, postgres_server, tmp_path_factory):
    """The worker task as declared: prefect-work-pool first (exit 0), then one prefect-worker
    per API, each pointed at its own API."""
    apis = servers["apis"]
    home = tmp_path_factory.mktemp("work-pool")
    bootstrap = container_launch(
        stack.evaluation, stack.replayed, "prefect-work-pool", family=families["worker"],
        home=home, endpoints={"PREFECT_API_URL": apis[0][0].api_url})
    code, log = bootstrap.run(home / "work-pool.log", 120)
    assert code == 0, log[-2000:]
    moto_server.start_recording()
    started = []
    try:
        for index, (api_launch, *_) in enumerate(apis):
            home = tmp_path_factory.mktemp(f"worker-{index}")
            worker = container_launch(
                stack.evaluation, stack.replayed, "prefect-worker", family=families["worker"],
                home=home, aws_env=moto_server.client_env(), extra_env=FAST_WORKER,
                endpoints={"PREFECT_API_URL": api_launch.api_url,
                           "PREFECT_WORKER_WEBSERVER_PORT": str(free_port())})
            started.append((worker, worker.start(home / "worker.log"), home / "worker.log"))
        pool = stack.exports["workPoolName"]
        auth = basic_auth(apis[0][0].env["PREFECT_SERVER_API_AUTH_STRING"])

        def both_online():
            online = [w for w in workers(apis[0][0].api_url, pool, headers=auth)
                      if w["status"] == "ONLINE"]
            return online if len(online) == len(apis) else None

        wait_for("a worker ONLINE per API", both_online, ONLINE_WITHIN_S, started[0][2])
        yield {"pool": pool, "log": log, "workers": started}
    finally:
        for _, process, _ in started:
            stop(process)
        moto_server.stop_recording()


def create_run(api_url: str, pool: str, auth: dict[str, str], name: str) -> str:
    flow = api(api_url, "POST", "/flows/", {"name": "ha-smoke"}, headers=auth)
    deployment = api(api_url, "POST", "/deployments/", {
        "name": name, "flow_id": flow["id"], "work_pool_name": pool,
        "entrypoint": "flows.py:ha_smoke", "path": "/opt/flows"}, headers=auth)
    return api(api_url, "POST", f"/deployments/{deployment['id']}/create_flow_run", {},
               headers=auth)["id"]


def test_the_pool_bootstrap_created_the_pool_with_the_declared_template(worker_fleet, servers):
    (first, *_), _ = servers["apis"]
    assert "work pool created" in worker_fleet["log"]
    pool = api(first.api_url, "GET", f"/work_pools/{worker_fleet['pool']}",
               headers=basic_auth(first.env["PREFECT_SERVER_API_AUTH_STRING"]))
    assert pool["type"] == "ecs"
    assert "prefect_api_auth_string_secret_arn" in pool["base_job_template"]["variables"][
        "properties"]


def test_the_pool_bootstrap_created_the_stuck_run_automation_on_the_ha_server(
        worker_fleet, servers, stack):
    """The ha services task runs the triggers service that acts on it; the APIs store it."""
    (first, *_), _ = servers["apis"]
    assert "automation created" in worker_fleet["log"]
    (declared,) = [c for c in json.loads(stack.evaluation.one(
        "aws:ecs/taskDefinition:TaskDefinition", "worker-task").inputs["containerDefinitions"])
        if c["name"] == "prefect-work-pool"]
    name = json.loads({e["name"]: e["value"] for e in declared["environment"]}[
        "PREFECT_AUTOMATION_JSON"])["name"]
    (automation,) = api(first.api_url, "POST", "/automations/filter",
                        {"automations": {"name": {"any_": [name]}}},
                        headers=basic_auth(first.env["PREFECT_SERVER_API_AUTH_STRING"]))
    assert automation["enabled"] is True
    assert automation["trigger"]["match_related"]["prefect.resource.name"] == worker_fleet["pool"]


@pytest.fixture(scope="module")
def submitted(worker_fleet, servers, moto_server):
    apis = [a for a, *_ in servers["apis"]]
    auth = basic_auth(apis[0].env["PREFECT_SERVER_API_AUTH_STRING"])
    runs = [create_run(apis[i % len(apis)].api_url, worker_fleet["pool"], auth, f"ha-{i}")
            for i in range(RUNS)]

    def all_submitted():
        calls = moto_server.recorded("RunTask")
        return calls if len({flow_run_id(c) for c in calls} & set(runs)) == len(runs) else None

    calls = wait_for("a RunTask per flow run", all_submitted, RUN_TASK_WITHIN_S,
                     worker_fleet["workers"][0][2])
    time.sleep(2 * float(FAST_WORKER["PREFECT_WORKER_QUERY_SECONDS"]))  # late duplicates
    calls = moto_server.recorded("RunTask")
    ids = [flow_run_id(c) for c in calls]
    duplicates = len(ids) - len(set(ids))
    print(f"\nHA: {len(runs)} runs, {len(ids)} RunTask calls, {duplicates} duplicates")
    return {"runs": runs, "ids": ids, "duplicates": duplicates}


def flow_run_id(run_task: dict[str, Any]) -> str:
    (override,) = run_task["overrides"]["containerOverrides"]
    return {e["name"]: e["value"] for e in override["environment"]}["PREFECT__FLOW_RUN_ID"]


def test_runs_on_either_api_are_submitted_as_run_task_once_each(submitted, worker_fleet):
    assert sorted(submitted["ids"]) == sorted(submitted["runs"])
    assert submitted["duplicates"] == 0
    # Both workers stayed up; both reached moto (each serves the runs its API hands out).
    for _, process, log_path in worker_fleet["workers"]:
        assert process.poll() is None, log_path.read_text(errors="replace")[-2000:]


FLOW_WITH_A_TASK = """
from prefect import flow, task

@task
def add(a, b):
    return a + b

@flow(name="ha-events")
def ha_events():
    return add(1, 2)

print("FLOW_RUN", ha_events(return_state=True).state_details.flow_run_id)
"""


def test_a_flow_runs_task_run_events_reach_the_services_and_every_api_reads_it(servers,
                                                                               tmp_path):
    (first, *_), (second, *_) = servers["apis"]
    auth_string = first.env["PREFECT_SERVER_API_AUTH_STRING"]
    env = {"PREFECT_API_URL": second.api_url, "PREFECT_API_AUTH_STRING": auth_string,
           "PREFECT_HOME": str(tmp_path), "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PATH": f"{BIN}:/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", FLOW_WITH_A_TASK], env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    run_id = result.stdout.split("FLOW_RUN")[-1].split()[0]
    auth = basic_auth(auth_string)
    assert api(first.api_url, "GET", f"/flow_runs/{run_id}", headers=auth)["state"]["type"] \
        == "COMPLETED"

    def task_runs():
        found = api(first.api_url, "POST", "/task_runs/filter",
                    {"flow_runs": {"id": {"any_": [run_id]}}}, headers=auth)
        return found if found and found[0]["state"]["type"] == "COMPLETED" else None

    # The task run exists only once the services' recorder took its events off Redis.
    _, _, services_log = servers["services"]
    (task_run,) = wait_for("the task run recorded from its events", task_runs, 60, services_log)
    assert task_run["name"].startswith("add")
