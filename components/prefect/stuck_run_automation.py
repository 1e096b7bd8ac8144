"""No flow run lost when a worker stops mid-submission: a stack-owned Prefect automation, and the
worker's retry settings.

A worker marks a run Pending, then starts its ECS task. A worker stopped between the two (SIGTERM
on every deploy, scale-in and Spot interruption; SIGKILL after `stopTimeout`), or a server that
lost the answer, leaves the run Pending with no task: no worker picks a Pending run up again. The
automation watches the pool's flow runs: one that stays Pending for `stuckPendingMinutes`
without any later state (Running, Crashed, ...) is set back to Scheduled, and a worker submits it
again. The threshold sits above the slowest normal task start, so a run whose task is merely slow
to start is left alone (docs/no-lost-runs.md).

The automation is created as code through the Prefect API, on Prefect Cloud or a self-hosted
server alike, by a dynamic provider that shares the pool's credential handling
(components/prefect/api.py). `stuck_pending_automation` is its whole definition: a caller that
reaches the API another way (from inside the VPC) upserts the same document.

`WORKER_RETRY_ENVIRONMENT` makes the worker retry what clears by itself (a busy or restarting
Prefect server, a throttled or unavailable RunTask) instead of marking the run Crashed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult

from components.prefect.api import PrefectApiError, PrefectApiProvider, canonical, whole_numbers

RESCHEDULED_STATE_NAME = "Rescheduled"
# Prefect refuses a proactive trigger that waits less than this.
PREFECT_MIN_WITHIN_SECONDS = 10
# Every state a flow run reaches once it has left Pending for good. Pending and Submitting are
# absent on purpose: a run the worker left there is the one to recover.
PROGRESS_STATES = (
    "Running", "Retrying", "Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled",
    "Cancelling", "Paused", "Suspended", "Scheduled", "Late", "AwaitingRetry",
    "AwaitingConcurrencySlot", RESCHEDULED_STATE_NAME,
)


def stuck_pending_automation(name: str, work_pool_name: str, pending_seconds: int) -> dict[str, Any]:
    """The automation document (Prefect's `AutomationCreate`): flow runs of this pool that stay
    Pending for `pending_seconds` go back to Scheduled."""
    return {
        "name": name,
        "description": (
            f"Returns a flow run of work pool {work_pool_name!r} that stays Pending for "
            f"{pending_seconds} s to Scheduled: its worker stopped before the run's ECS task "
            "started. Managed by Pulumi."
        ),
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "match": {"prefect.resource.id": "prefect.flow-run.*"},
            # Flow-run state events name the run's pool as a related resource.
            "match_related": {"prefect.resource.role": "work-pool",
                              "prefect.resource.name": work_pool_name},
            "after": ["prefect.flow-run.Pending"],
            "expect": [f"prefect.flow-run.{state}" for state in PROGRESS_STATES],
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": pending_seconds,
        },
        "actions": [{
            "type": "change-flow-run-state",
            "state": "SCHEDULED",
            "name": RESCHEDULED_STATE_NAME,
            "message": (f"Pending for {pending_seconds} s without starting: its worker stopped "
                        "before the task started; returned to the pool"),
        }],
    }


# Prefect's client retries 408/429/502/503 and dropped connections with a 2^n s backoff: its
# default 5 retries give up after ~1 min, 7 after ~4 min, long enough for a server restart or a
# busy database. botocore's legacy mode retries throttling and 5xx with a random 0..2^n s pause
# and no shared retry quota (standard and adaptive modes share 500 tokens per client, which a
# burst of throttled RunTasks drains in seconds); 7 attempts pause ~30 s on average, 63 s at
# most. prefect-aws then repeats the whole RunTask call up to 4 times, 5-8 s apart. Every wait
# together stays under the automation's 10-minute floor (`worst_case_submission_seconds`): a run
# still retrying must not be taken for a stuck one and submitted twice.
PREFECT_CLIENT_MAX_RETRIES = 7
AWS_MAX_ATTEMPTS = 7
CREATE_TASK_RUN_MAX_ATTEMPTS = 4
CREATE_TASK_RUN_MIN_DELAY_SECONDS = 5
CREATE_TASK_RUN_MAX_JITTER_SECONDS = 3  # prefect-aws's default
WORKER_RETRY_ENVIRONMENT = (
    ("PREFECT_CLIENT_MAX_RETRIES", str(PREFECT_CLIENT_MAX_RETRIES)),
    ("AWS_MAX_ATTEMPTS", str(AWS_MAX_ATTEMPTS)),
    ("PREFECT_INTEGRATIONS_AWS_ECS_WORKER_CREATE_TASK_RUN_MAX_ATTEMPTS",
     str(CREATE_TASK_RUN_MAX_ATTEMPTS)),
    ("PREFECT_INTEGRATIONS_AWS_ECS_WORKER_CREATE_TASK_RUN_MIN_DELAY_SECONDS",
     str(CREATE_TASK_RUN_MIN_DELAY_SECONDS)),
)


# How many runs one worker submits at a time (`prefect worker start --limit`): the ECS worker
# frees a slot once the run's task is created, and leaves the runs past the limit Scheduled for
# the next poll or another worker. Unbounded, a worker marks every run it fetched Pending at once
# and then works through them: in a burst of 100 on two workers, the last waited Pending for
# longer than a 90 s threshold behind the others, was rescheduled, and one ran twice (measured).
# Bounded, a run waits Pending only for its own submission, and a worker stopped mid-burst
# strands at most this many. Below anyio's 40 worker threads, where prefect-aws makes its AWS
# calls, so no run waits for a thread either.
SUBMISSION_LIMIT = 20


def worst_case_submission_seconds() -> float:
    """The longest the worker may wait out retries while submitting one run: one Prefect request
    at the end of its backoff (2^n s plus 20% jitter), then RunTask's attempts, each with
    botocore's longest legacy backoff, and prefect-aws's pauses between them."""
    prefect = 1.2 * sum(2 ** n for n in range(1, PREFECT_CLIENT_MAX_RETRIES + 1))
    one_call = sum(2 ** (k - 1) for k in range(1, AWS_MAX_ATTEMPTS))
    pauses = (CREATE_TASK_RUN_MAX_ATTEMPTS - 1) * (
        CREATE_TASK_RUN_MIN_DELAY_SECONDS + CREATE_TASK_RUN_MAX_JITTER_SECONDS)
    return prefect + CREATE_TASK_RUN_MAX_ATTEMPTS * one_call + pauses


class StuckRunAutomationProvider(PrefectApiProvider):
    """CRUD for one automation, by the id Prefect gave it."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if not isinstance(news.get("api_url"), str) or not news["api_url"].startswith("http"):
            failures.append(CheckFailure("api_url", "the Prefect API URL, http(s)://..."))
        automation = news.get("automation")
        within = (automation or {}).get("trigger", {}).get("within") if isinstance(
            automation, dict) else None
        if not isinstance(automation, dict) or not automation.get("name"):
            failures.append(CheckFailure("automation", "an automation document with a name"))
        elif not isinstance(within, (int, float)) or within < PREFECT_MIN_WITHIN_SECONDS:
            failures.append(CheckFailure(
                "automation", f"a trigger waiting at least {PREFECT_MIN_WITHIN_SECONDS} s "
                              "(Prefect's floor for proactive triggers)"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = ["api_url"] if olds.get("api_url") != news.get("api_url") else []
        changed = canonical(olds.get("automation")) != canonical(news.get("automation"))
        return DiffResult(changes=bool(replaces or changed), replaces=replaces,
                          delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        api_url = props["api_url"]
        response = self._request(api_url, "POST", "/automations/", whole_numbers(props["automation"]))
        if response.status_code not in (200, 201):
            raise self._fail(api_url, f"creating automation {props['automation']['name']!r}",
                             response)
        return CreateResult(response.json()["id"], {**props, "automation_id": response.json()["id"]})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        api_url = props["api_url"]
        response = self._request(api_url, "GET", f"/automations/{id_}")
        if response.status_code == 404:
            return ReadResult(None, {})
        if response.status_code != 200:
            raise self._fail(api_url, f"reading automation {id_}", response)
        live = response.json()
        # Switched off behind Pulumi's back shows as a change; the next `up` switches it on.
        automation = {**props["automation"], "enabled": live.get("enabled", True)}
        return ReadResult(id_, {**props, "automation": automation, "automation_id": id_})

    def update(self, id_: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        api_url = news["api_url"]
        response = self._request(api_url, "PUT", f"/automations/{id_}",
                                 whole_numbers(news["automation"]))
        if response.status_code == 404:
            raise PrefectApiError(f"automation {id_} is gone from {api_url}; run pulumi refresh, "
                                  "then pulumi up to create it again")
        if response.status_code not in (200, 204):
            raise self._fail(api_url, f"updating automation {id_}", response)
        return UpdateResult({**news, "automation_id": id_})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        api_url = props["api_url"]
        response = self._request(api_url, "DELETE", f"/automations/{id_}")
        if response.status_code not in (200, 202, 204, 404):
            raise self._fail(api_url, f"deleting automation {id_}", response)


@dataclass(frozen=True)
class StuckRunAutomationArgs:
    api_url: str
    name: str
    work_pool_name: str
    pending_seconds: int


class StuckRunAutomation(pulumi.dynamic.Resource, module="prefect", name="Automation"):
    """The stack's stuck-Pending automation (type token `pulumi-python:dynamic/prefect:Automation`)."""

    automation_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: StuckRunAutomationArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(StuckRunAutomationProvider(), resource_name, {
            "api_url": args.api_url,
            "automation": stuck_pending_automation(args.name, args.work_pool_name,
                                                   args.pending_seconds),
            "automation_id": None,
        }, opts)
