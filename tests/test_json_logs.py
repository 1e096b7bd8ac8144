"""The worker logs one JSON object a line, from environment variables alone.

The fast test checks the variables against the logging.yml that the installed Prefect ships; the
slow ones start the real worker with the task definition's own command and environment against a
real Prefect server, make it submit a flow run, and parse what it printed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from components.worker import JSON_LOGGING_ENVIRONMENT
from tests.evaluations import evaluated
from tests.servers import BIN, free_port, spawn, stop, wait_for_http

# What the Prefect CLI prints with rich rather than through logging: start and stop banners and
# its signal notices. Everything else must be JSON.
CLI_LINES = ("Worker '", "Received SIGTERM", "Received SIGINT", "Sending SIGINT")


def prefect_logging_yml() -> dict:
    spec = importlib.util.find_spec("prefect")
    return yaml.safe_load((Path(spec.origin).parent / "logging" / "logging.yml").read_text())


def container_definition(stack: str = "dev") -> dict:
    task = evaluated(stack).one("aws:ecs/taskDefinition:TaskDefinition")
    return json.loads(task.inputs["containerDefinitions"])[0]


def test_json_variables_name_real_handlers_and_the_shipped_json_formatter():
    config = prefect_logging_yml()
    assert config["formatters"]["json"]["class"] == "prefect.logging.formatters.JsonFormatter"
    environment = dict(JSON_LOGGING_ENVIRONMENT)
    for handler in ("console", "debug"):
        # Prefect maps PREFECT_LOGGING_<PATH>_<KEY> onto the YAML path handlers.<name>.formatter.
        assert environment[f"PREFECT_LOGGING_HANDLERS_{handler.upper()}_FORMATTER"] == "json"
        assert "formatter" in config["handlers"][handler]
    assert environment["PREFECT_LOGGING_COLORS"] == "false"


def test_worker_container_environment_carries_the_json_settings():
    environment = {e["name"]: e["value"] for e in container_definition()["environment"]}
    assert dict(JSON_LOGGING_ENVIRONMENT).items() <= environment.items()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _json_lines(text: str) -> tuple[list[dict], list[str]]:
    records, others = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            others.append(line)
    return records, others


def _submission_ended(text: str) -> bool:
    return '"levelname":"ERROR"' in text or "submitted to infrastructure" in text


def container_env(server, tmp_path: Path, definition: dict, aws_env: dict[str, str]
                  ) -> dict[str, str]:
    """The task definition's environment, pointed at the local Prefect server and at moto."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_"))}
    env.update({e["name"]: e["value"] for e in definition["environment"]})
    env.update(server.client_env())
    env.update({
        "PREFECT_HOME": str(tmp_path / "home"),
        "PREFECT_WORKER_WEBSERVER_PORT": str(free_port()),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        **aws_env,
    })
    return env


@pytest.mark.slow
def test_real_worker_prints_every_log_record_as_one_json_line(prefect_server, moto_server,
                                                             tmp_path):
    definition = container_definition()
    # An empty moto: the cluster does not exist, so RunTask fails and the worker logs why.
    moto_server.reset()
    env = container_env(prefect_server, tmp_path, definition, moto_server.client_env())
    command = [str(BIN / definition["command"][0]), *definition["command"][1:]]
    pool = command[command.index("--pool") + 1]
    log_path = tmp_path / "worker.log"
    worker = spawn(command, env, log_path)
    try:
        wait_for_http(f"http://127.0.0.1:{env['PREFECT_WORKER_WEBSERVER_PORT']}/health", 60, worker)
        api = prefect_server.api_url
        # /health answers before the worker has created its pool.
        wait_for_http(f"{api}/work_pools/{pool}", 30, worker)
        flow = _post(f"{api}/flows/", {"name": "json-logs"})
        deployment = _post(f"{api}/deployments/", {"name": "json-logs", "flow_id": flow["id"],
                                                   "work_pool_name": pool})
        flow_run = _post(f"{api}/deployments/{deployment['id']}/create_flow_run", {})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _submission_ended(log_path.read_text()):
            time.sleep(0.5)
    finally:
        stop(worker)
    records, others = _json_lines(log_path.read_text())
    assert [line for line in others if not line.startswith(CLI_LINES)] == []
    about_run = [r for r in records if flow_run["id"] in json.dumps(r)]
    assert about_run, "the worker logged nothing about the flow run it picked up"
    assert all({"name", "levelname", "msg", "created"} <= r.keys() for r in records)
    assert any(r["name"].startswith("prefect") for r in about_run)
    # The fields the README's Logs Insights queries use.
    submitted = [r for r in about_run if "submitting flow run" in r["msg"]]
    assert submitted and submitted[0]["flow_run_id"] == flow_run["id"]
    assert submitted[0]["worker_name"] and submitted[0]["levelno"] == 20
    # A failure carries its traceback inside the JSON object, not on extra lines.
    assert any(r.get("exc_info") for r in records)


@pytest.mark.slow
def test_a_flow_run_with_the_workers_settings_logs_json_too(prefect_server, tmp_path):
    """The worker passes its PREFECT_* settings to the flow-run tasks it starts."""
    definition = container_definition()
    env = container_env(prefect_server, tmp_path, definition, {})
    program = (
        "from prefect import flow, get_run_logger\n"
        "@flow(name='json-logs-flow')\n"
        "def hello():\n"
        "    get_run_logger().info('hello from the flow')\n"
        "hello()\n"
    )
    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    records, others = _json_lines(result.stdout + result.stderr)
    assert others == []
    hello = [r for r in records if r.get("msg") == "hello from the flow"]
    assert hello and hello[0]["name"] == "prefect.flow_runs"
    assert hello[0]["flow_run_id"]
    assert any("Finished in state Completed" in r.get("msg", "") for r in records)
