"""The work pool and the stuck-Pending automation, upserted from inside the VPC when the stack
runs its own server.

An internal server is unreachable from a laptop or a CI runner, and a public one admits only
`serverAllowedCidrs`, so `pulumi up` must not call it. Instead the worker task carries a first,
non-essential container, `prefect-work-pool`: same image as the worker, it waits for the API
(up to `WAIT_SECONDS`), then creates the pool or patches it to the declared template, description
and concurrency limit, then does the same for the stack's stuck-Pending automation
(components/prefect/stuck_run_automation.py), and exits 0. The worker container starts only after it succeeded
(`dependsOn` condition `SUCCESS`), so the pool exists with the stack's template before any poll.

- One source of truth: the template is `FlowRunDefaults.base_job_template()`, the same value the
  dynamic provider (`components/prefect/work_pool.py`) sends when the API is reachable from the deploying
  machine (`prefectServer: none`). It travels gzip-compressed and base64-encoded in
  `PREFECT_WORK_POOL_TEMPLATE_GZIP_B64` (prefect-aws's template is ~30 KB of JSON; compressed it
  leaves the task definition far below ECS's 64 KiB limit).
- Drift stays visible: each worker start compares the pool on the server with the declaration and
  logs one JSON line naming the fields it put back (`"drifted": [...]`) in the worker's log group,
  stream prefix `work-pool`. A pool edited in the UI is reverted at the next worker start.
- The automation is found by its name. Worker tasks that start together may each create one; each
  then keeps the oldest and deletes the others (two copies would act on one run twice), so one
  remains. It travels as JSON in `PREFECT_AUTOMATION_JSON` (~2 KB).
- The credential comes through `secrets` (`PREFECT_API_AUTH_STRING`), as for the worker.

The program (components/prefect/pool_bootstrap_program.py) only uses the standard library and
httpx, which every Prefect image has; it can be run as is against any server
(`python -m components.prefect.pool_bootstrap_program` with the environment below).
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any, Optional

import pulumi

from components.platform.fargate import awslogs
from components.prefect import pool_bootstrap_program

CONTAINER_NAME = "prefect-work-pool"
STREAM_PREFIX = "work-pool"
# Soft memory reservation: the container exits before the worker starts.
MEMORY_RESERVATION = 128
WAIT_SECONDS = 900

# The container's program, a module of its own (linted, type-checked, unit-tested), sent as text.
PROGRAM = Path(pool_bootstrap_program.__file__).read_text()


def encode_template(template: dict[str, Any]) -> str:
    """Canonical JSON, gzip (mtime 0, so the same template always encodes the same), base64."""
    raw = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode()


def decode_template(encoded: str) -> dict[str, Any]:
    return json.loads(gzip.decompress(base64.b64decode(encoded)))


def bootstrap_container(*, image: str, api_url: str, work_pool_name: str, description: str,
                        concurrency_limit: Optional[int],
                        base_job_template: pulumi.Input[dict[str, Any]],
                        credential_env_name: str, credential_secret_arn: pulumi.Input[str],
                        log_group_name: str, region: pulumi.Input[str],
                        automation: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The container definition of `prefect-work-pool` (values may be Outputs); with
    `automation` (an `AutomationCreate` document), it upserts that too."""
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": False,
        "command": ["python", "-c", PROGRAM],
        "memoryReservation": MEMORY_RESERVATION,
        "environment": [
            {"name": "PREFECT_API_URL", "value": api_url},
            {"name": "PREFECT_WORK_POOL_NAME", "value": work_pool_name},
            {"name": "PREFECT_WORK_POOL_DESCRIPTION", "value": description},
            {"name": "PREFECT_WORK_POOL_CONCURRENCY_LIMIT",
             "value": str(concurrency_limit or "")},
            {"name": "PREFECT_WORK_POOL_WAIT_SECONDS", "value": str(WAIT_SECONDS)},
            {"name": "PREFECT_WORK_POOL_TEMPLATE_GZIP_B64",
             "value": pulumi.Output.from_input(base_job_template).apply(encode_template)},
            *([{"name": "PREFECT_AUTOMATION_JSON",
                "value": json.dumps(automation, sort_keys=True, separators=(",", ":"))}]
              if automation is not None else []),
        ],
        "secrets": [{"name": credential_env_name, "valueFrom": credential_secret_arn}],
        "logConfiguration": awslogs(log_group_name, region, STREAM_PREFIX),
    }
