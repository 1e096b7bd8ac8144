"""The tests' view of the mock engine (tools/mock_engine.py), plus what only tests need.

`evaluate` / `evaluate_stack` run `__main__.py` under `RecordingMocks` and return an `Evaluation`
(`.resources` of `Declared(type, name, inputs)`, `.one`, `.of_type`, `.exports`,
`.secret_exports`); `load_stack_config` merges a stack file over Pulumi.yaml's defaults.
"""

from __future__ import annotations

import json
from typing import Any

from tools.mock_engine import (  # noqa: F401  (re-exported for the tests)
    ACCOUNT, CLOUD_URL, PLACEHOLDER_API_KEY, PROJECT, REGION, ROOT, SECRET_SIG, WORK_POOL, Declared,
    Evaluation, RecordingMocks, evaluate, evaluate_stack, is_secret_input, load_stack_config,
    project_defaults, read_settings, read_yaml, stack_names, stack_settings, with_credentials,
    worker_container,
)

# The key every evaluated stack carries; tests look for it where it must never appear.
TEST_API_KEY = PLACEHOLDER_API_KEY
# What a self-hosted server with basic auth demands (`PREFECT_SERVER_API_AUTH_STRING`).
TEST_AUTH_STRING = "admin:test-auth-password"
# The worker's own task definition and service (a stack with a server declares more of each).
WORKER_TASK = "worker-task"
WORKER_SERVICE = "worker-service"


def policy(resource: Declared) -> dict[str, Any]:
    return json.loads(resource.inputs["policy"])


def stack_file_values(stack: str) -> dict[str, Any]:
    """The project keys a stack file sets, without the namespace, as YAML typed them."""
    config = (read_yaml(ROOT / f"Pulumi.{stack}.yaml") or {}).get("config", {})
    prefix = f"{PROJECT}:"
    return {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}


def pool_template(evaluation: Evaluation) -> dict[str, Any]:
    """The work pool's base job template as the stack declares it: the dynamic provider's input,
    or, with the stack's own server, what the worker task's `prefect-work-pool` container upserts."""
    pools = evaluation.of_type(WORK_POOL)
    if pools:
        return pools[0].inputs["base_job_template"]
    from components.prefect.pool_bootstrap import CONTAINER_NAME, decode_template

    containers = json.loads(evaluation.one(
        "aws:ecs/taskDefinition:TaskDefinition", WORKER_TASK).inputs["containerDefinitions"])
    (bootstrap,) = [c for c in containers if c["name"] == CONTAINER_NAME]
    env = {e["name"]: e["value"] for e in bootstrap["environment"]}
    return decode_template(env["PREFECT_WORK_POOL_TEMPLATE_GZIP_B64"])


def runs_server(stack: str) -> bool:
    """Whether the stack file runs its own Prefect server (prefectServer single or ha)."""
    return stack_file_values(stack).get("prefectServer", "none") != "none"


def worker_only_stack_names() -> list[str]:
    """The stacks whose worker uses an external Prefect API (prefectServer none)."""
    return [stack for stack in stack_names() if not runs_server(stack)]


def server_stack_names() -> list[str]:
    return [stack for stack in stack_names() if runs_server(stack)]
