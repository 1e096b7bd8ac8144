"""Rung 3 for the in-VPC work pool: the declared `prefect-work-pool` container's command and
environment, run as ECS would run them (the auth string injected from `secrets`), against a real
Prefect server with basic auth: it creates the pool with the stack's template, finds it unchanged
the next time, puts back a pool edited behind the stack and says which fields drifted, and fails
clearly on a refused credential or an API that never answers. The stack's stuck-Pending
automation goes the same way, and worker tasks starting together leave exactly one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from components.prefect.pool_bootstrap import CONTAINER_NAME
from tests.support.harness import TEST_AUTH_STRING, WORKER_TASK, pool_template
from tests.support.server_evaluations import containers, environment

pytestmark = pytest.mark.slow
AUTH = tuple(TEST_AUTH_STRING.split(":", 1))


def declared_automation(evaluation, name: str) -> dict:
    """The declared automation document, renamed so tests sharing a server do not meet."""
    container = containers(evaluation, WORKER_TASK)[CONTAINER_NAME]
    return {**json.loads(environment(container)["PREFECT_AUTOMATION_JSON"]), "name": name}


def run_bootstrap(evaluation, api_url: str, auth_string: str = TEST_AUTH_STRING,
                  **overrides: str) -> tuple[subprocess.CompletedProcess, list[dict], str]:
    container = containers(evaluation, WORKER_TASK)[CONTAINER_NAME]
    name = f"pool-{uuid.uuid4().hex[:8]}"
    automation = declared_automation(evaluation, f"automation-{uuid.uuid4().hex[:8]}")
    env = {**environment(container), "PREFECT_API_URL": api_url, "PREFECT_WORK_POOL_NAME": name,
           "PREFECT_AUTOMATION_JSON": json.dumps(automation), **overrides}
    # What ECS puts in from `secrets`, and nothing of the test runner's own Prefect settings.
    env["PREFECT_API_AUTH_STRING"] = auth_string
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    assert container["command"][:2] == ["python", "-c"]
    result = subprocess.run([sys.executable, "-c", container["command"][2]],
                            env={**base, **env}, capture_output=True, text=True, timeout=120)
    return result, [json.loads(line) for line in result.stdout.splitlines()], name


def pool_records(records: list[dict]) -> list[dict]:
    """The lines about the pool (the automation's follow them)."""
    return [r for r in records if "work_pool" in r]


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
    assert pool_records(records)[-1]["message"] == "work pool created"
    assert pool_records(records)[-1]["work_pool"] == name
    created = pool(api, name)
    assert created["type"] == "ecs"
    assert created["base_job_template"] == pool_template(evaluation)
    assert created["description"] == "ECS flow runs of prefect-ecs-worker-selfhosted-dev, managed by Pulumi"

    same, records, _ = run_bootstrap(evaluation, api, PREFECT_WORK_POOL_NAME=name)
    assert same.returncode == 0 and pool_records(records)[-1]["message"] == (
        "work pool matches the stack's declaration")

    edited = dict(created["base_job_template"])
    edited["variables"] = {**edited["variables"], "description": "edited in the UI"}
    patched = httpx.patch(f"{api}/work_pools/{name}", auth=AUTH, timeout=10,
                          json={"base_job_template": edited, "concurrency_limit": 3})
    assert patched.status_code == 204, patched.text
    restored, records, _ = run_bootstrap(evaluation, api, PREFECT_WORK_POOL_NAME=name)
    assert restored.returncode == 0
    assert pool_records(records)[-1]["level"] == "WARNING"
    assert pool_records(records)[-1]["drifted"] == ["base_job_template", "concurrency_limit"]
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


def automations_named(api_url: str, name: str) -> list[dict]:
    response = httpx.post(f"{api_url}/automations/filter", auth=AUTH, timeout=10,
                          json={"automations": {"name": {"any_": [name]}}})
    assert response.status_code == 200, response.text
    return response.json()


def test_worker_tasks_starting_together_leave_one_automation_as_declared(
        evaluated, prefect_server_with_auth):
    """Three tasks race to create it; each keeps the oldest and deletes the rest. An automation
    switched off or edited behind the stack is put back, with the fields named."""
    evaluation = evaluated("selfhosted-dev")
    api = prefect_server_with_auth.api_url
    name = f"automation-{uuid.uuid4().hex[:8]}"
    declared = declared_automation(evaluation, name)
    env = {"PREFECT_AUTOMATION_JSON": json.dumps(declared),
           "PREFECT_WORK_POOL_NAME": f"pool-{uuid.uuid4().hex[:8]}"}
    with ThreadPoolExecutor(3) as pool:
        raced = list(pool.map(lambda _: run_bootstrap(evaluation, api, **env), range(3)))
    assert all(result.returncode == 0 for result, _, _ in raced), [r.stdout for r, _, _ in raced]
    (kept,) = automations_named(api, name)
    assert kept["id"] in {r[-1]["id"] for _, r, _ in raced}
    (action,), (declared_action,) = kept["actions"], declared["actions"]
    assert kept["enabled"] is True
    assert {k: action[k] for k in declared_action} == declared_action
    trigger = kept["trigger"]
    assert trigger["match_related"] == declared["trigger"]["match_related"]
    assert sorted(trigger["expect"]) == sorted(declared["trigger"]["expect"])
    assert trigger["within"] == declared["trigger"]["within"]

    same, records, _ = run_bootstrap(evaluation, api, **env)
    assert same.returncode == 0
    assert records[-1]["message"] == "automation matches the stack's declaration"

    edited = {**declared, "enabled": False,
              "trigger": {**declared["trigger"], "within": 60}}
    put = httpx.put(f"{api}/automations/{kept['id']}", auth=AUTH, timeout=10, json=edited)
    assert put.status_code == 204, put.text
    restored, records, _ = run_bootstrap(evaluation, api, **env)
    assert restored.returncode == 0
    assert records[-1]["level"] == "WARNING" and records[-1]["drifted"] == ["enabled", "trigger"]
    (after,) = automations_named(api, name)
    assert after["id"] == kept["id"] and after["enabled"] is True
    assert after["trigger"]["within"] == declared["trigger"]["within"]
