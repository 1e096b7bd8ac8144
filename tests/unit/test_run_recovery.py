"""The stack's flow-run recovery as declared: the stuck-Pending automation next to the pool, its
threshold from config, and the worker's retry settings (mock tier; the burst on real servers is
tests/integration/test_run_recovery_burst.py)."""

import base64
import json

import dill
import pytest

from components.prefect.stuck_run_automation import (
    PROGRESS_STATES, SUBMISSION_LIMIT, WORKER_RETRY_ENVIRONMENT, StuckRunAutomationProvider, stuck_pending_automation,
    worst_case_submission_seconds,
)
from components.config.run_recovery import MIN_PENDING_MINUTES
from components.config.reader import ConfigError
from components.prefect.pool_bootstrap import CONTAINER_NAME as BOOTSTRAP
from tests.support.harness import (
    TEST_API_KEY, WORK_POOL, WORKER_TASK, evaluate_stack, server_stack_names, stack_names,
    worker_container, worker_only_stack_names,
)
from tests.support.server_evaluations import TASK_DEFINITION, containers, environment
from testbed.replay.prefect import AUTOMATION


def automation_of(evaluation) -> dict:
    """The automation document a stack puts on its server: through the dynamic provider when the
    API is reachable from the deploying machine, else in the worker task's in-VPC bootstrap."""
    resources = evaluation.of_type(AUTOMATION)
    if resources:
        return resources[0].inputs["automation"]
    bootstrap = containers(evaluation, WORKER_TASK)[BOOTSTRAP]
    return json.loads(environment(bootstrap)["PREFECT_AUTOMATION_JSON"])


def pool_name_of(evaluation) -> str:
    pools = evaluation.of_type(WORK_POOL)
    if pools:
        return pools[0].inputs["name"]
    return environment(containers(evaluation, WORKER_TASK)[BOOTSTRAP])["PREFECT_WORK_POOL_NAME"]


@pytest.mark.parametrize("stack", stack_names())
def test_every_stack_watches_its_own_pool_for_runs_stuck_in_pending(evaluated, stack):
    evaluation = evaluated(stack)
    automation = automation_of(evaluation)
    trigger = automation["trigger"]
    assert trigger["match_related"] == {"prefect.resource.role": "work-pool",
                                        "prefect.resource.name": pool_name_of(evaluation)}
    assert trigger["posture"] == "Proactive" and trigger["after"] == ["prefect.flow-run.Pending"]
    assert trigger["for_each"] == ["prefect.resource.id"] and trigger["threshold"] == 1
    assert trigger["within"] == 15 * 60  # Pulumi.yaml's default
    (action,) = automation["actions"]
    assert (action["type"], action["state"]) == ("change-flow-run-state", "SCHEDULED")
    assert automation["enabled"] is True


@pytest.mark.parametrize("stack", worker_only_stack_names())
def test_a_reachable_api_gets_the_automation_from_the_deploying_machine(evaluated, stack):
    evaluation = evaluated(stack)
    assert evaluation.one(AUTOMATION).inputs["api_url"] == evaluation.one(WORK_POOL).inputs["api_url"]
    assert "PREFECT_AUTOMATION_JSON" not in json.dumps(evaluation.of_type(TASK_DEFINITION)[0].inputs)


@pytest.mark.parametrize("stack", server_stack_names())
def test_the_stacks_own_server_gets_the_automation_from_inside_the_vpc(evaluated, stack):
    """No dynamic resource calls an API the deploying machine cannot reach; the bootstrap
    container carries the same document as the provider would send."""
    evaluation = evaluated(stack)
    assert evaluation.of_type(AUTOMATION) == []
    automation = automation_of(evaluation)
    assert automation == stuck_pending_automation(
        automation["name"], pool_name_of(evaluation), 15 * 60)


def test_a_run_left_pending_or_submitting_is_what_the_trigger_waits_out():
    """Pending and Submitting (the state a worker leaves behind when it stops mid-submission)
    must not count as progress, or the stuck run is never returned; every other state does."""
    expect = stuck_pending_automation("a", "pool", 600)["trigger"]["expect"]
    assert "prefect.flow-run.Pending" not in expect
    assert "prefect.flow-run.Submitting" not in expect
    for state in ("Running", "Crashed", "Failed", "Cancelled", "Completed", "Scheduled", "Late"):
        assert f"prefect.flow-run.{state}" in expect
    assert len(expect) == len(PROGRESS_STATES)


