"""Flow runs driven through a Prefect server's API as a worker and a flow drive them, at a set rate.

Each run goes through its whole life (`RunShape`), with the calls Prefect 3.9.1 makes for it:

1. created from a deployment (`POST /deployments/{id}/create_flow_run`), as a schedule would;
2. the worker: one poll loop for all runs (`get_scheduled_flow_runs` every `poll_seconds`, a
   heartbeat every 30 s); for each run it picks up, `Pending`, a read of the deployment and the
   flow for the job configuration, then `Submitting` (a PENDING-type state) before RunTask;
3. the flow-run container, `CONTAINER_START_S` later: reads its run, checks the server version and
   opens the events websocket (`/api/events/in`) as Prefect's events client does, `Running`;
   `task_runs` task runs, each Pending -> Running -> Completed as state events over the websocket
   (3.9.1 sends task runs as events, not REST; the server's task-run recorder writes them), its
   `log_lines` log lines in `log_batches` POSTs to `/logs/` (the API log handler batches them),
   then `Completed`.

Every REST call is timed; an HTTP error, a timeout, a dropped connection or an orchestration
answer other than ACCEPT counts as an error. A step offers runs at a fixed interval (open loop: a
slow server does not slow the offer, as schedules do not wait) and reports what was completed,
the latency of the calls that started in it, and its errors.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

import httpx

CONTAINER_START_S = 1.0  # the task's start, shortened: ECS would take 30-60 s, the API sees nothing
TASK_RUN_S = 0.2  # each task's own work
HEARTBEAT_S = 30.0  # the worker's heartbeat interval (Prefect's default)
CALL_TIMEOUT_S = 30.0
MAX_IN_FLIGHT = 300  # runs between creation and Completed; past it the server is not keeping up


@dataclass(frozen=True)
class RunShape:
    task_runs: int = 5
    log_lines: int = 20
    log_batches: int = 2

    def describe(self) -> str:
        return (f"created from a deployment, Pending, Submitting, Running, {self.task_runs} task "
                f"runs (3 state events each), {self.log_lines} log lines in {self.log_batches} "
                f"POSTs, Completed")


@dataclass
class Call:
    started: float
    seconds: float
    what: str
    error: Optional[str] = None


@dataclass
class StepFigures:
    offered_per_min: float
    seconds: float
    created: int
    completed: int
    calls: int
    p50_s: Optional[float]
    p95_s: Optional[float]
    errors: int
    error_kinds: dict[str, int] = field(default_factory=dict)
    in_flight_at_end: int = 0

    @property
    def completed_per_min(self) -> float:
        return round(self.completed / self.seconds * 60, 2)


def percentile(values: list[float], fraction: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class FlowRunLoad:
    """The driver; `await start()`, `await step(rate, seconds)` per step, `await close()`."""

    def __init__(self, api_urls: list[str], auth_string: Optional[str], pool: str, shape: RunShape,
                 poll_seconds: float = 10.0):
        """Several `api_urls` (ha's API tasks) take the calls in turn, as a load balancer's
        round robin does, and each run's websocket goes to the next one."""
        self.api_urls = [url.rstrip("/") for url in api_urls]
        self._turn = 0
        self.auth_string = auth_string
        self.pool = pool
        self.shape = shape
        self.poll_seconds = poll_seconds
        self.calls: list[Call] = []
        self.completed_at: list[float] = []
        self.created_at: list[float] = []
        self.in_flight: set[str] = set()
        self.claimed: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._background: list[asyncio.Task] = []
        headers = {"Content-Type": "application/json"}
        if auth_string:
            headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
        self.clients = [httpx.AsyncClient(base_url=url, headers=headers, timeout=CALL_TIMEOUT_S,
                                          limits=httpx.Limits(max_connections=200))
                        for url in self.api_urls]
        self.deployment_id = ""
        self.flow_id = ""
        self.worker_name = f"capacity-{uuid.uuid4().hex[:8]}"

    # --- calls ---------------------------------------------------------------------------------

    def _next(self) -> int:
        self._turn = (self._turn + 1) % len(self.api_urls)
        return self._turn

    async def call(self, method: str, path: str, body: Any = None, what: str = "") -> Any:
        started = time.monotonic()
        error = None
        result = None
        try:
            response = await self.clients[self._next()].request(method, path, json=body)
            if response.status_code >= 400:
                error = f"HTTP {response.status_code}"
            elif response.content:
                result = response.json()
                if path.endswith("/set_state") and result.get("status") != "ACCEPT":
                    error = f"orchestration {result.get('status')}"
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        self.calls.append(Call(started, time.monotonic() - started, what or path, error))
        return result if error is None else None

    async def set_state(self, run_id: str, type_: str, name: str) -> bool:
        answer = await self.call("POST", f"/flow_runs/{run_id}/set_state",
                                 {"state": {"type": type_, "name": name}}, what=f"set_state {name}")
        return answer is not None

    # --- set-up and the worker's loops ---------------------------------------------------------

    async def _csrf(self) -> None:
        """Each client's CSRF token, fetched once as Prefect's client does; none where the server
        answers that protection is off (422) or has no such route (404)."""
        for client in self.clients:
            client_id = str(uuid.uuid4())
            response = await client.get(f"/csrf-token?client={client_id}")
            if response.status_code in (404, 422):
                continue
            response.raise_for_status()
            client.headers.update({"Prefect-Csrf-Token": response.json()["token"],
                                   "Prefect-Csrf-Client": client_id})

    async def start(self, flow_name: str = "capacity") -> None:
        await self._csrf()
        flow = await self.call("POST", "/flows/", {"name": flow_name}, what="setup")
        deployment = await self.call("POST", "/deployments/", {
            "name": flow_name, "flow_id": flow["id"], "work_pool_name": self.pool,
            "entrypoint": "flows.py:capacity", "path": "/opt/flows"}, what="setup")
        if not deployment:
            raise RuntimeError(f"could not create the deployment on pool {self.pool}")
        self.flow_id, self.deployment_id = flow["id"], deployment["id"]
        self.calls.clear()
        self._background = [asyncio.create_task(self._poll_loop()),
                            asyncio.create_task(self._heartbeat_loop())]

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.call("POST", f"/work_pools/{self.pool}/workers/heartbeat",
                            {"name": self.worker_name, "heartbeat_interval_seconds": int(HEARTBEAT_S)},
                            what="heartbeat")
            await asyncio.sleep(HEARTBEAT_S)

    async def _poll_loop(self) -> None:
        while True:
            before = (datetime.datetime.now(datetime.timezone.utc)
                      + datetime.timedelta(seconds=self.poll_seconds)).isoformat()
            answer = await self.call("POST", f"/work_pools/{self.pool}/get_scheduled_flow_runs",
                                     {"scheduled_before": before, "limit": 100}, what="poll")
            for item in answer or []:
                run = item["flow_run"]
                if run["id"] not in self.claimed:
                    self.claimed.add(run["id"])
                    self._spawn(self._submit_and_run(run["id"]))
            await asyncio.sleep(self.poll_seconds)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _create(self) -> None:
        if len(self.in_flight) >= MAX_IN_FLIGHT:
            self.calls.append(Call(time.monotonic(), 0.0, "create", "shed: too many in flight"))
            return
        run = await self.call("POST", f"/deployments/{self.deployment_id}/create_flow_run", {},
                              what="create")
        if run:
            self.in_flight.add(run["id"])
            self.created_at.append(time.monotonic())

    # --- one run, as the worker and then its container drive it -------------------------------

    async def _submit_and_run(self, run_id: str) -> None:
        try:
            if not await self.set_state(run_id, "PENDING", "Pending"):
                return
            await self.call("GET", f"/deployments/{self.deployment_id}", what="worker reads")
            await self.call("GET", f"/flows/{self.flow_id}", what="worker reads")
            if not await self.set_state(run_id, "PENDING", "Submitting"):
                return
            await asyncio.sleep(CONTAINER_START_S)
            await self._execute(run_id)
        finally:
            self.in_flight.discard(run_id)

    async def _execute(self, run_id: str) -> None:
        from prefect.events.clients import PrefectEventsClient

        await self.call("GET", f"/flow_runs/{run_id}", what="flow reads")
        if not await self.set_state(run_id, "RUNNING", "Running"):
            return
        started = time.monotonic()
        try:
            # Its own websocket, as each flow-run container has; the client checks the version.
            async with PrefectEventsClient(api_url=self.api_urls[self._next()]) as events:
                self.calls.append(Call(started, time.monotonic() - started, "events connect"))
                per_batch = max(1, self.shape.log_lines // self.shape.log_batches)
                logged = 0
                for index in range(self.shape.task_runs):
                    await self._task_run(events, run_id, index)
                    due = (index + 1) * self.shape.log_batches // self.shape.task_runs
                    while logged < min(due, self.shape.log_batches):
                        await self._logs(run_id, per_batch)
                        logged += 1
                while logged < self.shape.log_batches:
                    await self._logs(run_id, per_batch)
                    logged += 1
        except Exception as exc:  # a websocket refused or dropped is an error
            self.calls.append(Call(started, time.monotonic() - started, "events",
                                   f"events: {type(exc).__name__}"))
            return
        if await self.set_state(run_id, "COMPLETED", "Completed"):
            self.completed_at.append(time.monotonic())

    async def _logs(self, run_id: str, count: int) -> None:
        now = _now_iso()
        await self.call("POST", "/logs/", [
            {"name": "prefect.flow_runs", "level": 20, "message": f"log line {i} of the flow",
             "timestamp": now, "flow_run_id": run_id} for i in range(count)], what="logs")

    async def _task_run(self, events: Any, run_id: str, index: int) -> None:
        from prefect.events import Event

        task_run_id = str(uuid.uuid4())
        name = f"task-{index}"
        previous: Optional[tuple[str, str]] = None
        follows = None
        for state_type, state_name in (("PENDING", "Pending"), ("RUNNING", "Running"),
                                       ("COMPLETED", "Completed")):
            state_id = uuid.uuid4()
            occurred = datetime.datetime.now(datetime.timezone.utc)
            event = Event.model_validate(dict(
                id=state_id, occurred=occurred, event=f"prefect.task-run.{state_name}",
                resource={"prefect.resource.id": f"prefect.task-run.{task_run_id}",
                          "prefect.resource.name": name, "prefect.run-count": "1",
                          "prefect.state-message": "", "prefect.state-name": state_name,
                          "prefect.state-timestamp": occurred.isoformat(),
                          "prefect.state-type": state_type, "prefect.orchestration": "client"},
                related=[{"prefect.resource.id": f"prefect.flow-run.{run_id}",
                          "prefect.resource.role": "flow-run"},
                         {"prefect.resource.id": f"prefect.flow.{self.flow_id}",
                          "prefect.resource.role": "flow"},
                         {"prefect.resource.id": f"prefect.deployment.{self.deployment_id}",
                          "prefect.resource.role": "deployment"}],
                payload={
                    "intended": {"from": previous[0] if previous else None, "to": state_type},
                    "initial_state": ({"type": previous[0], "name": previous[1], "message": "",
                                       "state_details": {}} if previous else None),
                    "validated_state": {"type": state_type, "name": state_name, "message": "",
                                        "state_details": {}, "data": None},
                    "task_run": {"name": name, "task_key": f"capacity-task-{index}",
                                 "dynamic_key": str(index), "empirical_policy": {},
                                 "tags": [], "task_inputs": {}, "run_count": 1,
                                 "flow_run_run_count": 1, "expected_start_time": occurred.isoformat()},
                },
                follows=follows,
            ))
            await events.emit(event)
            follows = state_id
            previous = (state_type, state_name)
            if state_type == "RUNNING":
                await asyncio.sleep(TASK_RUN_S)

    # --- steps ---------------------------------------------------------------------------------

    async def step(self, runs_per_min: float, seconds: float) -> StepFigures:
        """Offer `runs_per_min` for `seconds`; the figures of what happened meanwhile."""
        begin = time.monotonic()
        interval = 60.0 / runs_per_min
        offered = 0
        while True:
            due = begin + offered * interval
            if due >= begin + seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self._spawn(self._create())
            offered += 1
        await asyncio.sleep(max(0.0, begin + seconds - time.monotonic()))
        end = time.monotonic()
        return self.figures(runs_per_min, begin, end)

    def figures(self, runs_per_min: float, begin: float, end: float) -> StepFigures:
        calls = [c for c in self.calls if begin <= c.started < end]
        errors = [c for c in calls if c.error]
        kinds: dict[str, int] = {}
        for call in errors:
            key = f"{call.what}: {call.error}"
            kinds[key] = kinds.get(key, 0) + 1
        latencies = [c.seconds for c in calls if not c.error]
        return StepFigures(
            offered_per_min=runs_per_min, seconds=round(end - begin, 1),
            created=sum(1 for t in self.created_at if begin <= t < end),
            completed=sum(1 for t in self.completed_at if begin <= t < end),
            calls=len(calls), p50_s=_round(percentile(latencies, 0.5)),
            p95_s=_round(percentile(latencies, 0.95)), errors=len(errors), error_kinds=kinds,
            in_flight_at_end=len(self.in_flight))

    async def drain(self, seconds: float) -> None:
        """Let the runs in flight finish, for at most `seconds`."""
        deadline = time.monotonic() + seconds
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        for task in [*self._background, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._background, *self._tasks, return_exceptions=True)
        for client in self.clients:
            await client.aclose()

    async def task_runs_recorded(self) -> int:
        """Task runs the server's recorder wrote for this deployment's flow (a check that the
        events were real work, not dropped)."""
        answer = await self.call("POST", "/task_runs/count",
                                 {"flows": {"id": {"any_": [self.flow_id]}}}, what="check")
        return int(answer or 0)


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 3)
