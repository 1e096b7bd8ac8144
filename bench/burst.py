"""Flow runs lost, run twice or crashed when workers come and go: a burst per scenario.

    python -m bench.burst [--runs 100] [--workers 2] [--poll-seconds 5] [--pending-seconds 180]
                          [--fault-seconds 45] [--scenarios steady,sigterm,...] [--baseline]
                          [--postgresql] [--record]

Each scenario schedules `--runs` flow runs at once on the dev stack as deployed on moto and a real
Prefect server, with `--workers` workers started from the declared task definition
(testbed/burst.py). One table row per scenario, then, as the last line, one JSON object keyed by
scenario with `lost`, `duplicated`, `crashed`, `all_submitted_s`, `p50_s`, `p95_s` and
`submit_bound_ratio`: the time until all runs were submitted over 1.5 x (poll interval + runs /
the RunTask rate of the steady scenario).

Targets: 0 lost and 0 duplicated everywhere; no crash from a fault that clears within a minute;
ratio <= 1 where nothing stops submissions (steady, events-queue-missing); p95 pickup <= 3 x the
poll interval in steady. `--baseline` runs the stack without its recovery (no automation,
Prefect's and botocore's default retries, no submission limit): the numbers the fix is measured
against.

The threshold here is 180 s, not the stack's 10-minute floor, to keep a run short: on a 2-core
machine where one Prefect server process serves ~1 submission a second, it is above the longest a
live worker keeps a run Pending (its 20 in-flight submissions) plus a 45 s RunTask fault and the
retries after it, as the stack's floor is above the same on real AWS (components/prefect/stuck_run_automation.py).

`--record` writes the run to `bench/results/burst-<database>[-baseline].json`, from which
`python -m scripts.doc_tables --write` makes the table in docs/no-lost-runs.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from testbed.burst import SCENARIOS, Bed, Figures, postgres_database, run_burst

# Where the runs are not held up by the fault itself, the bound applies.
BOUNDED = ("steady", "events-queue-missing")
RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("scenario", "lost", "dup", "crashed", "resched", "all_sub_s", "ratio", "p50_s",
           "p95_s", "p95/poll", "wall_s")


def row(values: list) -> str:
    return "  ".join(f"{v!s:>{max(len(c), 8)}}" for v, c in zip(values, COLUMNS, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--pending-seconds", type=int, default=180,
                        help="the automation's threshold here (the stack's is stuckPendingMinutes)")
    parser.add_argument("--fault-seconds", type=float, default=45.0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--baseline", action="store_true", help="the stack without its recovery")
    parser.add_argument("--postgresql", action="store_true",
                        help="the Prefect server on PostgreSQL (loopback) instead of SQLite")
    parser.add_argument("--record", action="store_true",
                        help="write the figures to bench/results/ for the docs' table")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="burst-bench-"))
    database, env = postgres_database() if args.postgresql else (None, None)
    try:
        return measure(args, workdir, env)
    finally:
        if database is not None:
            database.stop()


def measure(args: argparse.Namespace, workdir: Path, prefect_env) -> int:
    scenarios = args.scenarios.split(",")
    if "steady" in scenarios:  # its RunTask rate sets the others' bound
        scenarios.remove("steady")
        scenarios.insert(0, "steady")
    bed = Bed(workdir, poll_seconds=args.poll_seconds, pending_seconds=args.pending_seconds,
              recovery=not args.baseline, prefect_env=prefect_env)
    print(f"{args.runs} runs, {args.workers} workers, poll {args.poll_seconds:g} s, stuck-Pending "
          f"threshold {args.pending_seconds} s, faults {args.fault_seconds:g} s, "
          f"{'PostgreSQL' if args.postgresql else 'SQLite'}, "
          f"{'BASELINE (no recovery)' if args.baseline else 'with recovery'}; logs in {workdir}",
          flush=True)
    print(row(list(COLUMNS)), flush=True)
    results: dict[str, Figures] = {}
    summary: dict[str, dict] = {}
    recorded: dict[str, dict] = {}
    rate = None
    ok = True
    try:
        for scenario in scenarios:
            figures = run_burst(bed, scenario, runs=args.runs, workers=args.workers,
                                fault_seconds=args.fault_seconds)
            results[scenario] = figures
            if scenario == "steady":
                rate = figures.run_task_rate
            ratio = None
            if rate and figures.all_submitted_s is not None:
                ratio = round(figures.all_submitted_s
                              / (1.5 * (args.poll_seconds + args.runs / rate)), 2)
            p95_ratio = None if figures.p95_s is None else round(figures.p95_s / args.poll_seconds, 2)
            print(row([scenario, figures.lost, figures.duplicated, figures.crashed,
                       figures.rescheduled, figures.all_submitted_s, ratio, figures.p50_s,
                       figures.p95_s, p95_ratio, figures.wall_s]), flush=True)
            for reason, count in figures.crash_reasons.items():
                print(f"    crashed x{count}: {reason}", flush=True)
            for note in figures.notes:
                print(f"    {note}", flush=True)
            summary[scenario] = {**figures.summary(), "submit_bound_ratio": ratio}
            recorded[scenario] = {**summary[scenario], "rescheduled": figures.rescheduled,
                                  "p95_poll_ratio": p95_ratio, "wall_s": figures.wall_s,
                                  "crash_reasons": figures.crash_reasons, "notes": figures.notes}
            ok &= figures.lost == 0 and figures.duplicated == 0 and figures.crashed == 0
            if scenario in BOUNDED:
                ok &= ratio is not None and ratio <= 1.0
            if scenario == "steady":
                ok &= p95_ratio is not None and p95_ratio <= 3.0
    finally:
        bed.close()
    if rate:
        print(f"steady RunTask rate {rate:.2f}/s: bound 1.5 x ({args.poll_seconds:g} + "
              f"{args.runs}/{rate:.2f}) = {1.5 * (args.poll_seconds + args.runs / rate):.1f} s")
    print(f"targets {'met' if ok else 'NOT met'}")
    if args.record:
        path = record(args, rate, recorded)
        print(f"recorded in {path.relative_to(RESULTS.parent.parent)}")
    print(json.dumps(summary))
    return 0 if ok else 1


def record(args: argparse.Namespace, rate, scenarios: dict[str, dict]) -> Path:
    database = "postgresql" if args.postgresql else "sqlite"
    path = RESULTS / f"burst-{database}{'-baseline' if args.baseline else ''}.json"
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps({
        "database": database, "recovery": not args.baseline, "runs": args.runs,
        "workers": args.workers, "poll_seconds": args.poll_seconds,
        "pending_seconds": args.pending_seconds, "fault_seconds": args.fault_seconds,
        "steady_run_task_rate": rate, "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(), "scenarios": scenarios,
    }, indent=1) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
