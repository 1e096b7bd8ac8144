"""An upgrade with data in it: Prefect 3.6.29 → the pinned 3.9.1 on real PostgreSQL, through the
`ha` stack's declared containers, keeping every row.

1. The stack is replayed into moto; PostgreSQL gets the RDS instance's master user and database.
   The older release (testbed/old_prefect.py, its own venv) serves it as the stack's server did
   before the upgrade: the declared database settings and auth string, migrating on start.
2. The declared worker task's `prefect-work-pool` creates the stack's pool (declared template) and
   stuck-run automation on it; flows, deployments, blocks and variables, and 100 flow runs of the
   SHAPE in testbed/upgrade.py go through its API, then SQL copies them to 1,000 runs (3,000 task
   runs, 6,000 log lines, 10,000 events).
3. An old API process (3.6.29, `--no-services`, as an `ha` API task of the old deployment) keeps
   answering reads while the declared `prefect-migrate` of the new API task migrates under it, and
   after.
4. Every table keeps its row count (the migration only adds empty tables); the pool and the
   automation read back as they were; then the declared `prefect-api` and `prefect-services` start
   on Redis, the worker task starts as declared, and a new run of an old deployment is submitted
   to ECS (moto) and, run as the task would run it, completes.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bench.upgrade import NEW_TABLES
from components.server.migrate import CA_BUNDLE_ENV
from testbed.databases import start_redis
from testbed.old_prefect import OLD_PREFECT_VERSION, ensure
from testbed.prefect_worker import api as rest, basic_auth, deploy, wait_for
from testbed.servers import BIN, free_port, stop, wait_for_http
from testbed.upgrade import (
    EVENTS, Api, fill, multiply, row_counts, running, wait_for_rows,
)
from testbed.server_containers import (
    container_launch, families_by_role, find_container, rds_master, resolve_value_from,
    serve_rds_master, server_evaluation,
)

pytestmark = pytest.mark.slow

API_RUNS, COPIES = 100, 10
HEALTHY_WITHIN_S = 300
MIGRATE_WITHIN_S = 900
RUN_WITHIN_S = 240
FAST_WORKER = {"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_HEARTBEAT_SECONDS": "2"}
# The flow an old deployment points at: a task and a log line, as the repo's sample flows.
FLOW_CODE = '''
from prefect import flow, get_run_logger, task

@task
def add(a, b):
    return a + b

@flow
def upgrade_smoke():
    get_run_logger().info("running after the upgrade")
    return add(1, 2)
'''


def unordered(value):
    """Lists of plain values as sets: the server keeps a trigger's event names in its own order."""
    if isinstance(value, dict):
        return {k: unordered(v) for k, v in value.items()}
    if isinstance(value, list):
        if all(isinstance(v, (str, int, float)) for v in value):
            return sorted(value)
        return [unordered(v) for v in value]
    return value


@pytest.fixture(scope="module")
def stack(moto_server):
    return deploy(server_evaluation("ha"), moto_server, prefect_api_url=None)


@pytest.fixture(scope="module")
def families(stack) -> dict[str, str]:
    return families_by_role(stack.evaluation)


@pytest.fixture(scope="module")
def database(stack, postgres_server):
    return serve_rds_master(stack.replayed, postgres_server)


def launch(stack, postgres_server, name, family, home, redis=None, **endpoints):
    # The test PostgreSQL's own CA in place of the RDS root CAs: the one TLS seam.
    db = {"PREFECT_SERVER_DATABASE_HOST": "127.0.0.1",
          "PREFECT_SERVER_DATABASE_PORT": str(postgres_server.port),
          CA_BUNDLE_ENV: postgres_server.ca_file.read_text()}
    cache = {} if redis is None else {"PREFECT_REDIS_MESSAGING_HOST": redis.host,
                                      "PREFECT_REDIS_MESSAGING_PORT": str(redis.port)}
    extra = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if redis is not None:
        extra["SSL_CERT_FILE"] = str(redis.ca_file)
    return container_launch(stack.evaluation, stack.replayed, name, family=family, home=home,
                            endpoints={**db, **cache, **endpoints}, extra_env=extra)


