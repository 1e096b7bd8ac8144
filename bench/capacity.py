"""What the declared sizes carry: flow runs a minute on the `single` server, submissions a minute
of one worker, each process held to its task's CPU and memory.

    python -m bench.capacity [--quick] [--parts single,ha,worker] [--steps 5,10,20]
                             [--step-seconds 120] [--worker-runs 100] [--no-record]
    make bench-capacity      # single and worker at nice -10, recording bench/results/capacity.json
    make bench-capacity CAPACITY_ARGS="--parts ha --merge"   # adds ha to the record

Needs root: each measured process runs inside cgroups equal to its task definition's `cpu` and
`memory` (testbed/cgroups.py); without root it says so and exits 2.

- **single:** the first stack file with `prefectServer: single`, replayed into moto; its
  `prefect-server` container started as ECS starts it (testbed/server_containers.py: its command,
  environment and secrets, only the database endpoint and listening address local) on a loopback
  PostgreSQL set up as RDS would be, inside the server task's limits. The stack's own
  `prefect-work-pool` container creates the pool. Then flow runs are offered at each step's rate
  (testbed/flow_run_load.py: the whole life of a run as the worker and the flow drive it, shape
  `SHAPE`), and each step records runs completed a minute, p50/p95 API latency, errors and the
  server's CPU (cpuacct) and memory (RSS sampled, its peak), and PostgreSQL's CPU (a measuring
  group without limits). A step is held when its p95 is at most
  `P95_LIMIT_S`, it has no error, and no backlog builds (`backlog_limit`). Capacity is the highest
  step held for `STEP_SECONDS`; the ramp stops at the first step not held.
- **worker:** the dev stack's declared worker container inside its task's limits, on moto and a
  Prefect server on PostgreSQL (testbed/burst.py, the steady scenario without faults): `WORKER_RUNS`
  runs released at once, submissions a minute from the RunTasks the worker made, and where its
  time went (CPU used per submission, time held back by its CPU quota, the median of each phase
  of a submission from its log lines). The stuck-Pending threshold there is the stack's floor.

The last line is one JSON object keyed by what was measured; the full record (steps, sizes, the
machine's load average, which skews every figure on a shared machine) goes to
`bench/results/capacity.json` unless `--quick` or `--no-record`. `python -m scripts.doc_tables
--write` makes the sizing table in docs/sizing.md from it. `--quick` proves the machinery in a few
minutes (short steps, few runs, the parts side by side): its figures are not capacity.
`--parts ha` measures `ha` (`--merge` adds it to the record): the first stack file with
`prefectServer: ha`, migrated once, each declared API task and the services task in its own
limits, on Redis (TLS, the stack's token), the calls spread over the APIs in turn as its load
balancer does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from testbed.cgroups import CgroupsUnavailable, RssSampler, TaskLimits, check_available
from testbed.flow_run_load import FlowRunLoad, RunShape, StepFigures, percentile

RESULTS = Path(__file__).resolve().parent / "results"
RECORD = RESULTS / "capacity.json"
SHAPE = RunShape(task_runs=5, log_lines=20, log_batches=2)
P95_LIMIT_S = 1.0
STEP_SECONDS = 120.0  # a step is held for 2 minutes
# Runs a minute offered at each step. A run of SHAPE costs the server about 0.9 CPU-seconds
# (measured here), so a quarter vCPU tops out near 15 a minute and a vCPU near 60: the
# steps bracket that, and the ramp stops at the first step not held (at most 7 x 2 min).
STEPS = (5, 10, 15, 20, 30, 45, 60)
QUICK_STEPS = (6, 12)
QUICK_STEP_SECONDS = 20.0
# --quick polls every 2 s instead of the worker's declared interval, so that runs complete within
# its short steps.
QUICK_POLL_SECONDS = 2.0
WORKER_RUNS = 100
QUICK_WORKER_RUNS = 5
# The stuck-Pending automation's threshold on the worker's bed: the stack's 10-minute floor, so a
# slow submission is measured, not rescheduled and submitted twice.
STUCK_PENDING_S = 600
HEALTHY_WITHIN_S = 300  # a quarter vCPU needs ~35 s idle; minutes on a loaded 2-core machine
DRAIN_S = 60.0


def backlog_limit(runs_per_min: float, poll_seconds: float) -> float:
    """Runs that may be in flight at a step's end without a backlog: those created within one
    poll interval and a run's own life (about 15 s here), plus two."""
    return runs_per_min / 60 * (poll_seconds + 15) + 2


