"""Session fixtures: real moto and Prefect servers, started once and stopped by PID."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import evaluations  # noqa: E402
from tests.harness import TEST_AUTH_STRING  # noqa: E402
from tests.servers import MotoServer, PrefectServer  # noqa: E402


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
    a user adds; tests that only read the result share it (tests/evaluations.py's cache)."""
    return evaluations.evaluated


@pytest.fixture
def moto(moto_server):
    """The session's moto server, emptied before each test that uses it."""
    moto_server.reset()
    yield moto_server

from tests.databases import postgres_server, redis_server  # noqa: E402,F401  (session fixtures)
