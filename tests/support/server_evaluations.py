"""Helpers for the self-hosted server's tests: its exports, containers and configs."""

from __future__ import annotations

import json
from typing import Any

from components.server.composition import SERVER_EXPORTS as STACK_SERVER_EXPORTS
from tests.support.harness import Evaluation, load_stack_config, with_credentials

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
# What every stack with a server exports (serverUrl only with a load balancer).
SERVER_EXPORTS = set(STACK_SERVER_EXPORTS) - {"serverUrl"}


def server_config(base: str = "selfhosted-dev", **overrides: str) -> dict[str, str]:
    """A stack file's config with overrides, as `pulumi up` would see it (no API key or URL)."""
    return with_credentials(load_stack_config(base), **overrides)


def containers(evaluation: Evaluation, task_name: str) -> dict[str, dict[str, Any]]:
    """The containers of one declared task definition, by container name."""
    definitions = json.loads(evaluation.one(TASK_DEFINITION, task_name).inputs[
        "containerDefinitions"])
    return {c["name"]: c for c in definitions}


def all_containers(evaluation: Evaluation) -> dict[str, dict[str, Any]]:
    """Every container of every task definition, keyed `<task logical name>/<container>`."""
    found = {}
    for task in evaluation.of_type(TASK_DEFINITION):
        for container in json.loads(task.inputs["containerDefinitions"]):
            found[f"{task.name}/{container['name']}"] = container
    return found


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("environment", [])}


def secrets(container: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["valueFrom"] for s in container.get("secrets", [])}
