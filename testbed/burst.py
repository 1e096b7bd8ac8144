"""A burst of flow runs on the real parts, with a fault in the middle, and what became of each run.

`Bed` is the stack deployed as rung 3 deploys it: the dev stack replayed into moto, its pool and
its stuck-Pending automation created on a real Prefect server through the stack's own providers,
and the worker container's exact command and environment (testbed/prefect_worker.py). Every AWS
call of the workers goes through a `FaultProxy` in front of moto. `run_burst` schedules N runs at
once (created with the pool paused, then the pool resumed), starts W workers, applies the
scenario's fault, and reports per run: its ECS tasks (moto's, by the `prefect.io/flow-run-id`
tag), its final state, and when its first RunTask succeeded.

Moto runs no containers. A task's container would start and report the run Running
(`prefect flow-run execute`); a stand-in does that 1 s after the RunTask. In the slow-start
scenario it does so 60% of the automation's threshold after the run went Pending, the clock the
automation keeps.

The threshold here is short (30-90 s: above a worker's own submission time on a busy 2-core
machine, since the automation's clock starts when the worker marks the run Pending) to keep
bursts fast: the automation is the one the stack declares, created by its provider, then updated
through the same provider with only `within` changed (`Bed.automation`).

`recovery=False` runs the stack without the fix: the automation deleted, the worker's retry
settings (components/prefect/stuck_run_automation.py WORKER_RETRY_ENVIRONMENT) and its submission limit removed,
Prefect's defaults back.
"""

from __future__ import annotations

import copy
import datetime
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from components.prefect.stuck_run_automation import (RESCHEDULED_STATE_NAME, WORKER_RETRY_ENVIRONMENT,
                                                     StuckRunAutomationProvider)
from testbed.fault_proxy import QUEUE_MISSING, THROTTLED, UNAVAILABLE, FaultProxy
from tools.mock_engine import evaluate_stack
from testbed.prefect_worker import FINAL, api, deploy, wait_for_log, worker_launch
from testbed.replay.prefect import AUTOMATION
from testbed.servers import BIN, MotoServer, PrefectServer, spawn, stop, wait_for_http

POOL = "ecs-burst"
FLOW_RUN_TAG = "prefect.io/flow-run-id"
# The runs wait behind a paused pool while they are created, so Prefect's late-runs service marks
# them Late one by one, and on SQLite those writes lock out the creations: 100 runs took over 5
# minutes, about one without them. Runs of a real burst come from a schedule and are due when
# created.
QUIET = {"PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false"}

# name -> what happens; the fault windows start when the runs are released.
SCENARIOS = {
    "steady": "no fault",
    "sigterm": "SIGTERM to one worker a quarter of the way through (deploy, scale-in, Spot)",
    "sigkill": "SIGKILL to one worker a quarter of the way through (killed after stopTimeout)",
    "server-restart": "the Prefect server stopped and started again a quarter of the way through",
    "runtask-throttled": "every RunTask answered ThrottlingException (400) for the fault window",
    "runtask-unavailable": "every RunTask answered 503 for the fault window",
    "events-queue-missing": "every SQS call answered QueueDoesNotExist for the whole burst",
    "slow-start": "each task reports Running only after 60% of the stuck-Pending threshold",
}


@dataclass
class Figures:
    scenario: str
    runs: int
    lost: int
    duplicated: int
    crashed: int
    crash_reasons: dict[str, int]
    rescheduled: int
    all_submitted_s: Optional[float]
    p50_s: Optional[float]
    p95_s: Optional[float]
    run_task_rate: Optional[float]  # successful RunTasks per second, first to last
    refused: int  # AWS calls the proxy refused
    wall_s: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"lost": self.lost, "duplicated": self.duplicated, "crashed": self.crashed,
                "all_submitted_s": self.all_submitted_s, "p50_s": self.p50_s,
                "p95_s": self.p95_s}


