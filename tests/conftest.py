"""Session fixtures: real moto and Prefect servers, started once and stopped by PID."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support import evaluations
from tests.support.harness import TEST_AUTH_STRING
from testbed.databases import Postgres, Redis, start_postgres, start_redis
from testbed.servers import MotoServer, PrefectServer

# Under CI=true a skip is a failure (tests/support/ci_skips.py).
pytest_plugins = ["tests.support.ci_skips"]


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def moto_server(server_dir):
    server = MotoServer(server_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prefect_server(server_dir):
    server = PrefectServer(server_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prefect_server_with_auth(tmp_path_factory):
    """A self-hosted server that, like Prefect Cloud, refuses requests without the right
    credential: HTTP basic auth with TEST_AUTH_STRING."""
    server = PrefectServer(tmp_path_factory.mktemp("prefect-with-auth"),
                           extra_env={"PREFECT_SERVER_API_AUTH_STRING": TEST_AUTH_STRING})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def evaluated():
    """Each stack file (with the same overrides) evaluated once per session, with the credentials
    a user adds; tests that only read the result share it (tests/support/evaluations.py's cache)."""
    return evaluations.evaluated


@pytest.fixture
def moto(moto_server):
    """The session's moto server, emptied before each test that uses it."""
    moto_server.reset()
    yield moto_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One PostgreSQL per session; tests isolate themselves with `create_database` or
    `rds_database`. Its superuser is `postgres`, so any other role name is free for a test.
    TLS only, as RDS with `rds.force_ssl`."""
    server = start_postgres(user="postgres", database="postgres", ssl=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """One Redis per session; tests isolate themselves by Redis database or key prefix."""
    server = start_redis()
    yield server
    server.stop()