def old_server_env(stack, postgres_server, families, home: Path, *, services: bool
                   ) -> dict[str, str]:
    """What the stack's server ran with before this upgrade: the database's master user (the
    server role and its hand-over come with the new prefect-migrate), the declared database name
    and auth string, run by the old release as one process (in-memory broker) or as an API alone
    (`services=False`)."""
    declared = launch(stack, postgres_server, "prefect-api", families["api"], home)
    master = rds_master(stack.replayed)
    return {"PATH": f"{ensure()}:/usr/bin:/bin", "HOME": str(home), "PREFECT_HOME": str(home),
            "LANG": "C.UTF-8", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_DATABASE_DRIVER": declared.env["PREFECT_SERVER_DATABASE_DRIVER"],
            "PREFECT_SERVER_DATABASE_HOST": "127.0.0.1",
            "PREFECT_SERVER_DATABASE_PORT": str(postgres_server.port),
            "PREFECT_SERVER_DATABASE_NAME": declared.env["PREFECT_SERVER_DATABASE_NAME"],
            "PREFECT_SERVER_DATABASE_USER": master.user,
            "PREFECT_SERVER_DATABASE_PASSWORD": master.password,
            "PREFECT_SERVER_API_AUTH_STRING": declared.env["PREFECT_SERVER_API_AUTH_STRING"],
            "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "true" if services else "false"}


@pytest.fixture(scope="module")
def filled(stack, families, database, postgres_server, tmp_path_factory):
    """The old release's server, its pool and automation from the declared bootstrap, and data."""
    home = tmp_path_factory.mktemp("old-server")
    env = old_server_env(stack, postgres_server, families, home, services=True)
    auth = env["PREFECT_SERVER_API_AUTH_STRING"]
    port = free_port()
    flows_dir = tmp_path_factory.mktemp("flows")
    (flows_dir / "flows.py").write_text(FLOW_CODE)
    with running(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                 env, home / "old-server.log", f"http://127.0.0.1:{port}/api/health",
                 HEALTHY_WITHIN_S):
        api_url = f"http://127.0.0.1:{port}/api"
        version = rest(api_url, "GET", "/admin/version", headers=basic_auth(auth))
        assert version == OLD_PREFECT_VERSION
        bootstrap_home = tmp_path_factory.mktemp("work-pool-old")
        bootstrap = container_launch(
            stack.evaluation, stack.replayed, "prefect-work-pool", family=families["worker"],
            home=bootstrap_home, endpoints={"PREFECT_API_URL": api_url})
        code, log = bootstrap.run(bootstrap_home / "work-pool.log", 180)
        assert code == 0 and "work pool created" in log and "automation created" in log, log
        client = Api(api_url, auth)
        pool = stack.exports["workPoolName"]
        data = fill(client, runs=API_RUNS, pool=pool, path=str(flows_dir),
                    entrypoint="flows.py:upgrade_smoke")
        assert wait_for_rows(postgres_server, database.database, "events",
                             API_RUNS * EVENTS) >= API_RUNS * EVENTS
        before = {"pool": client("GET", f"/work_pools/{pool}"),
                  "automations": client("POST", "/automations/filter", {}),
                  "deployment": client("GET", f"/deployments/{data.deployments[0]}"),
                  "blocks": client("POST", "/block_documents/filter",
                                   {"include_secrets": False}),
                  "variables": client("POST", "/variables/filter", {})}
        client.close()
    multiply(postgres_server, database.database, COPIES)
    counts = row_counts(postgres_server, database.database)
    assert counts["flow_run"] == API_RUNS * COPIES and counts["task_run"] == 3 * API_RUNS * COPIES
    print(f"\nbefore the upgrade: {json.dumps({k: v for k, v in counts.items() if v})}")
    return {"data": data, "before": before, "counts": counts, "auth": auth,
            "flows_dir": flows_dir}


@pytest.fixture(scope="module")
def upgraded(stack, families, filled, database, postgres_server, tmp_path_factory):
    """The declared prefect-migrate of a new API task, while an old API task keeps serving."""
    home = tmp_path_factory.mktemp("old-api")
    env = old_server_env(stack, postgres_server, families, home, services=False)
    port = free_port()
    auth = basic_auth(filled["auth"])
    pool = stack.exports["workPoolName"]
    answers: list[tuple[str, float, int]] = []
    migrating = threading.Event()
    done = threading.Event()

    def read_all(phase: str) -> None:
        for path, body in ((f"/work_pools/{pool}", None), ("/flow_runs/filter", {"limit": 5}),
                           ("/deployments/filter", {"limit": 5}), ("/flows/filter", {"limit": 5})):
            try:
                rest(f"http://127.0.0.1:{port}/api", "GET" if body is None else "POST", path,
                     body, headers=auth, timeout=30)
                answers.append((phase, time.monotonic(), 200))
            except Exception as error:  # an HTTP error code, or no answer at all
                answers.append((phase, time.monotonic(), getattr(error, "code", 0)))

    def keep_reading() -> None:
        while not done.is_set():
            read_all("during" if migrating.is_set() else "before")
            time.sleep(0.5)

    with running(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
                  "--no-services"], env, home / "old-api.log",
                 f"http://127.0.0.1:{port}/api/health", HEALTHY_WITHIN_S):
        reader = threading.Thread(target=keep_reading, daemon=True)
        reader.start()
        migrate_home = tmp_path_factory.mktemp("migrate")
        migration = launch(stack, postgres_server, "prefect-migrate", families["api"],
                           migrate_home)
        migrating.set()
        started = time.monotonic()
        code, log = migration.run(migrate_home / "migrate.log", MIGRATE_WITHIN_S)
        seconds = time.monotonic() - started
        counts = row_counts(postgres_server, database.database)
        done.set()
        reader.join(60)
        read_all("after")
        old_write = None
        try:
            flow = rest(f"http://127.0.0.1:{port}/api", "POST", "/flows/",
                        {"name": "written-by-the-old-api"}, headers=auth)
            old_write = rest(f"http://127.0.0.1:{port}/api", "POST", "/flow_runs/",
                             {"flow_id": flow["id"], "name": "old-api-run"}, headers=auth)
        except Exception as error:
            old_write = {"error": getattr(error, "code", repr(error))}
    print(f"\nmigration {OLD_PREFECT_VERSION} -> 3.9.1: {seconds:.1f} s, exit {code}; old API "
          f"answers: {sorted({(p, c) for p, _, c in answers})}; old API write: "
          f"{'ok' if old_write and 'id' in old_write else old_write}")
    return {"code": code, "log": log, "seconds": seconds, "counts": counts, "answers": answers,
            "old_write": old_write}