def patient(call: Callable[[], Any], seconds: float = 120) -> Any:
    """`call()`, again while the server answers 503 (SQLite busy) or is unreachable."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except urllib.error.HTTPError as error:
            if error.code != 503 or time.monotonic() > deadline:
                raise
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def percentile(values: list[float], fraction: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def postgres_database() -> tuple[Any, dict[str, str]]:
    """A PostgreSQL on loopback (testbed/databases.py) and the environment that points a Prefect
    server at it; stop the first when done."""
    from testbed.databases import start_postgres

    database = start_postgres()
    url = database.url_for(database.database, driver="postgresql+asyncpg")
    return database, {"PREFECT_SERVER_DATABASE_CONNECTION_URL": url,
                      "PREFECT_API_DATABASE_CONNECTION_URL": url}


def restart(server: PrefectServer) -> float:
    """Stop the server by PID and start it again on the same port and database; seconds down."""
    started = time.monotonic()
    stop(server.process)
    server.process = spawn(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(server.port)],
        server.env, server.log_path.with_name(server.log_path.name + ".restarted"))
    wait_for_http(f"{server.api_url}/health", 180, server.process)
    return time.monotonic() - started


class Bed:
    """The deployed stack with its pool and automation, a fault proxy, and worker launches."""

    def __init__(self, workdir: Path, *, poll_seconds: float = 2.0, pending_seconds: int = 10,
                 recovery: bool = True, moto: Optional[MotoServer] = None,
                 prefect: Optional[PrefectServer] = None,
                 prefect_env: Optional[dict[str, str]] = None,
                 launcher: Optional[Callable[[list[str]], list[str]]] = None):
        """`launcher` wraps each worker's command (testbed/cgroups.py: at its task's size)."""
        self.workdir = workdir
        self.launcher = launcher
        self.poll_seconds = poll_seconds
        self.pending_seconds = pending_seconds
        self.recovery = recovery
        self._owned: list[Any] = []
        self._proxy: Optional[FaultProxy] = None
        try:
            self._set_up(moto, prefect, prefect_env)
        except BaseException:
            self.close()
            raise

    def _set_up(self, moto: Optional[MotoServer], prefect: Optional[PrefectServer],
                prefect_env: Optional[dict[str, str]]) -> None:
        self.moto = moto or self._own(MotoServer(self.workdir))
        self.prefect = prefect or self._own(PrefectServer(self.workdir, {**QUIET, **(prefect_env or {})}))
        self._proxy = FaultProxy(self.moto.url)
        self.evaluation = evaluate_stack("dev", workPoolName=POOL)
        self.stack = deploy(self.evaluation, self.moto, self.prefect.api_url)
        self.moto.hold_tasks()
        self.ecs = self.stack.replayed.client("ecs")
        self.cluster = self.stack.exports["clusterArn"]
        self.automation = self._set_up_automation()
        flow = api(self.prefect.api_url, "POST", "/flows/", {"name": "burst"})
        self.deployment_id = api(self.prefect.api_url, "POST", "/deployments/", {
            "name": "burst", "flow_id": flow["id"], "work_pool_name": POOL,
            "entrypoint": "flows.py:burst", "path": "/opt/flows"})["id"]
        self._launches = 0

    def _own(self, server):
        self._owned.append(server)
        return server

    def _set_up_automation(self) -> Optional[dict[str, Any]]:
        """The stack's automation, as its provider created it, with the threshold shortened by
        the same provider's update; without recovery, deleted."""
        created = self.stack.replayed.created[(AUTOMATION, "stuck-runs")]
        provider = StuckRunAutomationProvider()
        if not self.recovery:
            provider.delete(created["id"], created["outs"])
            return None
        return self.set_threshold(self.pending_seconds)

    def set_threshold(self, seconds: int) -> dict[str, Any]:
        """The stack's automation with `within` changed, through its provider's update."""
        created = self.stack.replayed.created[(AUTOMATION, "stuck-runs")]
        news = copy.deepcopy(created["outs"])
        news["automation"]["trigger"]["within"] = seconds
        StuckRunAutomationProvider().update(created["id"], created["outs"], news)
        self.pending_seconds = seconds
        return api(self.prefect.api_url, "GET", f"/automations/{created['id']}")

    def launch_worker(self) -> tuple[Any, Path]:
        self._launches += 1
        home = self.workdir / f"worker-{self._launches}"
        home.mkdir()
        aws_env = {**self.moto.client_env(), "AWS_ENDPOINT_URL": self.proxy.url}
        launch = worker_launch(self.evaluation, self.stack.replayed, api_url=self.prefect.api_url,
                               home=home, aws_env=aws_env, extra_env={
                                   "PREFECT_WORKER_QUERY_SECONDS": str(self.poll_seconds),
                                   "PREFECT_WORKER_HEARTBEAT_SECONDS": "5"})
        if not self.recovery:
            for key, _ in WORKER_RETRY_ENVIRONMENT:
                launch.env.pop(key, None)
            at = launch.command.index("--limit")
            del launch.command[at:at + 2]
        log_path = home / "worker.log"
        if self.launcher is not None:
            return spawn(self.launcher(launch.command), launch.env, log_path), log_path
        return launch.start(log_path), log_path

    def set_paused(self, paused: bool) -> None:
        api(self.prefect.api_url, "PATCH", f"/work_pools/{POOL}", {"is_paused": paused})

    def create_runs(self, count: int) -> list[str]:
        def one(_: int) -> str:
            return patient(lambda: api(self.prefect.api_url, "POST",
                                       f"/deployments/{self.deployment_id}/create_flow_run", {},
                                       timeout=60), seconds=900)["id"]

        # SQLite takes one writer at a time: two threads keep it busy without piling up 503s.
        with ThreadPoolExecutor(2) as pool:
            return list(pool.map(one, range(count)))

    def tasks_by_run(self, run_ids: set[str]) -> dict[str, list[str]]:
        """moto's ECS tasks in the stack's cluster, grouped by the flow run they were started for."""
        arns = []
        token = None
        while True:
            page = self.ecs.list_tasks(cluster=self.cluster, **({"nextToken": token} if token else {}))
            arns += page["taskArns"]
            token = page.get("nextToken")
            if not token:
                break
        by_run: dict[str, list[str]] = {}
        for start in range(0, len(arns), 100):
            for task in self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[start:start + 100],
                                                include=["TAGS"])["tasks"]:
                run_id = {t["key"]: t["value"] for t in task.get("tags", [])}.get(FLOW_RUN_TAG)
                if run_id in run_ids:
                    by_run.setdefault(run_id, []).append(task["taskArn"])
        return by_run

    def states(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        runs = api(self.prefect.api_url, "POST", "/flow_runs/filter",
                   {"flow_runs": {"id": {"any_": run_ids}}, "limit": 200}, timeout=30)
        return {run["id"]: run["state"] for run in runs}

    def rescheduled(self, run_ids: set[str], since: str) -> int:
        """Runs the automation returned to Scheduled (its state events), since an ISO time."""
        page = api(self.prefect.api_url, "POST", "/events/filter", {
            "filter": {"event": {"name": [f"prefect.flow-run.{RESCHEDULED_STATE_NAME}"]},
                       "occurred": {"since": since}}, "limit": 50})
        events = page["events"]
        while page.get("next_page") and len(events) < 1000:
            page = api(self.prefect.api_url, "GET", page["next_page"].split("/api", 1)[1])
            events += page["events"]
        return len({e["resource"]["prefect.resource.id"].split(".")[-1] for e in events}
                   & run_ids)

    def delete_runs(self, run_ids: list[str]) -> None:
        def one(run_id: str) -> None:
            try:
                patient(lambda: api(self.prefect.api_url, "DELETE", f"/flow_runs/{run_id}",
                                    timeout=60))
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, run_ids))

    @property
    def proxy(self) -> FaultProxy:
        """The fault proxy every AWS call of the workers goes through; there once set up."""
        assert self._proxy is not None, "the bed is set up"
        return self._proxy

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
        if getattr(self, "automation", None) is not None and self.prefect not in self._owned:
            created = self.stack.replayed.created[(AUTOMATION, "stuck-runs")]
            StuckRunAutomationProvider().delete(created["id"], created["outs"])
            self.stack.replayed.delete_work_pools()
        for server in reversed(self._owned):
            server.stop()


