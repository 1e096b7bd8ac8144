"""The UI the stack serves, in a real browser: `make sandbox STACK=selfhosted-dev`, then Debian's
Chromium driven by Playwright (testbed/ui_check.py) through the path a user takes: the UI's URL,
its login page with the stack's basic auth (a wrong string refused, the stack's own accepted),
then the Work Pools and Runs pages from the sidebar. They must list the stack's pool and the
sample run, Completed, with no API call failing on the way: a wrong `PREFECT_UI_API_URL` or a
broken auth setting fails here.

Without Chromium the test skips, saying so; under CI (`CI=true`) it fails instead, since .ci/run
installs Chromium for this check.
"""

from __future__ import annotations

import os

import pytest

from testbed import ui_check
from testbed.platform_client import SandboxProcess

pytestmark = pytest.mark.slow

READY_WITHIN_S = 600


@pytest.fixture(scope="module")
def browser_available():
    reason = ui_check.missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser check: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def sandbox(browser_available, tmp_path_factory):
    running = SandboxProcess("selfhosted-dev", tmp_path_factory.mktemp("ui-sandbox"))
    try:
        running.wait_ready(READY_WITHIN_S)
        yield running
    finally:
        running.interrupt()


def test_the_ui_lists_the_stacks_pool_and_the_completed_sample_run_behind_basic_auth(
        sandbox, tmp_path):
    facts = sandbox.facts
    run = sandbox.call("GET", f"/flow_runs/{sandbox.sample_run_id()}")
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert sandbox.auth_string and facts["pool"] == "ecs-selfhosted-dev"
    flow = sandbox.call("GET", f"/flows/{run['flow_id']}")
    seen = ui_check.look(facts["ui"], sandbox.auth_string, facts["pool"], flow["name"],
                         run["name"], tmp_path / "runs.png")
    assert seen.login_page and seen.wrong_string_refused and seen.logged_in
    assert seen.pool_listed and seen.run_listed and seen.run_state == "Completed"
    assert seen.failed_api_calls == []
    assert (tmp_path / "runs.png").stat().st_size > 10_000
