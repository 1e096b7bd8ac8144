"""`prefectServer: single`, run from its declared containers against a real PostgreSQL.

The stack is replayed into moto, so the RDS instance, its managed master secret, the server role's
secret and the auth-string secret exist with moto's ids and values. PostgreSQL gets what RDS would
create from the replayed instance: its master user (CREATEDB, CREATEROLE, no superuser) and
database, with the password the managed secret holds (TLS only, as `rds.force_ssl` makes it).
Then the task's containers run exactly as ECS would start them (testbed/server_containers.py),
in their declared order: `prefect-migrate` (the master's only user), then `prefect-server`. Their
command, environment and secrets (resolved from moto by their `valueFrom`; `<arn>:password::` is
one JSON key) are the declared ones; only the database endpoint, the listening address and the CA
the database is verified against (the test PostgreSQL's own, in place of the RDS root CAs) change.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from components.server.database import MASTER_USER, SERVER_USER
from components.server.migrate import CA_BUNDLE_ENV, MASTER_PASSWORD_ENV
from testbed.databases import self_signed_ca
from testbed.prefect_worker import csrf_headers, deploy
from testbed.server_containers import (
    container_launch, serve_rds_master, server_evaluation,
)
from testbed.servers import stop, wait_for_http

pytestmark = pytest.mark.slow

HEALTHY_WITHIN_S = 120  # measured 10-28 s on a loaded 2-core machine
MIGRATE_WITHIN_S = 240  # an upgrade of an empty database: 8 s idle, about 80 s loaded
WRONG_PASSWORD_EXIT_WITHIN_S = 90  # measured ~10 s: Prefect retries the connection, then exits
WRONG_CA_EXIT_WITHIN_S = 90


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
    return serve_rds_master(stack.replayed, postgres_server)


def app_secret(stack) -> dict:
    return json.loads(stack.replayed.client("secretsmanager").get_secret_value(
        SecretId=stack.exports["serverDbAppSecretArn"])["SecretString"])


def launch(stack, postgres_server, name, home, ca_file=None, **changes):
    """The declared container `name`, its database the test PostgreSQL, verified against that
    server's own CA (or `ca_file`): the CA text is the one seam, `DATABASE_CA_BUNDLE`."""
    return container_launch(
        stack.evaluation, stack.replayed, name, home=home,
        endpoints={"PREFECT_SERVER_DATABASE_HOST": "127.0.0.1",
                   "PREFECT_SERVER_DATABASE_PORT": str(postgres_server.port),
                   CA_BUNDLE_ENV: Path(ca_file or postgres_server.ca_file).read_text(),
                   **changes},
        extra_env={"PREFECT_SERVER_ANALYTICS_ENABLED": "false"})


def migrate(stack, postgres_server, home, **changes) -> tuple[int, str]:
    return launch(stack, postgres_server, "prefect-migrate", home, **changes).run(
        home.parent / f"{home.name}-migrate.log", MIGRATE_WITHIN_S)


@pytest.fixture(scope="module")
def migrated(stack, database, postgres_server, tmp_path_factory):
    """prefect-migrate ran first, as `dependsOn: SUCCESS` orders it."""
    code, log = migrate(stack, postgres_server, tmp_path_factory.mktemp("prefect-migrate-home"))
    assert code == 0, log[-3000:]
    return log


