"""Under CI=true a skipped test fails: what the machine lacks must not pass as green.

Outside CI a test that cannot run here (no root for a mount namespace, no actionlint) skips with
its one-line reason. In CI (`CI=true`, as GitHub Actions and .ci/run set it) the same skip is
reported as a failure with that reason, so a CI that lost a tool or a privilege goes red instead
of quietly running fewer tests. Loaded by tests/conftest.py.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        reason = str(reason).removeprefix("Skipped: ")
        report.longrepr = f"skipped, and under CI=true every test must run: {reason}"
