"""Bursts of flow runs on the real parts (testbed/burst.py): a worker stopped mid-burst and a
RunTask refused for a while lose no run, run none twice and crash none; and the stack's
automation returns a run left Pending, but not one whose task is merely slow to start.

The automation is the one the stack declares, created by its provider; only its threshold is
shortened through the same provider: to 30 s, above the submission time of a worker on a busy
2-core machine (a run Pending longer than the threshold without its task Running is, by design,
submitted again), and to 15 s for the runs set Pending by hand, where no worker runs. `make bench-burst` runs every
scenario at 100 runs and 2 workers.
"""

import time

import pytest

from components.prefect.stuck_run_automation import (
    RESCHEDULED_STATE_NAME, StuckRunAutomationProvider, stuck_pending_automation,
    worst_case_submission_seconds,
)
from testbed.burst import Bed, run_burst
from testbed.prefect_worker import api

pytestmark = pytest.mark.slow

THRESHOLD_S = 30  # above a loaded 2-core box's submission time; the stack's default is 15 min
# Where no worker runs (a run set Pending by hand), the threshold only has to be one Prefect takes
# as given: its proactive triggers are evaluated every few seconds.
STANDING_THRESHOLD_S = 15


@pytest.fixture(scope="module")
def bed(moto_server, prefect_server, tmp_path_factory):
    bed = Bed(tmp_path_factory.mktemp("burst"), poll_seconds=2, pending_seconds=THRESHOLD_S,
              moto=moto_server, prefect=prefect_server)
    yield bed
    bed.close()


def test_the_bed_runs_the_stacks_own_automation_with_a_short_threshold(bed):
    declared = bed.evaluation.one("pulumi-python:dynamic/prefect:Automation").inputs["automation"]
    live = bed.automation
    assert live["name"] == declared["name"]
    assert live["trigger"]["match_related"] == declared["trigger"]["match_related"]
    assert set(live["trigger"]["expect"]) == set(declared["trigger"]["expect"])
    assert live["trigger"]["within"] == THRESHOLD_S and declared["trigger"]["within"] >= 600
    assert [a["state"] for a in live["actions"]] == ["SCHEDULED"]


def test_a_worker_stopped_mid_burst_loses_no_run_and_runs_none_twice(bed):
    figures = run_burst(bed, "sigterm", runs=12, workers=2)
    assert figures.notes and "SIGTERM" in figures.notes[0]
    assert (figures.lost, figures.duplicated, figures.crashed) == (0, 0, 0), figures
    assert figures.all_submitted_s is not None


def test_runtask_unavailable_for_a_while_is_retried_not_crashed(bed):
    # The stack's threshold sits above the worker's whole retry budget; so does this one, or a
    # run still retrying after the fault would be taken for a stuck one.
    bed.set_threshold(int(worst_case_submission_seconds()) + 30)
    try:
        figures = run_burst(bed, "runtask-unavailable", runs=6, workers=2, fault_seconds=20)
    finally:
        bed.set_threshold(THRESHOLD_S)
    assert figures.refused > 0, "the fault reached the workers"
    assert (figures.lost, figures.duplicated, figures.crashed) == (0, 0, 0), figures
    assert figures.all_submitted_s is not None and figures.all_submitted_s >= 20 * 0.9


def test_the_automation_returns_a_stuck_run_and_leaves_a_slow_starting_one(bed):
    """Two runs Pending at once: one never starts (its worker died), one starts at 60% of the
    threshold. The first is Scheduled again after the threshold; the second stays Running."""
    api_url = bed.prefect.api_url
    bed.set_paused(True)  # no worker runs here; keep the pool's runs to this test
    # No worker submits here, so the threshold needs no room for a submission: a shorter one.
    threshold_s = STANDING_THRESHOLD_S
    bed.set_threshold(threshold_s)
    try:
        _stuck_and_slow(bed, api_url, threshold_s)
    finally:
        bed.set_threshold(THRESHOLD_S)
        bed.set_paused(False)


def _stuck_and_slow(bed, api_url: str, threshold_s: int) -> None:
    stuck, slow = bed.create_runs(2)
    for run in (stuck, slow):
        assert api(api_url, "POST", f"/flow_runs/{run}/set_state",
                   {"state": {"type": "PENDING"}})["status"] == "ACCEPT"
    pending_at = time.monotonic()
    time.sleep(0.6 * threshold_s)
    api(api_url, "POST", f"/flow_runs/{slow}/set_state", {"state": {"type": "RUNNING"}})

    def state(run):
        return api(api_url, "GET", f"/flow_runs/{run}")["state"]

    while state(stuck)["type"] == "PENDING" and time.monotonic() - pending_at < 90:
        time.sleep(1)
    returned_after = time.monotonic() - pending_at
    assert (state(stuck)["type"], state(stuck)["name"]) == ("SCHEDULED", RESCHEDULED_STATE_NAME)
    assert returned_after >= threshold_s
    time.sleep(threshold_s)  # past the slow run's own threshold
    assert state(slow)["type"] == "RUNNING"
    bed.delete_runs([stuck, slow])


def test_the_provider_updates_and_deletes_the_automation(prefect_server):
    provider = StuckRunAutomationProvider()
    props = {"api_url": prefect_server.api_url,
             "automation": stuck_pending_automation("crud", "some-pool", 600)}
    created = provider.create(props)
    assert provider.read(created.id, props).outs["automation"] == props["automation"]
    news = {**props, "automation": stuck_pending_automation("crud", "some-pool", 900)}
    provider.update(created.id, props, news)
    live = api(prefect_server.api_url, "GET", f"/automations/{created.id}")
    assert live["trigger"]["within"] == 900
    provider.delete(created.id, news)
    assert provider.read(created.id, news).id is None
    provider.delete(created.id, news)  # already gone is fine
