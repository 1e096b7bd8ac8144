"""The Prefect work pool (the dynamic provider): checked always, created given a server."""

from __future__ import annotations

from typing import Any
from components.prefect.stuck_run_automation import StuckRunAutomationProvider
from components.prefect.work_pool import WorkPoolProvider

from tools.mock_engine import WORK_POOL, Declared
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError


POOL_NOT_CREATED = (
    "not an AWS resource, and this replay has no Prefect server: its inputs passed the "
    "provider's check(); tests/integration/test_work_pool_provider.py runs its CRUD on a real server, and "
    "rung 3 (tests/integration/test_worker_on_prefect.py) replays it into one and runs the worker on it")


def work_pool(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    props = {key: inputs.get(key) for key in (
        "api_url", "name", "type", "description", "base_job_template", "concurrency_limit")}
    # `__provider` is the serialized provider (tests/unit/test_work_pool.py checks it holds no
    # credential); `pool_id` is an output the provider fills in.
    inputs.engine_side("__provider", "pool_id")
    created = _check_then_create(replay, resource, WorkPoolProvider(), props, POOL_NOT_CREATED)
    if created.get("created"):
        created["declared_api_url"] = props["api_url"]
    return created


def _check_then_create(replay: Replay, resource: Declared, provider: Any, props: dict[str, Any],
                       not_created: str) -> dict[str, Any]:
    """A dynamic provider's own check (what the engine runs at preview); then, given a Prefect
    server, its create there: the test's server stands in for the declared one."""
    failures = provider.check({}, props).failures
    if failures:
        raise ReplayError(resource, "check failed: " + "; ".join(
            f"{f.property}: expected {f.reason}" for f in failures))
    if replay.prefect_api_url is None:
        replay.not_created[(resource.type, resource.name)] = not_created
        return {"created": False}
    created = provider.create({**props, "api_url": replay.prefect_api_url})
    return {"created": True, "id": created.id, "outs": created.outs}


HANDLERS.update({
    WORK_POOL: work_pool,
})


# --- the stack's stuck-run automation (components/prefect/stuck_run_automation.py) -----------------------------

AUTOMATION = "pulumi-python:dynamic/prefect:Automation"
AUTOMATION_NOT_CREATED = (
    "not an AWS resource, and this replay has no Prefect server: its inputs passed the "
    "provider's check(); the run-recovery tests create it on a real server")


def automation(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    props = {"api_url": inputs.get("api_url"), "automation": inputs.get("automation")}
    inputs.engine_side("__provider", "automation_id")
    return _check_then_create(replay, resource, StuckRunAutomationProvider(), props,
                              AUTOMATION_NOT_CREATED)


HANDLERS[AUTOMATION] = automation