@pytest.fixture(scope="module")
def server(stack, migrated, postgres_server, tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server-home")
    server_launch = launch(stack, postgres_server, "prefect-server", home)
    log_path = home.parent / "prefect-server.log"
    started = time.monotonic()
    process = server_launch.start(log_path)
    try:
        wait_for_http(f"{server_launch.api_url}/health", HEALTHY_WITHIN_S, process)
    except Exception:
        stop(process)
        raise AssertionError(log_path.read_text(errors="replace")[-3000:]) from None
    healthy_after = time.monotonic() - started
    print(f"\nprefect-server healthy on PostgreSQL after {healthy_after:.1f} s")
    yield server_launch, process, log_path, healthy_after
    stop(process)


def basic(auth: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


def test_the_server_connects_as_its_own_role_and_only_migrate_holds_the_master_password(
        stack, database, server, postgres_server):
    server_launch, *_ = server
    declared = server_launch.declared_env
    # The declared endpoint and names are the replayed instance's; only the host/port were mapped.
    assert declared["PREFECT_SERVER_DATABASE_HOST"] == database.address
    assert declared["PREFECT_SERVER_DATABASE_PORT"] == str(database.port)
    assert declared["PREFECT_SERVER_DATABASE_USER"] == SERVER_USER != database.user == MASTER_USER
    assert declared["PREFECT_SERVER_DATABASE_NAME"] == database.database
    assert "PREFECT_SERVER_DATABASE_PASSWORD" not in declared
    secret = app_secret(stack)
    assert secret["username"] == SERVER_USER
    assert server_launch.env["PREFECT_SERVER_DATABASE_PASSWORD"] == secret["password"]
    assert database.password not in server_launch.env.values()
    assert MASTER_PASSWORD_ENV not in server_launch.secret_names
    migrate_launch = launch(stack, postgres_server, "prefect-migrate", Path("/nonexistent"))
    assert migrate_launch.env[MASTER_PASSWORD_ENV] == database.password
    # Every connection the running server holds is its role's, over TLS.
    rows = postgres_server.sql(
        "SELECT a.usename, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
        f"WHERE a.datname = '{database.database}' AND a.pid <> pg_backend_pid()")
    sessions = [tuple(row.split("|")) for row in rows.splitlines()]
    assert sessions and set(sessions) == {(SERVER_USER, "t")}, sessions


def test_the_role_owns_its_database_and_schema_and_nothing_more(server, database,
                                                                 postgres_server):
    owners = postgres_server.sql(
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public'", database.database)
    assert owners.split() == [SERVER_USER]
    assert postgres_server.sql(
        f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database.database}'"
    ) == SERVER_USER
    # Prefect's migrations created pg_trgm, as the database's owner (a trusted extension).
    assert postgres_server.sql("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'",
                               database.database) == "pg_trgm"
    attributes = postgres_server.sql(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin "
        f"FROM pg_roles WHERE rolname = '{SERVER_USER}'")
    assert attributes == "f|f|f|f|f|t"
    # A database the role does not own: a table the master made there is not readable.
    other = "other_app"
    postgres_server.sql(f'DROP DATABASE IF EXISTS "{other}"')
    postgres_server.create_database(other, owner=database.user)
    postgres_server.sql("CREATE TABLE private (secret text); INSERT INTO private VALUES ('x')",
                        other, user=database.user, password=database.password)
    password = postgres_server.sql  # psql as the server's role, with its declared password
    as_role = {"user": SERVER_USER, "password": server[0].env["PREFECT_SERVER_DATABASE_PASSWORD"],
               "check": False}
    assert "permission denied" in password("SELECT * FROM private", other, **as_role)
    assert "permission denied" in password("CREATE ROLE intruder", database.database, **as_role)
    assert "permission denied" in password("CREATE DATABASE intruder", database.database,
                                           **as_role)
    assert "must be owner" in password(f'ALTER DATABASE "{other}" OWNER TO {SERVER_USER}',
                                       database.database, **as_role)


def test_it_migrates_postgresql_and_never_falls_back_to_sqlite(server, database, postgres_server):
    server_launch, *_ = server
    tables = postgres_server.tables(database.database)
    assert {"alembic_version", "flow_run", "task_run", "work_pool", "events"} <= tables
    assert postgres_server.sql("SELECT count(*) FROM alembic_version", database.database) == "1"
    # Prefect's fallback would be $PREFECT_HOME/prefect.db: nothing may be there.
    assert not list(Path(server_launch.env["PREFECT_HOME"]).glob("*.db"))


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
    server_launch, *_ = server
    result = subprocess.run([sys.executable, "-c", SCHEMES], env=server_launch.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["postgresql+asyncpg", "sqlite+aiosqlite"]


def test_health_and_ready_answer_without_credentials_and_the_ui_is_served(server):
    server_launch, *_ = server
    base = server_launch.api_url[:-len("/api")]
    assert status(f"{server_launch.api_url}/health")[0] == 200
    assert status(f"{server_launch.api_url}/ready")[0] == 200
    code, page = status(f"{base}/")
    assert code == 200 and b"<!DOCTYPE html>" in page
    # The UI reads where the API is, and that it must fetch CSRF tokens, from its settings.
    code, settings = status(f"{base}/ui-settings")
    ui = json.loads(settings)
    assert code == 200 and ui["api_url"] == "/api" and ui["csrf_enabled"] is True


def test_basic_auth_is_enforced_with_the_generated_string(server, stack):
    server_launch, *_ = server
    auth = server_launch.env["PREFECT_SERVER_API_AUTH_STRING"]
    # The string is the stack's own secret in moto, generated, user:password.
    assert auth == stack.replayed.client("secretsmanager").get_secret_value(
        SecretId=stack.exports["credentialSecretArn"])["SecretString"]
    user, _, password = auth.partition(":")
    assert user and len(password) >= 32
    flows = f"{server_launch.api_url}/flows/filter"
    # A valid CSRF token, so that the credential alone decides (CSRF is checked first).
    csrf = csrf_headers(server_launch.api_url, basic(auth))

    def post(headers):
        request = urllib.request.Request(flows, method="POST", data=b"{}", headers={
            "Content-Type": "application/json", **csrf, **headers})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert post({}) == 401
    assert post(basic(f"{user}:wrong")) == 401
    assert post(basic(auth)) == 200
    assert status(f"{server_launch.api_url}/csrf-token?client=x")[0] == 401


def test_csrf_protection_refuses_a_change_without_a_token_the_server_issued(server):
    server_launch, *_ = server
    auth = basic(server_launch.env["PREFECT_SERVER_API_AUTH_STRING"])
    flows = f"{server_launch.api_url}/flows/"

    def post(headers):
        request = urllib.request.Request(flows, method="POST", data=b'{"name": "csrf"}',
                                         headers={"Content-Type": "application/json", **auth,
                                                  **headers})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    assert post({}) == (403, b'{"detail":"Missing CSRF token."}')
    issued = csrf_headers(server_launch.api_url, auth)
    assert set(issued) == {"Prefect-Csrf-Token", "Prefect-Csrf-Client"}
    assert post({**issued, "Prefect-Csrf-Token": "forged"})[0] == 403
    assert post({**issued, "Prefect-Csrf-Client": "another-client"})[0] == 403
    assert post(issued)[0] in (200, 201)


PREFECT_CLIENT = """
import asyncio
from prefect.client.orchestration import get_client
async def main():
    async with get_client() as client:
        flow_id = await client.create_flow_from_name("csrf-client")
        print(flow_id)
asyncio.run(main())
"""


def test_prefects_own_client_fetches_its_token_and_changes_what_it_may(server, tmp_path):
    """What the worker, flow runs and the services use: Prefect's client, CSRF support on by
    default (PREFECT_CLIENT_CSRF_SUPPORT_ENABLED)."""
    server_launch, *_ = server
    env = {"PATH": server_launch.env["PATH"], "HOME": str(tmp_path),
           "PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": server_launch.api_url,
           "PREFECT_API_AUTH_STRING": server_launch.env["PREFECT_SERVER_API_AUTH_STRING"]}
    result = subprocess.run([sys.executable, "-c", PREFECT_CLIENT], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    env["PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"] = "false"  # the check would see it break
    result = subprocess.run([sys.executable, "-c", PREFECT_CLIENT], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "403" in result.stderr


def test_healthy_within_the_start_period_the_health_check_allows(server):
    server_launch, _, _, healthy_after = server
    start_period = server_launch.container["healthCheck"]["startPeriod"]
    assert healthy_after < start_period, (healthy_after, start_period)


def test_a_database_certificate_from_another_ca_is_refused_by_migrate_and_server(
        stack, migrated, postgres_server, tmp_path):
    wrong_ca = self_signed_ca(tmp_path / "wrong-ca")
    started = time.monotonic()
    code, log = migrate(stack, postgres_server, tmp_path / "migrate", ca_file=wrong_ca)
    assert code != 0 and time.monotonic() - started < WRONG_CA_EXIT_WITHIN_S
    assert "the database's certificate is not signed by the RDS CA bundle" in log
    assert "certificate verify failed" in log
    server_launch = launch(stack, postgres_server, "prefect-server", tmp_path / "server",
                           ca_file=wrong_ca)
    code, log = server_launch.run(tmp_path / "server.log", WRONG_CA_EXIT_WITHIN_S)
    assert code != 0 and "certificate verify failed" in log


def test_a_changed_role_password_takes_effect_when_new_tasks_start(
        stack, server, database, postgres_server, tmp_path):
    """The redeploy path (components/server/rotation_redeploy.py): put a new value in the role's secret,
    start new tasks; their prefect-migrate sets the role's password, their server uses it."""
    secrets = stack.replayed.client("secretsmanager")
    arn = stack.exports["serverDbAppSecretArn"]
    old = app_secret(stack)
    new = {**old, "password": "rotated" + old["password"][7:][::-1]}
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(new))
    try:
        code, log = migrate(stack, postgres_server, tmp_path / "migrate")
        assert code == 0, log[-3000:]
        as_role = {"user": SERVER_USER, "check": False}
        assert postgres_server.sql("SELECT 1", database.database, password=new["password"],
                                   **as_role) == "1"
        assert "password authentication failed" in postgres_server.sql(
            "SELECT 1", database.database, password=old["password"], **as_role)
        assert new["password"] not in log and database.password not in log
        server_launch = launch(stack, postgres_server, "prefect-server", tmp_path / "server")
        process = server_launch.start(tmp_path / "server.log")
        try:
            wait_for_http(f"{server_launch.api_url}/ready", HEALTHY_WITHIN_S, process)
        finally:
            stop(process)
    finally:  # the module's server holds the first value
        secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(old))
        code, log = migrate(stack, postgres_server, tmp_path / "migrate-back")
        assert code == 0, log[-3000:]


def test_a_wrong_database_password_fails_clearly_and_never_logs_a_password(
        stack, migrated, database, postgres_server, tmp_path):
    server_launch = launch(stack, postgres_server, "prefect-server", tmp_path / "home",
                           PREFECT_SERVER_DATABASE_PASSWORD="not-the-rotated-one")
    code, log = server_launch.run(tmp_path / "wrong.log", WRONG_PASSWORD_EXIT_WITHIN_S)
    assert code != 0
    assert "password authentication failed" in log
    assert "not-the-rotated-one" not in log and database.password not in log


def test_a_database_the_master_migrated_before_is_handed_to_the_role(stack, database, migrated,
                                                                     postgres_server, tmp_path):
    """A stack deployed before the server had its own role: Prefect's schema exists, owned by the
    master. The declared prefect-migrate gives all of it to the role, then migrates as the role."""
    legacy = "prefect_before_roles"
    postgres_server.sql(f'DROP DATABASE IF EXISTS "{legacy}" WITH (FORCE)')
    postgres_server.create_database(legacy, owner=database.user)
    as_master = launch(stack, postgres_server, "prefect-migrate", tmp_path / "master",
                       PREFECT_SERVER_DATABASE_NAME=legacy,
                       PREFECT_SERVER_DATABASE_USER=database.user,
                       PREFECT_SERVER_DATABASE_PASSWORD=database.password)
    ca_file = Path(as_master.env["PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS_CA_FILE"])
    ca_file.write_text(as_master.env[CA_BUNDLE_ENV])
    upgraded = subprocess.run(["prefect", "server", "database", "upgrade", "-y"],
                              env=as_master.env, capture_output=True, text=True, timeout=600)
    assert upgraded.returncode == 0, upgraded.stdout[-2000:] + upgraded.stderr[-2000:]
    owned = ("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
             "WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = '{}'")
    assert int(postgres_server.sql(owned.format(database.user), legacy)) > 50

    code, log = migrate(stack, postgres_server, tmp_path / "migrate",
                        PREFECT_SERVER_DATABASE_NAME=legacy)
    assert code == 0, log[-3000:]
    assert postgres_server.sql(owned.format(database.user), legacy) == "0"
    assert int(postgres_server.sql(owned.format(SERVER_USER), legacy)) > 50
    # Enum and domain types and functions too; an extension's own members stay with it.
    for catalog, namespace, owner, kinds in (
            ("pg_type", "typnamespace", "typowner", "typtype IN ('e', 'd')"),
            ("pg_proc", "pronamespace", "proowner", "prokind IN ('f', 'p')")):
        left = postgres_server.sql(
            f"SELECT count(*) FROM {catalog} x JOIN pg_namespace n ON n.oid = x.{namespace} "
            f"WHERE n.nspname = 'public' AND {kinds} AND x.{owner} = '{database.user}'::regrole "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = x.oid "
            "AND d.deptype = 'e')", legacy)
        assert left == "0", catalog
    assert postgres_server.sql(
        f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{legacy}'"
    ) == SERVER_USER
