"""`make sandbox STACK=selfhosted-dev`: the stack's own Prefect server (its declared containers on
local PostgreSQL) with its worker, run as a user runs it, once for all of these checks:

- the sample run Completed in a flow-run task of its own, which logged the flow's line;
- the UI the stack serves, in a real browser: Debian's Chromium driven by Playwright
  (testbed/ui_check.py) through the path a user takes: the UI's URL, its login page with the
  stack's basic auth (a wrong string refused, the stack's own accepted), then the Work Pools and
  Runs pages from the sidebar. They must list the stack's pool and the sample run, Completed, with
  no API call failing on the way: a wrong `PREFECT_UI_API_URL` or a broken auth setting fails here;
- Ctrl-C stops every process it started (the server's, the database's and the tasks') and frees
  every port.

Without Chromium the browser check skips, saying so; under CI (`CI=true`) it fails instead, since
.ci/run installs Chromium for this check. `--once` and the interactive checks for `dev` are in
tests/integration/test_local_platform.py.
"""

from __future__ import annotations

import os

import pytest

from testbed import ui_check
from tests.support.sandbox_checks import assert_ctrl_c_leaves_nothing, running_sandbox

pytestmark = pytest.mark.slow

STACK = "selfhosted-dev"
READY_WITHIN_S = 600


@pytest.fixture(scope="module")
def browser_available():
    reason = ui_check.missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser check: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with running_sandbox(STACK, tmp_path_factory.mktemp("selfhosted-sandbox"),
                         READY_WITHIN_S) as running:
        yield running


def test_the_sample_run_completes_in_a_flow_run_task_of_its_own(sandbox):
    run = sandbox.call("GET", f"/flow_runs/{sandbox.sample_run_id()}")
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["work_pool_name"] == sandbox.facts["pool"] == "ecs-selfhosted-dev"
    # The flow's own log line, from the task the worker started through the emulator's RunTask.
    task_logs = list((sandbox.state_dir / STACK / "tasks").glob("*.log"))
    assert task_logs and "Hello, sandbox!" in task_logs[0].read_text()
    sandbox.wait_for_line("stopped: exit code 0", 60)


def test_the_ui_lists_the_stacks_pool_and_the_completed_sample_run_behind_basic_auth(
        browser_available, sandbox, tmp_path):
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


def test_ctrl_c_stops_every_process_it_started_and_frees_every_port(sandbox):
    assert_ctrl_c_leaves_nothing(sandbox)
