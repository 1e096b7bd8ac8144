"""Rung 3 for the in-VPC work pool: the declared `prefect-work-pool` container's command and
environment, run as ECS would run them (the auth string injected from `secrets`), against a real
Prefect server with basic auth: it creates the pool with the stack's template, finds it unchanged
the next time, puts back a pool edited behind the stack and says which fields drifted, and fails
clearly on a refused credential or an API that never answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest

from components.pool_bootstrap import CONTAINER_NAME
from tests.support.harness import TEST_AUTH_STRING, WORKER_TASK, pool_template
from tests.support.server_evaluations import containers, environment

pytestmark = pytest.mark.slow
AUTH = tuple(TEST_AUTH_STRING.split(":", 1))


def run_bootstrap(evaluation, api_url: str, auth_string: str = TEST_AUTH_STRING,
                  **overrides: str) -> tuple[subprocess.CompletedProcess, list[dict], str]:
    container = containers(evaluation, WORKER_TASK)[CONTAINER_NAME]
    name = f"pool-{uuid.uuid4().hex[:8]}"
    env = {**environment(container), "PREFECT_API_URL": api_url, "PREFECT_WORK_POOL_NAME": name,
           **overrides}
    # What ECS puts in from `secrets`, and nothing of the test runner's own Prefect settings.
    env["PREFECT_API_AUTH_STRING"] = auth_string
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    assert container["command"][:2] == ["python", "-c"]
    result = subprocess.run([sys.executable, "-c", container["command"][2]],
                            env={**base, **env}, capture_output=True, text=True, timeout=120)
    return result, [json.loads(line) for line in result.stdout.splitlines()], name


def pool(api_url: str, name: str) -> dict:
    response = httpx.get(f"{api_url}/work_pools/{name}", auth=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_bootstrap_creates_then_keeps_then_restores_the_declared_pool(
        evaluated, prefect_server_with_auth):
    evaluation = evaluated("selfhosted-dev")
    api = prefect_server_with_auth.api_url
    result, records, name = run_bootstrap(evaluation, api)
    assert result.returncode == 0, result.stdout + result.stderr
    assert records[-1]["message"] == "work pool created" and records[-1]["work_pool"] == name
    created = pool(api, name)
    assert created["type"] == "ecs"
    assert created["base_job_template"] == pool_template(evaluation)
    assert created["description"] == "ECS flow runs of prefect-ecs-worker-selfhosted-dev, managed by Pulumi"

    same, records, _ = run_bootstrap(evaluation, api, PREFECT_WORK_POOL_NAME=name)
    assert same.returncode == 0 and records[-1]["message"] == (
        "work pool matches the stack's declaration")

    edited = dict(created["base_job_template"])
    edited["variables"] = {**edited["variables"], "description": "edited in the UI"}
    patched = httpx.patch(f"{api}/work_pools/{name}", auth=AUTH, timeout=10,
                          json={"base_job_template": edited, "concurrency_limit": 3})
    assert patched.status_code == 204, patched.text
    restored, records, _ = run_bootstrap(evaluation, api, PREFECT_WORK_POOL_NAME=name)
    assert restored.returncode == 0
    assert records[-1]["level"] == "WARNING"
    assert records[-1]["drifted"] == ["base_job_template", "concurrency_limit"]
    after = pool(api, name)
    assert after["base_job_template"] == pool_template(evaluation)
    assert after["concurrency_limit"] is None


def test_a_refused_credential_fails_at_once_without_showing_it(evaluated, prefect_server_with_auth):
    result, records, _ = run_bootstrap(evaluated("selfhosted-dev"),
                                       prefect_server_with_auth.api_url, "prefect:wrong-password")
    assert result.returncode == 2
    assert records[-1] == {"level": "ERROR", "name": "prefect.work_pool_bootstrap",
                           "message": "the Prefect API refused the request",
                           "api": prefect_server_with_auth.api_url, "reason": "HTTP 401"}
    assert "wrong-password" not in result.stdout + result.stderr


def test_an_api_that_never_answers_fails_after_the_wait(evaluated):
    from testbed.servers import free_port

    result, records, _ = run_bootstrap(evaluated("selfhosted-dev"),
                                       f"http://127.0.0.1:{free_port()}/api",
                                       PREFECT_WORK_POOL_WAIT_SECONDS="6")
    assert result.returncode == 1
    # It retried (every 5 s) until the wait ran out; how many times depends on the machine.
    assert {r["message"] for r in records[:-1]} <= {"waiting for the Prefect API"}
    assert records[-1]["message"] == "the Prefect API did not answer in time"
    assert records[-1]["reason"] == "ConnectError"
