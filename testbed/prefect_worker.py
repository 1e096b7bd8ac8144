"""Rung 3's parts, shared by every test and benchmark that runs the worker: the stack deployed
into moto and a real Prefect server, and the worker container run as the stack declares it.

`deploy` replays what the program declared into moto and creates its work pool on the Prefect
server through the stack's own provider (testbed/replay/), so flow runs use the pool the stack
owns. `worker_launch` reads the worker container's `command`, `environment` and `secrets` from the
declared task definition and resolves each secret from (moto's) Secrets Manager by its `valueFrom`
ARN, as ECS does at task start. The Prefect REST helpers here use the HTTP API directly, so the
test process needs no Prefect client of its own.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from testbed.replay import Replay, real_exports, replay
from testbed.servers import BIN, MotoServer, free_port, spawn
from tools.mock_engine import Evaluation
from tools.mock_engine import worker_container as declared_worker_container

# Runs are created by the test and carry no code; the worker only launches them.
FLOW_NAME = "stack-smoke"


# What the Prefect CLI prints with rich rather than through logging: its start and stop banners
# and its signal notices. Every other line a worker prints is one JSON object.
CLI_LINES = ("Worker '", "Received SIGTERM", "Received SIGINT", "Sending SIGINT")


def json_log(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """A log's lines split into the JSON records and the lines that are not JSON."""
    records, others = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            others.append(line)
    return records, others


# The state types a flow run ends in.
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


def basic_auth(auth_string: Optional[str]) -> dict[str, str]:
    """The header a self-hosted server with `PREFECT_SERVER_API_AUTH_STRING` demands (none
    without a string)."""
    if not auth_string:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


# What Prefect's CSRF protection guards (PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED, on in the
# stack's own server): each such request carries a token the server issued to a client id.
CSRF_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_csrf_tokens: dict[tuple[str, str], dict[str, str]] = {}


def csrf_headers(api_url: str, headers: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The CSRF headers for this server and credential, fetched once as Prefect's client does;
    none when the server answers that protection is off (422) or has no such route (404)."""
    key = (api_url.rstrip("/"), (headers or {}).get("Authorization", ""))
    if key not in _csrf_tokens:
        client = str(uuid.uuid4())
        try:
            token = api(api_url, "GET", f"/csrf-token?client={client}", headers=headers)["token"]
        except urllib.error.HTTPError as error:
            if error.code not in (404, 422):
                raise
            _csrf_tokens[key] = {}
        else:
            _csrf_tokens[key] = {"Prefect-Csrf-Token": token, "Prefect-Csrf-Client": client}
    return _csrf_tokens[key]


def api(api_url: str, method: str, path: str, body: Any = None,
        headers: Optional[dict[str, str]] = None, timeout: float = 10) -> Any:
    csrf = csrf_headers(api_url, headers) if method in CSRF_METHODS else {}
    request = urllib.request.Request(
        f"{api_url.rstrip('/')}/{path.lstrip('/')}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {}), **csrf})
    for attempt in range(5):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = response.read()
            return json.loads(payload) if payload else None
        except urllib.error.HTTPError as error:
            # SQLite answers 503 while another writer holds the database: retry briefly.
            if error.code == 503 and attempt < 4:
                time.sleep(0.5 * (attempt + 1))
                continue
            error.msg = f"{error.msg}: {error.read()[:500].decode(errors='replace')}"
            raise


def workers(api_url: str, pool: str, headers: Optional[dict[str, str]] = None) -> list[dict]:
    return api(api_url, "POST", f"/work_pools/{pool}/workers/filter", {}, headers=headers)


def wait_online(api_url: str, pool: str, timeout: float, process=None,
                headers: Optional[dict[str, str]] = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"worker exited with {process.returncode} before going ONLINE")
        try:
            online = [w for w in workers(api_url, pool, headers) if w["status"] == "ONLINE"]
        except urllib.error.HTTPError as error:
            if error.code != 404:  # the pool appears when the worker creates it
                raise
            online = []
        if online:
            return online[0]
        time.sleep(0.2)
    raise AssertionError(f"no worker ONLINE in pool {pool!r} within {timeout}s")


def wait_for(what: str, probe: Callable[[], Any], timeout: float, log_path: Path,
             interval: float = 0.5) -> Any:
    """`probe()`'s first truthy answer; on timeout, an error with the tail of the worker's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else "(no log)"
    raise AssertionError(f"{what} did not happen within {timeout}s; worker log:\n{tail}")


def wait_for_log(log_path: Path, text: str, timeout: float) -> str:
    """The log once it holds `text`. The worker prints its start line just after its first
    heartbeat, so ONLINE can come first."""
    def holds_text() -> str:
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        return log if text in log else ""

    return wait_for(f"{text!r} in {log_path.name}", holds_text, timeout, log_path, interval=0.1)


def health_status(port: int) -> Optional[int]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, OSError):
        return None


