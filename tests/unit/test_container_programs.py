"""The programs the containers run, as functions: the pool bootstrap's comparison, its reading of
the environment and its retries; the migration's lock. The containers run these files' text
(tests/integration/test_server_pool_bootstrap.py and the server container tests run it whole)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from components.prefect import pool_bootstrap_program as bootstrap
from components.prefect.api import RETRY_STATUSES
from components.prefect.pool_bootstrap import PROGRAM, encode_template
from components.server import migrate
from components.server.server import MIGRATE_PROGRAM
from tests.support.harness import ROOT


def test_the_containers_get_the_files_text():
    assert (ROOT / "components/prefect/pool_bootstrap_program.py").read_text() == PROGRAM
    assert (ROOT / "components/server/migrate.py").read_text() == MIGRATE_PROGRAM
    for text in (PROGRAM, MIGRATE_PROGRAM):
        assert text.rstrip().endswith(("main()", "asyncio.run(main()))"))


def test_the_providers_and_the_bootstrap_retry_the_same_answers():
    assert RETRY_STATUSES is bootstrap.RETRY_STATUSES and 503 in RETRY_STATUSES


@pytest.mark.parametrize("declared, live, differs", [
    ({"a": 1}, {"a": 1, "id": "x", "created": "t"}, False),  # server-added fields do not count
    ({"a": 1}, {"a": 2}, True),
    ({"states": ["b", "a"]}, {"states": ["a", "b"]}, False),  # plain lists compare as sets
    ({"states": ["a"]}, {"states": ["a", "b"]}, True),
    ({"actions": [{"type": "x"}]}, {"actions": [{"type": "y"}]}, True),
    ({"a": {"b": 1}}, None, True),
])
def test_only_declared_fields_count_as_drift(declared, live, differs):
    assert bootstrap.differs(declared, live) is differs


def environment(**extra: str) -> dict[str, str]:
    return {"PREFECT_API_URL": "http://server:4200/api/", "PREFECT_WORK_POOL_NAME": "pool",
            "PREFECT_WORK_POOL_TEMPLATE_GZIP_B64": encode_template({"variables": {}}),
            "PREFECT_WORK_POOL_CONCURRENCY_LIMIT": "", **extra}


def test_the_declaration_is_read_from_the_environment():
    declared = bootstrap.declaration(environment(
        PREFECT_API_AUTH_STRING="admin:pw", PREFECT_WORK_POOL_CONCURRENCY_LIMIT="5",
        PREFECT_AUTOMATION_JSON='{"name": "stuck"}', PREFECT_WORK_POOL_WAIT_SECONDS="10"))
    assert declared.api == "http://server:4200/api" and declared.auth == ("admin", "pw")
    assert declared.pool == {"description": None, "base_job_template": {"variables": {}},
                             "concurrency_limit": 5}
    assert declared.automation == {"name": "stuck"}
    assert 0 < declared.deadline - time.monotonic() <= 10
    assert bootstrap.declaration(environment()).auth is None


def client(answers: list[int]) -> tuple[httpx.Client, list[str]]:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(answers.pop(0) if answers else 200, json=[])

    return httpx.Client(base_url="http://server/api", transport=httpx.MockTransport(answer)), seen


def test_a_busy_api_is_waited_for_until_it_answers(monkeypatch):
    monkeypatch.setattr(bootstrap, "RETRY_SECONDS", 0)
    http, seen = client([503, 429, 200])
    response = bootstrap.request(http, bootstrap.declaration(environment()), "POST", "/work_pools/filter")
    assert response.status_code == 200 and len(seen) == 3


@pytest.mark.parametrize("status, code", [(401, 2), (403, 2), (404, 2), (503, 1)])
def test_a_refusal_stops_at_once_and_a_busy_api_at_the_deadline(monkeypatch, status, code):
    monkeypatch.setattr(bootstrap, "RETRY_SECONDS", 0)
    http, seen = client([status] * 3)
    declared = bootstrap.declaration(environment(PREFECT_WORK_POOL_WAIT_SECONDS="0"))
    with pytest.raises(SystemExit) as exited:
        bootstrap.request(http, declared, "POST", "/work_pools/filter")
    assert exited.value.code == code and len(seen) == 1


class Connection:
    """What `take_lock` asks of an asyncpg connection: the lock's answers, in turn."""

    def __init__(self, answers: list[bool]):
        self.answers, self.asked = answers, 0

    async def fetchval(self, query: str, lock: int) -> bool:
        assert query == "SELECT pg_try_advisory_lock($1)" and lock == migrate.MIGRATION_LOCK
        self.asked += 1
        return self.answers.pop(0)


def test_the_migration_polls_the_lock_without_blocking_in_a_statement(monkeypatch):
    monkeypatch.setattr(migrate, "LOCK_POLL_SECONDS", 0)
    connection = Connection([False, False, True])
    assert asyncio.run(migrate.take_lock(connection, wait_seconds=60)) is True
    assert connection.asked == 3
    assert asyncio.run(migrate.take_lock(Connection([False, False]), wait_seconds=0)) is False
