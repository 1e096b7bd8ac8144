"""The checked-in ECS template is exactly what the pinned prefect-aws produces."""

import importlib.util
from pathlib import Path

import pytest

from components.prefect.job_template import TEMPLATE_PATH, upstream_document
from tests.support.harness import ROOT


def _refresh_script():
    spec = importlib.util.spec_from_file_location(
        "refresh_job_template", ROOT / "scripts" / "refresh_job_template.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Imports prefect and prefect-aws (~3 s): runs with the real-parts tier, not the mock suite.
@pytest.mark.slow
def test_checked_in_template_equals_installed_prefect_aws():
    script = _refresh_script()
    assert Path(script.TEMPLATE_PATH) == TEMPLATE_PATH
    assert TEMPLATE_PATH.read_text() == script.render(script.upstream())


def test_template_records_the_pinned_prefect_aws_version():
    pins = dict(line.split("==") for line in (ROOT / "requirements-dev.txt").read_text().split()
                if "==" in line)
    assert upstream_document()["prefect_aws_version"] == pins["prefect-aws"]