def deploy_and_run(api_url: str, pool: str, job_variables: Optional[dict[str, Any]] = None,
                   name: str = "smoke") -> str:
    """A deployment on the pool (with these job variables, or none: the pool's defaults), and one
    run of it scheduled now."""
    flow = api(api_url, "POST", "/flows/", {"name": FLOW_NAME})
    deployment = api(api_url, "POST", "/deployments/", {
        "name": f"{pool}-{name}", "flow_id": flow["id"], "work_pool_name": pool,
        **({"job_variables": job_variables} if job_variables is not None else {}),
        "entrypoint": "flows.py:stack_smoke", "path": "/opt/flows",
    })
    return api(api_url, "POST", f"/deployments/{deployment['id']}/create_flow_run", {})["id"]


@dataclass
class Deployed:
    """The stack after `pulumi up`, on moto and a Prefect server: what was declared, what the
    replay created, and the stack outputs with moto's ids."""

    evaluation: Evaluation
    replayed: Replay
    exports: dict[str, Any]

    def pool(self, api_url: str) -> dict[str, Any]:
        return api(api_url, "GET", f"/work_pools/{self.exports['workPoolName']}")


def deploy(evaluation: Evaluation, moto: MotoServer, prefect_api_url: Optional[str]) -> Deployed:
    """Replay the declared stack into an emptied moto; with a Prefect server, its pool too."""
    moto.reset()
    replayed = replay(evaluation, moto.url, prefect_api_url=prefect_api_url)
    return Deployed(evaluation, replayed, real_exports(evaluation, replayed))


@dataclass
class WorkerLaunch:
    command: list[str]
    env: dict[str, str]
    health_port: int
    declared_env: dict[str, str]
    secret_names: list[str]

    def start(self, log_path: Path, new_session: bool = False) -> subprocess.Popen:
        return spawn(self.command, self.env, log_path, new_session=new_session)


def worker_container(evaluation: Evaluation, replayed: Replay) -> dict[str, Any]:
    """The worker's container definition as declared, with mock ids mapped to moto's."""
    return replayed.real(declared_worker_container(evaluation))


def worker_launch(evaluation: Evaluation, replayed: Replay, *, api_url: str, home: Path,
                  aws_env: dict[str, str], extra_env: Optional[dict[str, str]] = None,
                  secret_overrides: Optional[dict[str, str]] = None) -> WorkerLaunch:
    """The container's exact command and environment, and its secrets resolved as ECS would."""
    container = worker_container(evaluation, replayed)
    declared_env = {item["name"]: item["value"] for item in container["environment"]}
    env = dict(declared_env)
    secretsmanager = replayed.client("secretsmanager")
    for item in container.get("secrets", []):
        env[item["name"]] = secretsmanager.get_secret_value(SecretId=item["valueFrom"])["SecretString"]
    env.update(secret_overrides or {})
    health_port = free_port()
    env.update({
        # The declared URL is the stack's Prefect Cloud workspace, unreachable from here: the
        # test's own server stands in for it. Everything else is the declared value.
        "PREFECT_API_URL": api_url,
        # 8080 inside the task's own network namespace; a free loopback port here.
        "PREFECT_WORKER_WEBSERVER_PORT": str(health_port),
        # In ECS the task role supplies credentials and the endpoint is AWS; here, moto.
        **aws_env,
        # A container starts with an empty home; PATH finds the `prefect` the image would have.
        "PREFECT_HOME": str(home),
        "HOME": str(home),
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        **(extra_env or {}),
    })
    return WorkerLaunch(container["command"], env, health_port, declared_env,
                        [item["name"] for item in container.get("secrets", [])])
