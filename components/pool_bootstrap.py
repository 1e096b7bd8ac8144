"""The work pool, upserted from inside the VPC when the stack runs its own server.

An internal server is unreachable from a laptop or a CI runner, and a public one admits only
`serverAllowedCidrs`, so `pulumi up` must not call it. Instead the worker task carries a first,
non-essential container, `prefect-work-pool`: same image as the worker, it waits for the API
(up to `WAIT_SECONDS`), then creates the pool or patches it to the declared template, description
and concurrency limit, and exits 0. The worker container starts only after it succeeded
(`dependsOn` condition `SUCCESS`), so the pool exists with the stack's template before any poll.

- One source of truth: the template is `FlowRunDefaults.base_job_template()`, the same value the
  dynamic provider (`components/work_pool.py`) sends when the API is reachable from the deploying
  machine (`prefectServer: none`). It travels gzip-compressed and base64-encoded in
  `PREFECT_WORK_POOL_TEMPLATE_GZIP_B64` (prefect-aws's template is ~30 KB of JSON; compressed it
  leaves the task definition far below ECS's 64 KiB limit).
- Drift stays visible: each worker start compares the pool on the server with the declaration and
  logs one JSON line naming the fields it put back (`"drifted": [...]`) in the worker's log group,
  stream prefix `work-pool`. A pool edited in the UI is reverted at the next worker start.
- The credential comes through `secrets` (`PREFECT_API_AUTH_STRING`), as for the worker.

The script only uses the standard library and httpx, which every Prefect image has; it can be run
as is against any server (`python -c "$SCRIPT"` with the environment below).
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any, Optional

import pulumi

CONTAINER_NAME = "prefect-work-pool"
STREAM_PREFIX = "work-pool"
# Soft memory reservation: the container exits before the worker starts.
MEMORY_RESERVATION = 128
WAIT_SECONDS = 900

SCRIPT = r'''
import base64, gzip, json, os, sys, time
from urllib.parse import quote
import httpx

def log(level, message, **extra):
    print(json.dumps({"level": level, "name": "prefect.work_pool_bootstrap",
                      "message": message, **extra}), flush=True)

env = os.environ
api = env["PREFECT_API_URL"].rstrip("/")
name = env["PREFECT_WORK_POOL_NAME"]
limit = env.get("PREFECT_WORK_POOL_CONCURRENCY_LIMIT") or None
declared = {
    "description": env.get("PREFECT_WORK_POOL_DESCRIPTION") or None,
    "base_job_template": json.loads(gzip.decompress(
        base64.b64decode(env["PREFECT_WORK_POOL_TEMPLATE_GZIP_B64"]))),
    "concurrency_limit": int(limit) if limit else None,
}
user, _, password = env.get("PREFECT_API_AUTH_STRING", "").partition(":")
auth = (user, password) if password else None
deadline = time.monotonic() + float(env.get("PREFECT_WORK_POOL_WAIT_SECONDS", "900"))
query = {"work_pools": {"name": {"any_": [name]}}}
with httpx.Client(base_url=api, auth=auth, timeout=30) as client:
    while True:
        try:
            found = client.post("/work_pools/filter", json=query)
            if found.status_code == 200:
                break
            reason = "HTTP %d" % found.status_code
            if found.status_code in (401, 403, 404):
                log("ERROR", "the Prefect API refused the request", api=api, reason=reason)
                sys.exit(2)
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        if time.monotonic() > deadline:
            log("ERROR", "the Prefect API did not answer in time", api=api, reason=reason)
            sys.exit(1)
        log("INFO", "waiting for the Prefect API", api=api, reason=reason)
        time.sleep(5)
    pools = [p for p in found.json() if p["name"] == name]
    if not pools:
        created = client.post("/work_pools/", json={"name": name, "type": "ecs", **declared})
        if created.status_code in (200, 201):
            log("INFO", "work pool created", work_pool=name)
            sys.exit(0)
        if created.status_code != 409:  # 409: another worker task created it just now
            log("ERROR", "creating the work pool failed", work_pool=name,
                status=created.status_code, body=created.text[:500])
            sys.exit(1)
        pools = [p for p in client.post("/work_pools/filter", json=query).json()
                 if p["name"] == name]
    drifted = sorted(k for k, v in declared.items() if pools[0].get(k) != v)
    if drifted:
        patched = client.patch("/work_pools/" + quote(name, safe=""), json=declared)
        if patched.status_code not in (200, 204):
            log("ERROR", "updating the work pool failed", work_pool=name,
                status=patched.status_code, body=patched.text[:500])
            sys.exit(1)
        log("WARNING", "work pool differed from the stack's declaration; put back",
            work_pool=name, drifted=drifted)
    else:
        log("INFO", "work pool matches the stack's declaration", work_pool=name)
'''


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
                        log_group_name: str, region: pulumi.Input[str]) -> dict[str, Any]:
    """The container definition of `prefect-work-pool` (values may be Outputs)."""
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": False,
        "command": ["python", "-c", SCRIPT],
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
        ],
        "secrets": [{"name": credential_env_name, "valueFrom": credential_secret_arn}],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group_name,
                "awslogs-region": region,
                "awslogs-stream-prefix": STREAM_PREFIX,
            },
        },
    }