def test_the_declared_migration_succeeds_on_the_filled_database(upgraded):
    assert upgraded["code"] == 0, upgraded["log"][-3000:]
    assert '"migration finished"' in upgraded["log"]


def test_every_table_keeps_every_row(filled, upgraded):
    before, after = filled["counts"], upgraded["counts"]  # after: right after the migration
    assert set(after) - set(before) == NEW_TABLES
    assert all(after[table] == 0 for table in NEW_TABLES)
    changed = {table: (count, after.get(table)) for table, count in before.items()
               if after.get(table) != count}
    assert changed == {}, changed
    assert before["events"] >= API_RUNS * COPIES * EVENTS and before["log"] == 6 * API_RUNS * COPIES


def test_old_api_tasks_keep_serving_reads_while_and_after_the_schema_changes(upgraded):
    """What a rolling deployment of ha relies on: the old API tasks stay in the target group
    until the new ones are healthy."""
    phases = {phase for phase, _, _ in upgraded["answers"]}
    assert {"during", "after"} <= phases, phases
    failures = [(phase, code) for phase, _, code in upgraded["answers"] if code != 200]
    assert failures == [], failures


@pytest.fixture(scope="module")
def redis(stack):
    _, api_container = find_container(stack.evaluation, "prefect-api")
    (token,) = [s["valueFrom"] for s in stack.replayed.real(api_container)["secrets"]
                if s["name"] == "PREFECT_REDIS_MESSAGING_PASSWORD"]
    server = start_redis(resolve_value_from(stack.replayed, token), tls=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def new_servers(stack, families, upgraded, redis, postgres_server, tmp_path_factory):
    assert upgraded["code"] == 0, upgraded["log"][-2000:]
    started = []
    try:
        home = tmp_path_factory.mktemp("api")
        api_launch = launch(stack, postgres_server, "prefect-api", families["api"], home, redis)
        api_process = api_launch.start(home / "api.log")
        started.append(api_process)
        services_home = tmp_path_factory.mktemp("services")
        services = launch(stack, postgres_server, "prefect-services", families["services"],
                          services_home, redis)
        started.append(services.start(services_home / "services.log"))
        try:
            wait_for_http(f"{api_launch.api_url}/health", HEALTHY_WITHIN_S, api_process)
        except Exception:
            raise AssertionError((home / "api.log").read_text(errors="replace")[-3000:]) from None
        yield api_launch
    finally:
        for process in started:
            stop(process)


def test_the_pool_automation_blocks_and_variables_read_back_as_they_were(filled, new_servers,
                                                                         stack):
    api_url, auth = new_servers.api_url, basic_auth(filled["auth"])
    before = filled["before"]
    pool = rest(api_url, "GET", f"/work_pools/{stack.exports['workPoolName']}", headers=auth)
    for key in ("id", "type", "base_job_template", "concurrency_limit", "description"):
        assert pool[key] == before["pool"][key], key
    automations = rest(api_url, "POST", "/automations/filter", {}, headers=auth)
    assert len(automations) == len(before["automations"]) == 1
    for key in ("id", "name", "enabled", "trigger", "actions"):
        assert unordered(automations[0][key]) == unordered(before["automations"][0][key]), key
    deployment = rest(api_url, "GET", f"/deployments/{filled['data'].deployments[0]}",
                      headers=auth)
    assert (deployment["work_pool_name"], deployment["entrypoint"]) == (
        before["deployment"]["work_pool_name"], before["deployment"]["entrypoint"])
    blocks = rest(api_url, "POST", "/block_documents/filter", {"include_secrets": False},
                  headers=auth)
    assert sorted(b["id"] for b in blocks) == sorted(b["id"] for b in before["blocks"])
    variables = rest(api_url, "POST", "/variables/filter", {}, headers=auth)
    assert {v["name"]: v["value"] for v in variables} == {
        v["name"]: v["value"] for v in before["variables"]}


def test_a_new_run_of_an_old_deployment_completes_through_the_declared_worker(
        stack, families, filled, new_servers, moto_server, tmp_path_factory):
    api_url, auth = new_servers.api_url, basic_auth(filled["auth"])
    home = tmp_path_factory.mktemp("work-pool-new")
    bootstrap = container_launch(stack.evaluation, stack.replayed, "prefect-work-pool",
                                 family=families["worker"], home=home,
                                 endpoints={"PREFECT_API_URL": api_url})
    code, log = bootstrap.run(home / "work-pool.log", 180)
    # The pool and automation survived as declared: the bootstrap finds nothing to put back.
    assert code == 0, log[-2000:]
    assert '"drifted": [' not in log.replace('"drifted": []', ""), log[-2000:]
    moto_server.start_recording()
    worker_home = tmp_path_factory.mktemp("worker")
    worker = container_launch(stack.evaluation, stack.replayed, "prefect-worker",
                              family=families["worker"], home=worker_home,
                              aws_env=moto_server.client_env(), extra_env=FAST_WORKER,
                              endpoints={"PREFECT_API_URL": api_url,
                                         "PREFECT_WORKER_WEBSERVER_PORT": str(free_port())})
    process = worker.start(worker_home / "worker.log")
    try:
        run_id = rest(api_url, "POST",
                      f"/deployments/{filled['data'].deployments[0]}/create_flow_run", {},
                      headers=auth)["id"]

        def submitted():
            for call in moto_server.recorded("RunTask"):
                (override,) = call["overrides"]["containerOverrides"]
                env = {e["name"]: e["value"] for e in override["environment"]}
                if env.get("PREFECT__FLOW_RUN_ID") == run_id:
                    return override
            return None

        override = wait_for("RunTask for the old deployment's new run", submitted,
                            RUN_WITHIN_S, worker_home / "worker.log")
    finally:
        stop(process)
        moto_server.stop_recording()
    # The flow-run container, as ECS would start it: its override command and environment.
    env = {e["name"]: e["value"] for e in override["environment"]}
    env.update({"PREFECT_API_URL": api_url, "PREFECT_API_AUTH_STRING": filled["auth"],
                "PREFECT_HOME": str(worker_home), "HOME": str(worker_home),
                "PATH": f"{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"})
    command = override.get("command") or ["prefect", "flow-run", "execute"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                            cwd=filled["flows_dir"])
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    state = rest(api_url, "GET", f"/flow_runs/{run_id}", headers=auth)["state"]
    assert state["type"] == "COMPLETED", state


def test_a_downgraded_server_image_fails_its_migration_and_leaves_the_schema(
        stack, families, upgraded, database, postgres_server, tmp_path):
    """An older serverImage than the schema: the declared prefect-migrate, run by the older
    release, exits non-zero (its alembic does not know the newer revision), so the task's main
    container never starts; the schema stays as the newer release left it."""
    assert upgraded["code"] == 0
    head = postgres_server.sql("SELECT version_num FROM alembic_version", database.database)
    migration = launch(stack, postgres_server, "prefect-migrate", families["api"], tmp_path)
    migration.env["PATH"] = f"{ensure()}:/usr/bin:/bin"  # the older image's python and prefect
    code, log = migration.run(tmp_path / "downgrade.log", MIGRATE_WITHIN_S)
    assert code != 0 and "Can't locate revision" in log, log[-2000:]
    assert postgres_server.sql("SELECT version_num FROM alembic_version",
                               database.database) == head
