"""`prefectServer: single`, run from its declared container against a real PostgreSQL.

The stack is replayed into moto, so the RDS instance, its managed master secret and the auth-string
secret exist with moto's ids and values. PostgreSQL gets what RDS would create from the replayed
instance: its master user and database, with the password the managed secret holds (TLS only, as
`rds.force_ssl` makes it). Then `prefect-server` runs exactly as ECS would start it
(tests/support/server_containers.py): its command, its environment, its secrets resolved from moto by
their `valueFrom` (`<arn>:password::` is one JSON key), and only the database endpoint and the
listening address made local.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from testbed.prefect_worker import deploy
from tests.support.server_containers import container_launch, rds_master, server_evaluation
from testbed.servers import stop, wait_for_http

pytestmark = pytest.mark.slow

HEALTHY_WITHIN_S = 120  # measured 10-28 s on a loaded 2-core machine, migrations included
WRONG_PASSWORD_EXIT_WITHIN_S = 90  # measured ~10 s: Prefect retries the connection, then exits


def status(url: str, auth: str | None = None, method: str = "GET", body: bytes | None = None
           ) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(url, method=method, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def stack(moto_server):
    evaluation = server_evaluation("single")
    return deploy(evaluation, moto_server, prefect_api_url=None)


@pytest.fixture(scope="module")
def database(stack, postgres_server):
    master = rds_master(stack.replayed)
    postgres_server.rds_database(master.user, master.password, master.database)
    return master


def launch_server(stack, postgres_server, home, name="prefect-server", **changes):
    return container_launch(
        stack.evaluation, stack.replayed, name, home=home,
        endpoints={"PREFECT_SERVER_DATABASE_HOST": "127.0.0.1",
                   "PREFECT_SERVER_DATABASE_PORT": str(postgres_server.port), **changes},
        extra_env={"PREFECT_SERVER_ANALYTICS_ENABLED": "false"})


@pytest.fixture(scope="module")
def server(stack, database, postgres_server, tmp_path_factory):
    # The task's first container migrates; the server starts on its success (dependsOn).
    migrate_home = tmp_path_factory.mktemp("prefect-migrate-home")
    code, log = launch_server(stack, postgres_server, migrate_home, "prefect-migrate").run(
        migrate_home / "migrate.log", HEALTHY_WITHIN_S)
    assert code == 0, log[-3000:]
    home = tmp_path_factory.mktemp("prefect-server-home")
    launch = launch_server(stack, postgres_server, home)
    log_path = home.parent / "prefect-server.log"
    started = time.monotonic()
    process = launch.start(log_path)
    try:
        wait_for_http(f"{launch.api_url}/health", HEALTHY_WITHIN_S, process)
    except Exception:
        stop(process)
        raise AssertionError(log_path.read_text(errors="replace")[-3000:]) from None
    healthy_after = time.monotonic() - started
    print(f"\nprefect-server healthy on PostgreSQL after {healthy_after:.1f} s")
    yield launch, process, log_path, healthy_after
    stop(process)


def test_the_container_connects_as_the_rds_instance_says_with_the_secrets_json_key(stack, database,
                                                                                   server):
    launch, *_ = server
    declared = launch.declared_env
    # The declared endpoint and names are the replayed instance's; only the host/port were mapped.
    assert declared["PREFECT_SERVER_DATABASE_HOST"] == database.address
    assert declared["PREFECT_SERVER_DATABASE_PORT"] == str(database.port)
    assert declared["PREFECT_SERVER_DATABASE_USER"] == database.user
    assert declared["PREFECT_SERVER_DATABASE_NAME"] == database.database
    assert "PREFECT_SERVER_DATABASE_PASSWORD" not in declared
    (password,) = [s for s in launch.container["secrets"]
                   if s["name"] == "PREFECT_SERVER_DATABASE_PASSWORD"]
    assert password["valueFrom"] == f"{database.secret_arn}:password::"
    assert launch.env["PREFECT_SERVER_DATABASE_PASSWORD"] == database.password


def test_it_migrates_postgresql_and_never_falls_back_to_sqlite(server, database, postgres_server):
    launch, *_ = server
    tables = postgres_server.tables(database.database)
    assert {"alembic_version", "flow_run", "task_run", "work_pool", "events"} <= tables
    assert postgres_server.sql("SELECT count(*) FROM alembic_version", database.database) == "1"
    # Prefect's fallback would be $PREFECT_HOME/prefect.db: nothing may be there.
    assert not list(Path(launch.env["PREFECT_HOME"]).glob("*.db"))


SCHEMES = """
import os
from prefect.settings import Settings
def scheme():
    return Settings().server.database.connection_url.get_secret_value().split("://")[0]
print(scheme())
del os.environ["PREFECT_SERVER_DATABASE_DRIVER"]
print(scheme())
"""


def test_the_declared_environment_selects_postgresql_and_without_the_driver_sqlite(server):
    """The property, and that this check would see it break: the same environment without the
    driver silently resolves to SQLite (one process, settings read twice)."""
    launch, *_ = server
    result = subprocess.run([sys.executable, "-c", SCHEMES], env=launch.env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["postgresql+asyncpg", "sqlite+aiosqlite"]


def test_health_and_ready_answer_without_credentials_and_the_ui_is_served(server):
    launch, *_ = server
    base = launch.api_url[:-len("/api")]
    assert status(f"{launch.api_url}/health")[0] == 200
    assert status(f"{launch.api_url}/ready")[0] == 200
    code, page = status(f"{base}/")
    assert code == 200 and b"<!DOCTYPE html>" in page
    # The UI reads where the API is from its settings; PREFECT_UI_API_URL=/api keeps it relative.
    code, settings = status(f"{base}/ui-settings")
    assert code == 200 and b'"api_url":"/api"' in settings.replace(b" ", b"")


def test_basic_auth_is_enforced_with_the_generated_string(server, stack):
    launch, *_ = server
    auth = launch.env["PREFECT_SERVER_API_AUTH_STRING"]
    # The string is the stack's own secret in moto, generated, user:password.
    assert auth == stack.replayed.client("secretsmanager").get_secret_value(
        SecretId=stack.exports["credentialSecretArn"])["SecretString"]
    user, _, password = auth.partition(":")
    assert user and len(password) >= 32
    flows = f"{launch.api_url}/flows/filter"
    assert status(flows, method="POST", body=b"{}")[0] == 401
    assert status(flows, f"{user}:wrong", method="POST", body=b"{}")[0] == 401
    assert status(flows, auth, method="POST", body=b"{}")[0] == 200


def test_healthy_within_the_start_period_the_health_check_allows(server):
    launch, _, _, healthy_after = server
    start_period = launch.container["healthCheck"]["startPeriod"]
    assert healthy_after < start_period, (healthy_after, start_period)


def test_a_wrong_database_password_fails_clearly_and_never_logs_a_password(
        stack, database, postgres_server, tmp_path):
    launch = launch_server(stack, postgres_server, tmp_path / "home",
                           PREFECT_SERVER_DATABASE_PASSWORD="not-the-rotated-one")
    code, log = launch.run(tmp_path / "wrong.log", WRONG_PASSWORD_EXIT_WITHIN_S)
    assert code != 0
    assert "password authentication failed" in log
    assert "not-the-rotated-one" not in log and database.password not in log
