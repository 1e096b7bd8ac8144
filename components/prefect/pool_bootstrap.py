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

def fail(message, response, **extra):
    log("ERROR", message, status=response.status_code, body=response.text[:500], **extra)
    sys.exit(1)

def differs(declared, live):
    # The server adds fields (ids, timestamps) and keeps sets (an automation's states) in its
    # own order: only declared fields count, and a list of plain values is compared as a set.
    if isinstance(declared, dict):
        return not isinstance(live, dict) or any(differs(v, live.get(k)) for k, v in declared.items())
    if isinstance(declared, list):
        if not isinstance(live, list) or len(declared) != len(live):
            return True
        if all(not isinstance(v, (dict, list)) for v in declared):
            return sorted(map(json.dumps, declared)) != sorted(map(json.dumps, live))
        return any(differs(a, b) for a, b in zip(declared, live))
    return declared != live

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
automation = json.loads(env.get("PREFECT_AUTOMATION_JSON") or "null")
user, _, password = env.get("PREFECT_API_AUTH_STRING", "").partition(":")
auth = (user, password) if password else None
deadline = time.monotonic() + float(env.get("PREFECT_WORK_POOL_WAIT_SECONDS", "900"))
query = {"work_pools": {"name": {"any_": [name]}}}

TRANSIENT = (429, 502, 503, 504)

def request(client, method, path, **kwargs):
    # Until the deadline, an API that is starting, restarting or busy (a 503 from a locked
    # database) is waited for; a refused credential is not.
    while True:
        try:
            response = client.request(method, path, **kwargs)
            reason = "HTTP %d" % response.status_code
            # 404 on the first call: the URL is not a Prefect API.
            if response.status_code in (401, 403) or (
                    response.status_code == 404 and path == "/work_pools/filter"):
                log("ERROR", "the Prefect API refused the request", api=api, reason=reason)
                sys.exit(2)
            if response.status_code not in TRANSIENT:
                return response
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        if time.monotonic() > deadline:
            log("ERROR", "the Prefect API did not answer in time", api=api, reason=reason)
            sys.exit(1)
        log("INFO", "waiting for the Prefect API", api=api, reason=reason)
        time.sleep(5)

def upsert_pool(client, found):
    pools = [p for p in found.json() if p["name"] == name]
    if not pools:
        created = request(client, "POST", "/work_pools/",
                          json={"name": name, "type": "ecs", **declared})
        if created.status_code in (200, 201):
            log("INFO", "work pool created", work_pool=name)
            return
        if created.status_code != 409:  # 409: another worker task created it just now
            fail("creating the work pool failed", created, work_pool=name)
        pools = [p for p in request(client, "POST", "/work_pools/filter", json=query).json()
                 if p["name"] == name]
    drifted = sorted(k for k, v in declared.items() if pools[0].get(k) != v)
    if drifted:
        patched = request(client, "PATCH", "/work_pools/" + quote(name, safe=""), json=declared)
        if patched.status_code not in (200, 204):
            fail("updating the work pool failed", patched, work_pool=name)
        log("WARNING", "work pool differed from the stack's declaration; put back",
            work_pool=name, drifted=drifted)
    else:
        log("INFO", "work pool matches the stack's declaration", work_pool=name)

def automations_named(client):
    found = request(client, "POST", "/automations/filter",
                    json={"automations": {"name": {"any_": [automation["name"]]}}})
    if found.status_code != 200:
        fail("listing automations failed", found, automation=automation["name"])
    # Worker tasks starting together may each create one: the oldest is the stack's.
    return sorted(found.json(), key=lambda a: (a["created"], a["id"]))

def upsert_automation(client):
    named = automations_named(client)
    if not named:
        created = request(client, "POST", "/automations/", json=automation)
        if created.status_code not in (200, 201):
            fail("creating the automation failed", created, automation=automation["name"])
        named = automations_named(client)
        message = "automation created"
    else:
        message = None
    kept, extra = named[0], named[1:]
    for other in extra:  # a second copy would act on a run twice
        deleted = request(client, "DELETE", "/automations/" + other["id"])
        if deleted.status_code not in (200, 202, 204, 404):
            fail("deleting a duplicate automation failed", deleted, automation=other["id"])
    drifted = sorted(k for k, v in automation.items() if differs(v, kept.get(k)))
    if drifted:
        updated = request(client, "PUT", "/automations/" + kept["id"], json=automation)
        if updated.status_code not in (200, 204):
            fail("updating the automation failed", updated, automation=automation["name"])
    extra_ids = [a["id"] for a in extra]
    if message:
        log("INFO", message, automation=automation["name"], id=kept["id"],
            duplicates_deleted=extra_ids)
    elif drifted or extra_ids:
        log("WARNING", "automation differed from the stack's declaration; put back",
            automation=automation["name"], id=kept["id"], drifted=drifted,
            duplicates_deleted=extra_ids)
    else:
        log("INFO", "automation matches the stack's declaration",
            automation=automation["name"], id=kept["id"])

with httpx.Client(base_url=api, auth=auth, timeout=30) as client:
    found = request(client, "POST", "/work_pools/filter", json=query)
    if found.status_code != 200:
        fail("listing work pools failed", found, work_pool=name)
    upsert_pool(client, found)
    if automation is not None:
        upsert_automation(client)
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
                        log_group_name: str, region: pulumi.Input[str],
                        automation: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The container definition of `prefect-work-pool` (values may be Outputs); with
    `automation` (an `AutomationCreate` document), it upserts that too."""
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
            *([{"name": "PREFECT_AUTOMATION_JSON",
                "value": json.dumps(automation, sort_keys=True, separators=(",", ":"))}]
              if automation is not None else []),
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
