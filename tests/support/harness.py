"""The tests' view of the mock engine (tools/mock_engine.py), plus what only tests need.

`evaluate` / `evaluate_stack` run `__main__.py` under `RecordingMocks` and return an `Evaluation`
(`.resources` of `Declared(type, name, inputs)`, `.one`, `.of_type`, `.exports`,
`.secret_exports`); `load_stack_config` merges a stack file over Pulumi.yaml's defaults.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from tools.mock_engine import (  # noqa: F401  (re-exported for the tests)
    ACCOUNT, CLOUD_URL, PLACEHOLDER_API_KEY, PROJECT, REGION, ROOT, SECRET_SIG, WORK_POOL, Declared,
    Evaluation, RecordingMocks, evaluate, evaluate_stack, is_secret_input, load_stack_config,
    project_defaults, stack_names, with_credentials, worker_container,
)

# The key every evaluated stack carries; tests look for it where it must never appear.
TEST_API_KEY = PLACEHOLDER_API_KEY
# What a self-hosted server with basic auth demands (`PREFECT_SERVER_API_AUTH_STRING`).
TEST_AUTH_STRING = "admin:test-auth-password"


def policy(resource: Declared) -> dict[str, Any]:
    return json.loads(resource.inputs["policy"])


def stack_file_values(stack: str) -> dict[str, Any]:
    """The project keys a stack file sets, without the namespace, as YAML typed them."""
    config = (yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}).get("config", {})
    prefix = f"{PROJECT}:"
    return {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