class _ContainerStandIn(threading.Thread):
    """What each ECS task's container does first: report its run Running, 1 s after RunTask, or
    with `after_pending`, that many seconds after the run went Pending (a slow image pull)."""

    def __init__(self, bed: Bed, after_pending: Optional[float] = None):
        super().__init__(daemon=True)
        self.bed, self.after_pending = bed, after_pending
        self.started_tasks: set[str] = set()
        self.due: dict[str, float] = {}
        self.halt = threading.Event()

    def _due(self, call: Any) -> float:
        if self.after_pending is None:
            return call.at + 1.0
        if call.flow_run_id not in self.due:
            states = api(self.bed.prefect.api_url, "GET",
                         f"/flow_run_states/?flow_run_id={call.flow_run_id}")
            pending = max(s["timestamp"] for s in states if s["name"] == "Pending")
            age = time.time() - _epoch(pending)
            self.due[call.flow_run_id] = time.monotonic() - age + self.after_pending
        return self.due[call.flow_run_id]

    def run(self) -> None:
        while not self.halt.wait(0.2):
            for call in list(self.bed.proxy.run_tasks):
                for arn in call.task_arns:
                    try:
                        if arn in self.started_tasks or self._due(call) > time.monotonic():
                            continue
                        api(self.bed.prefect.api_url, "POST",
                            f"/flow_runs/{call.flow_run_id}/set_state",
                            {"state": {"type": "RUNNING", "name": "Running"}}, timeout=10)
                    except (urllib.error.URLError, OSError, ValueError):
                        continue  # the server is down: try again
                    self.started_tasks.add(arn)


