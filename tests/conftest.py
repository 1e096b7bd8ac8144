"""Session fixtures: real moto and Prefect servers, started once and stopped by PID."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import evaluations
from tests.support.harness import TEST_AUTH_STRING
from testbed.databases import Postgres, Redis, start_postgres, start_redis
from testbed.servers import MotoServer, PrefectServer

# Under CI=true a skip is a failure (tests/support/ci_skips.py); pytester runs a sample suite
# in-process for the test of that rule.
pytest_plugins = ["tests.support.ci_skips", "pytester"]


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is loaded by now (pytest, the test modules and what they import) lives to the end of the
    session: freeze it, so that no garbage collection scans it again."""
    gc.collect()
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session is over and its fixtures are torn down: freeze what is left, so that the
    interpreter's exit does not collect it. After a single stack evaluation, exiting took 0.5 s
    that way (0.03 s frozen), and xdist waits for each worker to exit."""
    gc.freeze()


@pytest.fixture(scope="session", autouse=True)
def _evaluations_shared_between_workers(request, tmp_path_factory) -> None:
    """Under xdist, one evaluation of a stack for the whole run: the workers' temporary
    directories share a parent, which pytest removes with its old runs."""
    if hasattr(request.config, "workerinput"):
        evaluations.share_between_workers(tmp_path_factory.getbasetemp().parent / "evaluations")


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