def held(step: StepFigures, poll_seconds: float) -> bool:
    return (step.p95_s is not None and step.p95_s <= P95_LIMIT_S and step.errors == 0
            and step.in_flight_at_end <= backlog_limit(step.offered_per_min, poll_seconds))


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def log(message: str) -> None:
    print(message, flush=True)


# --- single -----------------------------------------------------------------------------------

def task_size(definition: Any) -> tuple[int, int]:
    return int(definition.inputs["cpu"]), int(definition.inputs["memory"])


def declared_poll_seconds(evaluation: Any) -> float:
    """The worker's poll interval: its container's PREFECT_WORKER_QUERY_SECONDS, else Prefect's."""
    from prefect.settings import PREFECT_WORKER_QUERY_SECONDS

    from testbed.server_containers import find_container

    _, container = find_container(evaluation, "prefect-worker")
    env = {item["name"]: item["value"] for item in container.get("environment", [])}
    return float(env.get("PREFECT_WORKER_QUERY_SECONDS", PREFECT_WORKER_QUERY_SECONDS.value()))


def measure_server(mode: str, workdir: Path, steps: tuple[float, ...], step_seconds: float,
                   poll_seconds: Optional[float] = None) -> dict[str, Any]:
    """`prefect-migrate` once, then `single`: the `prefect-server` container; `ha`: each declared API
    task (`prefect-api`) and the services task (`prefect-services`) on Redis, the calls spread
    over the APIs in turn as the ALB does. Each process in its own task's limits."""
    from components.server.migrate import CA_BUNDLE_ENV
    from testbed.databases import start_postgres, start_redis
    from testbed.prefect_worker import deploy
    from testbed.server_containers import (
        Endpoint, container_launch, family_of, find_container, resolve_value_from, serve_rds_master,
        server_evaluation, server_stack_name)
    from testbed.servers import MotoServer, spawn, stop, wait_for_http

    evaluation = server_evaluation(mode)
    workdir = workdir / mode
    workdir.mkdir()
    moto = MotoServer(workdir)
    database = redis = None
    groups: dict[str, TaskLimits] = {}
    processes: list[Any] = []
    try:
        stack = deploy(evaluation, moto, prefect_api_url=None)
        database = start_postgres(user="postgres", database="postgres", ssl=True)
        serve_rds_master(stack.replayed, database)
        assert database.ca_file is not None  # started with ssl
        # PostgreSQL unlimited, measured only: its CPU per run sizes the database class.
        database_group = TaskLimits(f"capacity-{os.getpid()}-{mode}-database", None, None).create()
        groups["database"] = database_group
        database_group.adopt(database._process.pid)
        # The test PostgreSQL's own CA in place of the RDS root CAs: the one TLS seam.
        database_endpoints: dict[str, Endpoint] = {
            "PREFECT_SERVER_DATABASE_HOST": "127.0.0.1",
            "PREFECT_SERVER_DATABASE_PORT": str(database.port),
            CA_BUNDLE_ENV: database.ca_file.read_text()}
        endpoints, extra = dict(database_endpoints), {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        if mode == "ha":
            _, api_container = find_container(evaluation, "prefect-api")
            (token,) = [item["valueFrom"] for item in stack.replayed.real(api_container)["secrets"]
                        if item["name"] == "PREFECT_REDIS_MESSAGING_PASSWORD"]
            redis = start_redis(resolve_value_from(stack.replayed, token), tls=True)
            endpoints.update({"PREFECT_REDIS_MESSAGING_HOST": redis.host,
                              "PREFECT_REDIS_MESSAGING_PORT": str(redis.port)})
            extra["SSL_CERT_FILE"] = str(redis.ca_file)  # ElastiCache's CA, the image trusts it

        def launch(container: str, home: str) -> Any:
            return container_launch(evaluation, stack.replayed, container, home=workdir / home,
                                    endpoints=endpoints, extra_env=extra)

        # Migrate once, before the server tasks start (the declared dependsOn): ha's from the API
        # task's family, single's from its one task; the database only, as the container has.
        first = "prefect-api" if mode == "ha" else "prefect-server"
        family = family_of(evaluation, first)
        migrate = container_launch(
            evaluation, stack.replayed, "prefect-migrate", family=family,
            home=workdir / "migrate-home", endpoints=database_endpoints,
            extra_env={"PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        code, output = migrate.run(workdir / "migrate.log", HEALTHY_WITHIN_S)
        if code != 0:
            raise RuntimeError(f"prefect-migrate exited {code}: {output[-1500:]}")
        if mode == "ha":
            api_count = next(int(r.inputs["desiredCount"])
                             for r in evaluation.of_type("aws:ecs/service:Service")
                             if r.inputs["taskDefinition"].rsplit("/", 1)[1].startswith(family + ":"))
            roles = [(f"api-{i}", "prefect-api") for i in range(api_count)]
            roles.append(("services", "prefect-services"))
        else:
            roles = [("server", "prefect-server")]
        launches: dict[str, Any] = {}
        started = time.monotonic()
        for role, container in roles:
            launches[role] = launch(container, f"{role}-home")
            cpu, memory = task_size(launches[role].task_definition)
            groups[role] = TaskLimits(f"capacity-{os.getpid()}-{mode}-{role}", cpu, memory).create()
            processes.append(spawn(groups[role].wrap(launches[role].command), launches[role].env,
                                   workdir / f"{role}.log"))
        apis = [role for role, container in roles if container != "prefect-services"]
        for role in apis:
            wait_for_http(f"{launches[role].api_url}/health", HEALTHY_WITHIN_S,
                          processes[list(launches).index(role)])
        healthy_s = round(time.monotonic() - started, 1)
        cpu, memory = task_size(launches[apis[0]].task_definition)
        log(f"{mode}: {', '.join(launches)} at {cpu} CPU units / {memory} MiB each, healthy after "
            f"{healthy_s} s")
        api_urls = [launches[role].api_url for role in apis]
        bootstrap = container_launch(evaluation, stack.replayed, "prefect-work-pool",
                                     home=workdir / "pool-home",
                                     endpoints={"PREFECT_API_URL": api_urls[0]})
        code, output = bootstrap.run(workdir / "work-pool.log", 300)
        if code != 0:
            raise RuntimeError(f"prefect-work-pool exited {code}: {output[-1500:]}")
        poll_seconds = poll_seconds or declared_poll_seconds(evaluation)
        server_groups = {role: groups[role] for role in launches}
        with RssSampler(list(server_groups.values())):
            figures = asyncio.run(ramp(api_urls, launches[apis[0]].env.get("PREFECT_SERVER_API_AUTH_STRING"),
                                       stack.exports["workPoolName"], server_groups,
                                       database_group, steps, step_seconds, poll_seconds))
        figures.update({"stack": server_stack_name(mode) or "dev", "cpu_units": cpu,
                        "memory_mib": memory, "processes": list(launches),
                        "healthy_after_s": healthy_s, "poll_seconds": poll_seconds,
                        "oom_kills": sum(g.oom_kills() for g in server_groups.values())})
        for role, process in zip(launches, processes, strict=True):
            if process.poll() is not None:
                figures["notes"].append(f"{role} exited with {process.returncode} during the ramp")
        return figures
    finally:
        for process in processes:
            stop(process)
        for group in groups.values():
            group.remove()
        for server in (redis, database):
            if server is not None:
                server.stop()
        moto.stop()


async def ramp(api_urls: list[str], auth_string: Optional[str], pool: str,
               servers: dict[str, TaskLimits], database: TaskLimits, steps: tuple[float, ...],
               step_seconds: float, poll_seconds: float) -> dict[str, Any]:
    """The steps, each recording the server processes' CPU (summed) and memory (the largest
    process's peak), and PostgreSQL's CPU."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    def total(read: str) -> dict[str, float]:
        return {role: getattr(group, read)() for role, group in servers.items()}

    records: list[dict[str, Any]] = []
    capacity: Optional[dict[str, Any]] = None
    with temporary_settings(updates={PREFECT_API_URL: api_urls[0],
                                     PREFECT_API_AUTH_STRING: auth_string}):
        load = FlowRunLoad(api_urls, auth_string, pool, SHAPE, poll_seconds=poll_seconds)
        try:
            await load.start()
            for rate in steps:
                for group in servers.values():
                    group.reset_memory_peak()
                cpu_before, throttled_before = total("cpu_seconds"), total("throttled_seconds")
                database_before = database.cpu_seconds()
                step = await load.step(rate, step_seconds)
                cpu_by_role = {role: used - cpu_before[role]
                               for role, used in total("cpu_seconds").items()}
                cpu_used = sum(cpu_by_role.values())
                throttled = max(after - throttled_before[role]
                                for role, after in total("throttled_seconds").items())
                database_used = database.cpu_seconds() - database_before
                record = {
                    **asdict(step), "completed_per_min": step.completed_per_min,
                    "held": held(step, poll_seconds),
                    "server_cpu_vcpu": round(cpu_used / step.seconds, 3),
                    "server_cpu_s_per_run": round(cpu_used / step.completed, 3) if step.completed else None,
                    "server_throttled_share": round(throttled / step.seconds, 3),
                    "server_memory_peak_mib": round(max(total("memory_peak_mib").values()), 1),
                    "server_rss_peak_mib": round(max(g.rss_peak for g in servers.values()), 1),
                    "server_memory_mib": round(max(total("memory_mib_now").values()), 1),
                    "database_cpu_vcpu": round(database_used / step.seconds, 3),
                    "database_cpu_s_per_run": (round(database_used / step.completed, 3)
                                               if step.completed else None),
                    "load_average": load_average(),
                }
                if len(servers) > 1:
                    record["cpu_vcpu_by_process"] = {role: round(used / step.seconds, 3)
                                                     for role, used in cpu_by_role.items()}
                records.append(record)
                log(f"  {rate:>5g} runs/min offered: {step.completed_per_min:>6.1f} completed/min, "
                    f"p50 {step.p50_s} s, p95 {step.p95_s} s, {step.errors} errors, "
                    f"{step.in_flight_at_end} in flight, server {record['server_cpu_vcpu']} vCPU "
                    f"(throttled {record['server_throttled_share']}), "
                    f"{record['server_memory_peak_mib']} MiB peak, database {record['database_cpu_vcpu']} "
                    f"vCPU, load {record['load_average'][0]}"
                    f" -> {'held' if record['held'] else 'NOT held'}")
                if step.error_kinds:
                    log(f"    errors: {step.error_kinds}")
                if not record["held"]:
                    break
                capacity = record
            await load.drain(DRAIN_S)
            completed = len(load.completed_at)
            recorded = await load.task_runs_recorded()
            log(f"  {recorded} of {completed * SHAPE.task_runs} task runs recorded by the server")
        finally:
            await load.close()
    best = capacity or max(records, key=lambda r: r["completed_per_min"])
    return {
        "runs_per_min": best["completed_per_min"], "capacity_step_per_min": (
            capacity["offered_per_min"] if capacity else 0),
        "held": capacity is not None, "p50_s": best["p50_s"], "p95_s": best["p95_s"],
        "errors": best["errors"], "server_cpu_s_per_run": best["server_cpu_s_per_run"],
        "database_cpu_s_per_run": best["database_cpu_s_per_run"],
        "server_memory_peak_mib": max(r["server_memory_peak_mib"] for r in records),
        "server_rss_peak_mib": max(r["server_rss_peak_mib"] for r in records),
        "task_runs_expected": completed * SHAPE.task_runs, "task_runs_recorded": recorded,
        "steps": records, "notes": [],
    }


# --- worker -----------------------------------------------------------------------------------

# A submission's phases, each from the first worker log line of a run starting with the text to
# the first of the next (prefect-aws 0.7.12's ECS worker messages).
PHASES = (
    ("prepare (job configuration; waits behind the worker's other submissions)", "Worker '"),
    ("task definition (ECS Describe/Register)", "Retrieving "),
    ("RunTask (ECS)", "Creating ECS task run"),
    ("report (Prefect API: state)", "Created ECS task"),
    ("", "Flow run '"),
)


def submission_phases(log_paths: list[Path]) -> dict[str, Optional[float]]:
    """Median seconds of each phase of a submission, from the workers' JSON log lines."""
    from testbed.prefect_worker import json_log

    marks: dict[str, dict[int, float]] = {}
    for path in log_paths:
        records, _ = json_log(path.read_text(errors="replace"))
        for record in records:
            run, message = record.get("flow_run_id"), str(record.get("message", ""))
            if not run or "created" not in record:
                continue
            for index, (_, start) in enumerate(PHASES):
                if message.startswith(start) and (index > 0 or "submitting flow run" in message):
                    marks.setdefault(run, {}).setdefault(index, float(record["created"]))
    phases: dict[str, Optional[float]] = {}
    for index, (name, _) in enumerate(PHASES[:-1]):
        spans = [m[index + 1] - m[index] for m in marks.values() if index in m and index + 1 in m]
        median = percentile(spans, 0.5)
        phases[name] = None if median is None else round(median, 3)
    return phases


def measure_worker(workdir: Path, runs: int) -> dict[str, Any]:
    from testbed.burst import Bed, postgres_database, run_burst
    from testbed.server_containers import find_container
    from tools.mock_engine import evaluate_stack

    evaluation = evaluate_stack("dev")
    definition, _ = find_container(evaluation, "prefect-worker")
    cpu, memory = task_size(definition)
    limits = TaskLimits(f"capacity-{os.getpid()}-worker", cpu, memory).create()
    database, env = postgres_database()
    bed = None
    try:
        (workdir / "worker-bed").mkdir()
        bed = Bed(workdir / "worker-bed", poll_seconds=declared_poll_seconds(evaluation),
                  pending_seconds=STUCK_PENDING_S, prefect_env=env, launcher=limits.wrap)
        # From the release of the runs: the worker's start (imports, ~2 CPU-s) is not submission.
        at_release: dict[str, float] = {}

        def release() -> None:
            limits.reset_memory_peak()
            at_release.update(cpu=limits.cpu_seconds(), throttled=limits.throttled_seconds(),
                              wall=time.monotonic())

        with RssSampler([limits]):
            figures = run_burst(bed, "steady", runs=runs, workers=1, log=log, on_release=release)
        wall = time.monotonic() - at_release["wall"]
        cpu_used = limits.cpu_seconds() - at_release["cpu"]
        phases = submission_phases(sorted(bed.workdir.glob("worker-*/worker.log")))
        throttled = limits.throttled_seconds() - at_release["throttled"]
        submitted = runs - figures.lost
        rate = figures.run_task_rate
        result = {
            "submissions_per_min": round(rate * 60, 1) if rate else (
                round(submitted / figures.all_submitted_s * 60, 1) if figures.all_submitted_s else 0),
            "runs": runs, "p50_s": figures.p50_s, "p95_s": figures.p95_s,
            "errors": figures.lost + figures.crashed + figures.duplicated,
            "lost": figures.lost, "crashed": figures.crashed, "duplicated": figures.duplicated,
            "crash_reasons": figures.crash_reasons,
            "all_submitted_s": figures.all_submitted_s, "cpu_units": cpu, "memory_mib": memory,
            "poll_seconds": bed.poll_seconds,
            # Where the time goes: the worker's own CPU per submission, against its quota.
            "worker_cpu_s_per_submission": round(cpu_used / submitted, 3) if submitted else None,
            "worker_cpu_vcpu": round(cpu_used / wall, 3),
            "worker_throttled_share": round(throttled / wall, 3),
            "worker_memory_peak_mib": round(limits.memory_peak_mib(), 1),
            "worker_rss_peak_mib": round(limits.rss_peak, 1),
            "submission_phases_p50_s": phases,
            "oom_kills": limits.oom_kills(), "load_average": load_average(),
        }
        log(f"worker at {cpu} CPU units / {memory} MiB: {result['submissions_per_min']} "
            f"submissions/min, all {runs} submitted in {figures.all_submitted_s} s, "
            f"{result['worker_cpu_s_per_submission']} CPU-s each, throttled "
            f"{result['worker_throttled_share']} of the time, {result['errors']} errors")
        return result
    finally:
        if bed is not None:
            bed.close()
        limits.remove()
        database.stop()


# --- the record -------------------------------------------------------------------------------

def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The last line: the headline figures of each part measured."""
    server = ("runs_per_min", "capacity_step_per_min", "p95_s", "errors", "cpu_units", "memory_mib",
              "server_cpu_s_per_run", "database_cpu_s_per_run", "server_rss_peak_mib")
    keys = {"single": server, "ha": server,
            "worker": ("submissions_per_min", "p95_s", "errors", "cpu_units", "memory_mib",
                       "worker_cpu_s_per_submission", "worker_throttled_share",
                       "worker_rss_peak_mib")}
    out: dict[str, Any] = {part: {k: results[part][k] for k in fields}
                           for part, fields in keys.items() if part in results}
    out["load_average"] = results["load_average"]
    return out


def side_by_side(argv: list[str], parts: list[str], workdir: Path) -> dict[str, Any]:
    """Each part by `python -m bench.capacity <argv> --parts <part>` at once; their figures."""
    argv = [a for i, a in enumerate(argv) if a != "--parts" and (i == 0 or argv[i - 1] != "--parts")
            and not a.startswith("--parts=")]
    outputs = {part: workdir / f"{part}.json" for part in parts}
    processes = {part: subprocess.Popen([sys.executable, "-m", "bench.capacity", *argv,
                                         "--parts", part, "--part-output", str(outputs[part])])
                 for part in parts}
    failed = [part for part, process in processes.items() if process.wait() != 0]
    if failed:
        raise RuntimeError(f"part(s) {', '.join(failed)} failed: see the output above")
    results: dict[str, Any] = {}
    for output in outputs.values():
        results.update(json.loads(output.read_text()))
    return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short steps, few runs: proves the "
                        "machinery, records nothing")
    parser.add_argument("--steps", help="runs a minute per step, comma-separated")
    parser.add_argument("--step-seconds", type=float)
    parser.add_argument("--worker-runs", type=int)
    parser.add_argument("--parts", default="single,worker")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--merge", action="store_true", help="update only the parts measured in "
                        "the existing record (each part states its own date and load)")
    parser.add_argument("--part-output", type=Path, help=argparse.SUPPRESS)  # a side-by-side part
    args = parser.parse_args(argv)
    try:
        check_available()
    except CgroupsUnavailable as error:
        print(f"bench-capacity cannot hold processes to their task sizes: {error}", file=sys.stderr)
        return 2
    steps = tuple(float(s) for s in args.steps.split(",")) if args.steps else (
        QUICK_STEPS if args.quick else STEPS)
    step_seconds = args.step_seconds or (QUICK_STEP_SECONDS if args.quick else STEP_SECONDS)
    worker_runs = args.worker_runs or (QUICK_WORKER_RUNS if args.quick else WORKER_RUNS)
    parts = args.parts.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="capacity-bench-"))
    began = time.monotonic()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "quick": args.quick,
        "niceness": os.nice(0), "load_average_at_start": load_average(),
        "shape": SHAPE.describe(), "p95_limit_s": P95_LIMIT_S, "step_seconds": step_seconds,
    }
    log(f"capacity bench: steps {', '.join(f'{s:g}' for s in steps)} runs/min x {step_seconds:g} s, "
        f"run shape: {SHAPE.describe()}; load average {results['load_average_at_start']}; "
        f"logs in {workdir}")
    if args.quick and len(parts) > 1:
        # The parts side by side, each in a process of its own (the stack evaluations and boto3's
        # default session are one per process): --quick proves the machinery, not capacity.
        results.update(side_by_side(argv or sys.argv[1:], parts, workdir))
    else:  # one at a time, so no part takes CPU from another
        for part in parts:
            at_start = load_average()
            results[part] = (measure_worker(workdir, worker_runs) if part == "worker"
                             else measure_server(part, workdir, steps, step_seconds,
                                                 QUICK_POLL_SECONDS if args.quick else None))
            results[part].update(date=time.strftime("%Y-%m-%d %H:%M"),
                                 load_average_at_start=at_start, load_average_at_end=load_average())
    if args.part_output:
        args.part_output.write_text(json.dumps({part: results[part] for part in parts}))
        return 0
    results["load_average"] = load_average()
    results["wall_s"] = round(time.monotonic() - began, 1)
    if not args.quick and not args.no_record:
        RESULTS.mkdir(exist_ok=True)
        if args.merge and RECORD.exists():
            results = {**json.loads(RECORD.read_text()), **{part: results[part] for part in parts}}
        RECORD.write_text(json.dumps(results, indent=1) + "\n")
        log(f"recorded in {RECORD.relative_to(RESULTS.parent.parent)}")
    print(json.dumps(summary(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
