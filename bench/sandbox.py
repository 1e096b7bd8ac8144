"""How soon `make sandbox` is ready, and how soon its sample run completes, per stack.

    python -m bench.sandbox [--stacks dev,selfhosted-dev] [--nice -5] [--record]

Each stack runs `make sandbox ONCE=1` (testbed/platform_client.py `run_once`) once, in a state
directory of its own, and its JSON line gives `ready_s` (from the process's start until the UI
and API answer and the worker is ONLINE) and `completed_s` (from the sample run's creation to its
final state, by the server's clock). The machine's load average before each run is recorded with
it: on a shared 2-core machine it moves both figures more than anything in the code.

Targets: ready in <= 60 s for a stack without its own server (`dev`), <= 120 s with one
(`selfhosted-dev`: PostgreSQL, migrations, the pool bootstrap); the sample run Completed <= 30 s
after its creation (the declared worker polls every 10 s). The exit code is 1 when a target is
missed or a run did not complete.

`--record` writes bench/results/sandbox.json, from which `python -m scripts.doc_tables --write`
makes the table in docs/sandbox.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from testbed.platform_client import run_once

RESULTS = Path(__file__).resolve().parent / "results" / "sandbox.json"
READY_TARGET_S = {"dev": 60.0, "selfhosted-dev": 120.0}
COMPLETED_TARGET_S = 30.0


def measure(stack: str, nice: int) -> dict[str, Any]:
    load = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"bench-sandbox-{stack}-") as state:
        code, outcome, output = run_once(stack, Path(state), nice=nice)
    wall = time.monotonic() - started
    if not outcome:
        raise SystemExit(f"{stack}: no JSON outcome (exit {code}):\n{output[-3000:]}")
    return {**{k: outcome[k] for k in ("ready_s", "completed_s", "final_state",
                                        "processes_left")},
            "exit_code": code, "wall_s": round(wall, 1), "load_before": round(load, 2),
            "ready_target_s": READY_TARGET_S.get(stack), "completed_target_s": COMPLETED_TARGET_S}


def within_targets(figures: dict[str, Any]) -> bool:
    ready_target = figures["ready_target_s"]
    return (figures["final_state"] == "Completed" and figures["processes_left"] == 0
            and (ready_target is None or figures["ready_s"] <= ready_target)
            and figures["completed_s"] <= figures["completed_target_s"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stacks", default="dev,selfhosted-dev")
    parser.add_argument("--nice", type=int, default=0,
                        help="the sandbox's niceness (negative needs root): a shared machine's "
                             "other work then waits for it")
    parser.add_argument("--record", action="store_true",
                        help=f"write the figures to {RESULTS.relative_to(RESULTS.parents[2])}")
    args = parser.parse_args()
    stacks: dict[str, dict[str, Any]] = {}
    print(f"{'stack':16} {'ready_s':>8} {'target':>7} {'completed_s':>12} {'target':>7} "
          f"{'state':>10} {'left':>5} {'wall_s':>7} {'load':>5}")
    for stack in args.stacks.split(","):
        figures = stacks[stack] = measure(stack, args.nice)
        print(f"{stack:16} {figures['ready_s']!s:>8} {figures['ready_target_s']!s:>7} "
              f"{figures['completed_s']!s:>12} {figures['completed_target_s']!s:>7} "
              f"{figures['final_state']!s:>10} {figures['processes_left']!s:>5} "
              f"{figures['wall_s']:>7} {figures['load_before']:>5}", flush=True)
    result = {"date": datetime.date.today().isoformat(), "cpus": os.cpu_count(),
              "nice": args.nice, "stacks": stacks}
    print(json.dumps(result))
    if args.record:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(within_targets(f) for f in stacks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
