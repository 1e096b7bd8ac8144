"""Replay of the stack's Prefect automation (components/run_recovery.py) next to its pool: its
inputs pass the provider's check; given a Prefect server, the provider creates it there."""

from __future__ import annotations

from typing import Any

from components.run_recovery import StuckRunAutomationProvider
from tests.replay import HANDLERS, Declared, Inputs, Replay, ReplayError

AUTOMATION = "pulumi-python:dynamic/prefect:Automation"
AUTOMATION_NOT_CREATED = (
    "not an AWS resource, and this replay has no Prefect server: its inputs passed the "
    "provider's check(); tests/test_run_recovery_*.py create it on a real server")


def automation(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    props = {"api_url": inputs.get("api_url"), "automation": inputs.get("automation")}
    inputs.engine_side("__provider", "automation_id")
    provider = StuckRunAutomationProvider()
    failures = provider.check({}, props).failures
    if failures:
        raise ReplayError(resource, "check failed: " + "; ".join(
            f"{f.property}: expected {f.reason}" for f in failures))
    if replay.prefect_api_url is None:
        replay.not_created[(resource.type, resource.name)] = AUTOMATION_NOT_CREATED
        return {"created": False}
    created = provider.create({**props, "api_url": replay.prefect_api_url})
    return {"created": True, "id": created.id, "outs": created.outs}


HANDLERS[AUTOMATION] = automation