def test_threshold_follows_config(evaluated):
    assert automation_of(evaluated("dev", stuckPendingMinutes="30"))["trigger"]["within"] == 1800
    assert automation_of(evaluated("selfhosted-dev", stuckPendingMinutes="30"))[
        "trigger"]["within"] == 1800


@pytest.mark.parametrize("stack", ["dev", "selfhosted-dev"])
def test_no_pool_of_its_own_no_automation(evaluated, stack):
    evaluation = evaluated(stack, manageWorkPool="false")
    assert evaluation.of_type(AUTOMATION) == []
    assert "PREFECT_AUTOMATION_JSON" not in json.dumps(
        [t.inputs for t in evaluation.of_type(TASK_DEFINITION)])


@pytest.mark.parametrize("value, accepted", [
    ("5", "from 10 to 1440"), ("1441", "from 10 to 1440"), ("ten", "a whole number"),
])
def test_bad_threshold_names_key_and_accepted(value, accepted):
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("dev", stuckPendingMinutes=value)
    assert raised.value.key == "prefect-ecs-worker:stuckPendingMinutes"
    assert accepted in str(raised.value)


def test_the_credential_is_nowhere_in_the_automation_resource(evaluated):
    inputs = evaluated("dev").one(AUTOMATION).inputs
    assert TEST_API_KEY not in json.dumps({k: v for k, v in inputs.items() if k != "__provider"})
    raw = base64.b64decode(inputs["__provider"])
    assert vars(dill.loads(raw)) == {} and TEST_API_KEY.encode() not in raw


def test_provider_refuses_a_trigger_below_prefects_floor():
    provider = StuckRunAutomationProvider()
    short = {"api_url": "http://x/api", "automation": stuck_pending_automation("a", "p", 5)}
    (failure,) = provider.check({}, short).failures
    assert failure.property == "automation" and "at least 10 s" in failure.reason
    ok = {"api_url": "http://x/api", "automation": stuck_pending_automation("a", "p", 600)}
    assert provider.check({}, ok).failures == []


def test_a_changed_threshold_updates_in_place_a_new_server_replaces():
    provider = StuckRunAutomationProvider()
    old = {"api_url": "http://x/api", "automation": stuck_pending_automation("a", "p", 600)}
    new = {**old, "automation": stuck_pending_automation("a", "p", 900)}
    diff = provider.diff("id", old, new)
    assert diff.changes and not diff.replaces
    assert provider.diff("id", old, {**old, "api_url": "http://y/api"}).replaces == ["api_url"]
    assert not provider.diff("id", old, json.loads(json.dumps(old))).changes


@pytest.mark.parametrize("stack", stack_names())
def test_the_worker_retries_transient_api_and_aws_errors(evaluated, stack):
    environment = {e["name"]: e["value"]
                   for e in worker_container(evaluated(stack))["environment"]}
    for key, value in WORKER_RETRY_ENVIRONMENT:
        assert environment[key] == value
    # botocore's standard and adaptive modes share one retry quota per client, which a burst of
    # throttled RunTasks drains: the worker keeps the legacy mode.
    assert "AWS_RETRY_MODE" not in environment
    assert int(environment["PREFECT_CLIENT_MAX_RETRIES"]) > 5  # Prefect's default gives up at ~1 min


def test_retries_end_before_the_automation_could_take_a_retrying_run_for_a_stuck_one():
    """A run whose submission is still waiting out retries when the threshold passes would be
    returned to Scheduled and get a second task once the retry succeeds."""
    assert worst_case_submission_seconds() < MIN_PENDING_MINUTES * 60
    # ... and the retries outlast a fault that clears within a minute.
    assert worst_case_submission_seconds() > 120


def test_each_run_a_worker_submits_at_once_has_a_thread_of_its_own():
    """prefect-aws makes its AWS calls in anyio's worker threads: with more runs in flight than
    threads, a run would wait Pending for a thread, and the automation's clock would run."""
    import anyio
    import anyio.to_thread

    async def threads() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert 1 <= SUBMISSION_LIMIT < anyio.run(threads)
