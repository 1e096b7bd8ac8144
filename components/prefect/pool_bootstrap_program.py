"""The program the `prefect-work-pool` container runs (components/prefect/pool_bootstrap.py): upsert
the stack's work pool and stuck-Pending automation on the Prefect API, then exit 0.

It runs in the worker image as `python -c <this file's text>`, so it uses only the standard library
and httpx, which every Prefect image has. Its input is the environment:

- `PREFECT_API_URL`, `PREFECT_API_AUTH_STRING` (user:password, optional);
- `PREFECT_WORK_POOL_NAME`, `_DESCRIPTION`, `_CONCURRENCY_LIMIT`, `_WAIT_SECONDS`, and
  `PREFECT_WORK_POOL_TEMPLATE_GZIP_B64` (the base job template, gzip then base64);
- `PREFECT_AUTOMATION_JSON` (an `AutomationCreate` document, optional).

Exit codes: 0 done, 1 an API call failed or the API did not answer in time, 2 the API refused the
credential or is not a Prefect API. Each step logs one JSON line.

The stack's server has CSRF protection on: the program fetches a token for its own client id
first (`GET /csrf-token`) and sends it on every change, as Prefect's client does.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, NoReturn, Optional
from urllib.parse import quote

import httpx

# Answers that mean "starting, restarting or busy" (a 503 from a locked database, 429 a rate
# limit): retried. The stack's dynamic providers retry the same ones (components/prefect/api.py).
RETRY_STATUSES = (429, 502, 503, 504)
RETRY_SECONDS = 5
DEFAULT_WAIT_SECONDS = 900


def log(level: str, message: str, **extra: Any) -> None:
    print(json.dumps({"level": level, "name": "prefect.work_pool_bootstrap",
                      "message": message, **extra}), flush=True)


def fail(message: str, response: httpx.Response, **extra: Any) -> NoReturn:
    log("ERROR", message, status=response.status_code, body=response.text[:500], **extra)
    sys.exit(1)


def differs(declared: Any, live: Any) -> bool:
    """The server adds fields (ids, timestamps) and keeps sets (an automation's states) in its
    own order: only declared fields count, and a list of plain values is compared as a set."""
    if isinstance(declared, dict):
        return not isinstance(live, dict) or any(differs(v, live.get(k)) for k, v in declared.items())
    if isinstance(declared, list):
        if not isinstance(live, list) or len(declared) != len(live):
            return True
        if all(not isinstance(v, (dict, list)) for v in declared):
            return sorted(map(json.dumps, declared)) != sorted(map(json.dumps, live))
        return any(differs(a, b) for a, b in zip(declared, live, strict=True))
    return bool(declared != live)


@dataclass(frozen=True)
class Declaration:
    """What the environment declares: the API, the pool, the automation, the deadline."""

    api: str
    name: str
    pool: dict[str, Any]
    automation: Optional[dict[str, Any]]
    auth: Optional[tuple[str, str]]
    deadline: float

    @property
    def query(self) -> dict[str, Any]:
        return {"work_pools": {"name": {"any_": [self.name]}}}


def declaration(env: Mapping[str, str]) -> Declaration:
    limit = env.get("PREFECT_WORK_POOL_CONCURRENCY_LIMIT") or None
    user, _, password = env.get("PREFECT_API_AUTH_STRING", "").partition(":")
    return Declaration(
        api=env["PREFECT_API_URL"].rstrip("/"),
        name=env["PREFECT_WORK_POOL_NAME"],
        pool={
            "description": env.get("PREFECT_WORK_POOL_DESCRIPTION") or None,
            "base_job_template": json.loads(gzip.decompress(
                base64.b64decode(env["PREFECT_WORK_POOL_TEMPLATE_GZIP_B64"]))),
            "concurrency_limit": int(limit) if limit else None,
        },
        automation=json.loads(env.get("PREFECT_AUTOMATION_JSON") or "null"),
        auth=(user, password) if password else None,
        deadline=time.monotonic() + float(env.get("PREFECT_WORK_POOL_WAIT_SECONDS",
                                                  str(DEFAULT_WAIT_SECONDS))),
    )


def request(client: httpx.Client, declared: Declaration, method: str, path: str,
            **kwargs: Any) -> httpx.Response:
    """Until the deadline, an API that is starting, restarting or busy is waited for; a refused
    credential is not."""
    while True:
        try:
            response = client.request(method, path, **kwargs)
            reason = "HTTP %d" % response.status_code
            # 404 on the first call: the URL is not a Prefect API.
            if response.status_code in (401, 403) or (
                    response.status_code == 404 and path == "/work_pools/filter"):
                log("ERROR", "the Prefect API refused the request", api=declared.api,
                    reason=reason)
                sys.exit(2)
            if response.status_code not in RETRY_STATUSES:
                return response
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        if time.monotonic() > declared.deadline:
            log("ERROR", "the Prefect API did not answer in time", api=declared.api, reason=reason)
            sys.exit(1)
        log("INFO", "waiting for the Prefect API", api=declared.api, reason=reason)
        time.sleep(RETRY_SECONDS)


def upsert_pool(client: httpx.Client, declared: Declaration, found: httpx.Response) -> None:
    name = declared.name
    pools = [p for p in found.json() if p["name"] == name]
    if not pools:
        created = request(client, declared, "POST", "/work_pools/",
                          json={"name": name, "type": "ecs", **declared.pool})
        if created.status_code in (200, 201):
            log("INFO", "work pool created", work_pool=name)
            return
        if created.status_code != 409:  # 409: another worker task created it just now
            fail("creating the work pool failed", created, work_pool=name)
        pools = [p for p in request(client, declared, "POST", "/work_pools/filter",
                                    json=declared.query).json() if p["name"] == name]
    drifted = sorted(k for k, v in declared.pool.items() if pools[0].get(k) != v)
    if drifted:
        patched = request(client, declared, "PATCH", "/work_pools/" + quote(name, safe=""),
                          json=declared.pool)
        if patched.status_code not in (200, 204):
            fail("updating the work pool failed", patched, work_pool=name)
        log("WARNING", "work pool differed from the stack's declaration; put back",
            work_pool=name, drifted=drifted)
    else:
        log("INFO", "work pool matches the stack's declaration", work_pool=name)


def automations_named(client: httpx.Client, declared: Declaration,
                      automation: dict[str, Any]) -> list[dict[str, Any]]:
    """Worker tasks starting together may each create one: the oldest is the stack's."""
    found = request(client, declared, "POST", "/automations/filter",
                    json={"automations": {"name": {"any_": [automation["name"]]}}})
    if found.status_code != 200:
        fail("listing automations failed", found, automation=automation["name"])
    return sorted(found.json(), key=lambda a: (a["created"], a["id"]))


def upsert_automation(client: httpx.Client, declared: Declaration,
                      automation: dict[str, Any]) -> None:
    named = automations_named(client, declared, automation)
    message = None
    if not named:
        created = request(client, declared, "POST", "/automations/", json=automation)
        if created.status_code not in (200, 201):
            fail("creating the automation failed", created, automation=automation["name"])
        named = automations_named(client, declared, automation)
        message = "automation created"
    kept, extra = named[0], named[1:]
    for other in extra:  # a second copy would act on a run twice
        deleted = request(client, declared, "DELETE", "/automations/" + other["id"])
        if deleted.status_code not in (200, 202, 204, 404):
            fail("deleting a duplicate automation failed", deleted, automation=other["id"])
    drifted = sorted(k for k, v in automation.items() if differs(v, kept.get(k)))
    if drifted:
        updated = request(client, declared, "PUT", "/automations/" + kept["id"], json=automation)
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


def csrf_headers(client: httpx.Client, declared: Declaration) -> dict[str, str]:
    """A server with CSRF protection on (the stack's own: PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED)
    refuses POST/PUT/PATCH/DELETE without a token issued to a client id, as Prefect's own client
    fetches it; 422 (protection off) or 404 (an older server, Prefect Cloud): none needed."""
    client_id = str(uuid.uuid4())
    issued = request(client, declared, "GET", "/csrf-token", params={"client": client_id})
    if issued.status_code in (404, 422):
        return {}
    if issued.status_code != 200:
        fail("fetching a CSRF token failed", issued)
    return {"Prefect-Csrf-Token": issued.json()["token"], "Prefect-Csrf-Client": client_id}


def main(env: Mapping[str, str] = os.environ) -> None:
    declared = declaration(env)
    with httpx.Client(base_url=declared.api, auth=declared.auth, timeout=30) as client:
        client.headers.update(csrf_headers(client, declared))
        found = request(client, declared, "POST", "/work_pools/filter", json=declared.query)
        if found.status_code != 200:
            fail("listing work pools failed", found, work_pool=declared.name)
        upsert_pool(client, declared, found)
        if declared.automation is not None:
            upsert_automation(client, declared, declared.automation)


if __name__ == "__main__":
    main()
