"""The worker logs one JSON object a line, from environment variables alone.

These check the variables against the logging.yml that the installed Prefect ships and against
the declared container. The real worker's output is parsed where rung 3 already runs it
(tests/integration/test_worker_on_prefect.py): every line but the CLI's banners is JSON, a failed submission
carries its traceback inside its record, and the flow-run tasks' environment is checked there too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from components.platform.fargate import JSON_LOGGING_ENVIRONMENT
from tests.support.evaluations import evaluated
from tests.support.harness import worker_container


def prefect_logging_yml() -> dict:
    spec = importlib.util.find_spec("prefect")
    return yaml.safe_load((Path(spec.origin).parent / "logging" / "logging.yml").read_text())


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
    environment = {e["name"]: e["value"] for e in worker_container(evaluated("dev"))["environment"]}
    assert dict(JSON_LOGGING_ENVIRONMENT).items() <= environment.items()