def run_burst(bed: Bed, scenario: str, *, runs: int = 100, workers: int = 2,
              fault_seconds: float = 45.0, deadline_s: Optional[float] = None,
              log: Callable[[str], None] = lambda _: None,
              on_release: Callable[[], None] = lambda: None) -> Figures:
    """One scenario on a fresh set of runs and workers; the runs are deleted afterwards.
    `on_release` is called once the workers are up, just before the runs are released."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    began = time.monotonic()
    proxy = bed.proxy
    proxy.clear()
    notes: list[str] = []
    bed.set_paused(True)
    run_ids = bed.create_runs(runs)
    log(f"{scenario}: {runs} runs created in {time.monotonic() - began:.1f} s")
    if scenario == "events-queue-missing":
        proxy.fail("AmazonSQS.", 24 * 3600, QUEUE_MISSING)
    started: list[tuple[Any, Path]] = []
    standin = None
    try:
        started += [bed.launch_worker() for _ in range(workers)]
        for _process, log_path in started:
            wait_for_log(log_path, "started!", 120)
        threshold = bed.pending_seconds
        standin = _ContainerStandIn(bed, 0.6 * threshold if scenario == "slow-start" else None)
        standin.start()
        wall_since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
        if scenario == "runtask-throttled":
            proxy.fail(".RunTask", fault_seconds, THROTTLED)
        elif scenario == "runtask-unavailable":
            proxy.fail(".RunTask", fault_seconds, UNAVAILABLE)
        on_release()
        bed.set_paused(False)
        t0 = time.monotonic()

        def submitted() -> dict[str, float]:
            first: dict[str, float] = {}
            for call in list(proxy.run_tasks):
                if call.status == 200 and call.flow_run_id and call.flow_run_id not in first:
                    first[call.flow_run_id] = call.at
            return first

        if scenario in ("sigterm", "sigkill", "server-restart"):
            def act() -> None:
                while len(submitted()) < runs // 4 and time.monotonic() - t0 < 300:
                    time.sleep(0.05)
                at = time.monotonic() - t0
                if scenario == "server-restart":
                    down = restart(bed.prefect)
                    notes.append(f"server restarted at {at:.1f} s, down {down:.1f} s")
                else:
                    process = started[0][0]
                    process.send_signal(15 if scenario == "sigterm" else 9)
                    notes.append(f"worker 1 got {'SIGTERM' if scenario == 'sigterm' else 'SIGKILL'} "
                                 f"at {at:.1f} s with {len(submitted())} runs submitted")

            actor = threading.Thread(target=act, daemon=True)
            actor.start()
        else:
            actor = None

        fault_end = fault_seconds if scenario.startswith("runtask-") else 0.0
        # Stuck means no progress (no new RunTask, no state change) for longer than a recovery takes:
        # the threshold, a few polls and a slow machine's submission.
        quiet_s = threshold + 10 * bed.poll_seconds + 60
        cap = deadline_s if deadline_s is not None else fault_end + 20 * quiet_s
        states: dict[str, dict[str, Any]] = {}
        progress, last_progress = None, time.monotonic()
        # RunTasks are counted every second from the proxy's record; the runs' states are read
        # every 5 s only: reading 100 runs is work for the server the harness should not add.
        last_read = 0.0
        while time.monotonic() - t0 < cap and time.monotonic() - max(last_progress, t0 + fault_end) < quiet_s:
            time.sleep(1.0)
            if actor is not None and actor.is_alive():
                last_progress = time.monotonic()
                continue
            done = submitted()
            if len(done) == runs:
                break
            if time.monotonic() - last_read < 5:
                continue
            last_read = time.monotonic()
            try:
                states = bed.states(run_ids)
            except (urllib.error.URLError, OSError):
                continue
            now = (len(proxy.run_tasks), sorted((r, s["type"], s["name"]) for r, s in states.items()))
            if now != progress:
                progress, last_progress = now, time.monotonic()
            if all(r in done or states.get(r, {}).get("type") in FINAL for r in run_ids):
                break
        # A run returned to Scheduled by mistake would be submitted again within a threshold and a
        # poll: watch that long once everything has a task (slow start: until after the threshold).
        settle = (threshold + 2 * bed.poll_seconds + 10) if scenario == "slow-start" else 3.0
        time.sleep(settle)
    finally:  # workers stopped by PID even when the burst is interrupted
        if standin is not None:
            standin.halt.set()
        for process, _ in started:
            stop(process)
    states = bed.states(run_ids)
    tasks = bed.tasks_by_run(set(run_ids))
    first = submitted()
    latencies = [first[r] - t0 for r in run_ids if r in first]
    crashed = {r: s for r, s in states.items() if s["type"] == "CRASHED"}
    reasons: dict[str, int] = {}
    for state in crashed.values():
        reason = (state.get("message") or "")[:120]
        reasons[reason] = reasons.get(reason, 0) + 1
    lost = [r for r in run_ids if not tasks.get(r) and states[r]["type"] in ("SCHEDULED", "PENDING")]
    successes = sorted(call.at for call in proxy.run_tasks if call.status == 200)
    rate = (len(successes) - 1) / (successes[-1] - successes[0]) if len(successes) > 1 and \
        successes[-1] > successes[0] else None
    figures = Figures(
        scenario=scenario, runs=runs, lost=len(lost),
        duplicated=sum(1 for r in run_ids if len(tasks.get(r, [])) > 1),
        crashed=len(crashed), crash_reasons=reasons,
        rescheduled=bed.rescheduled(set(run_ids), wall_since),
        all_submitted_s=round(max(latencies), 2) if len(latencies) == runs else None,
        p50_s=_round(percentile(latencies, 0.5)), p95_s=_round(percentile(latencies, 0.95)),
        run_task_rate=_round(rate), refused=sum(proxy.refused.values()),
        wall_s=round(time.monotonic() - began, 1), notes=notes)
    bed.delete_runs(run_ids)
    return figures


def _epoch(timestamp: str) -> float:
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 2)
