"""Flow-run pickup latency: from a run scheduled for now to its RunTask reaching ECS (moto), as a
ratio to the worker's poll interval. Median of several runs, one worker, one process.

    python -m bench.pickup_latency [--runs 7] [--poll-seconds 2]

The worker is the dev stack's container as declared (rung 3), with PREFECT_WORKER_QUERY_SECONDS
set small. A run created at a random moment waits on average half a poll for the next query, then
the worker's submission (task definition lookup, VPC and subnet checks, RunTask). Target: <= 1.5x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tools.mock_engine import evaluate_stack
from testbed.prefect_worker import api, deploy, deploy_and_run, wait_online, worker_launch
from testbed.servers import MotoServer, PrefectServer, stop

POOL = "ecs-bench"
TARGET_RATIO = 1.5


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pickup-bench-"))
    moto, prefect = MotoServer(workdir), PrefectServer(workdir)
    worker = None
    try:
        evaluation = evaluate_stack("dev", workPoolName=POOL)
        # The stack-owned pool, created through the stack's provider: runs use its defaults.
        stack = deploy(evaluation, moto, prefect.api_url)
        moto.hold_tasks()
        replayed, exports = stack.replayed, stack.exports
        launch = worker_launch(evaluation, replayed, api_url=prefect.api_url, home=workdir,
                               aws_env=moto.client_env(),
                               extra_env={"PREFECT_WORKER_QUERY_SECONDS": str(args.poll_seconds)})
        worker = launch.start(workdir / "worker.log")
        wait_online(prefect.api_url, POOL, 90, worker)

        ecs = replayed.client("ecs")
        seen: set[str] = set()
        # The first submission registers the flow-run task definition; later ones reuse it.
        latencies = []
        deployment_run = deploy_and_run(prefect.api_url, POOL)
        flow_run = api(prefect.api_url, "GET", f"/flow_runs/{deployment_run}")
        deployment_id = flow_run["deployment_id"]
        first = True
        for index in range(args.runs + 1):
            if not first:
                # Start at a random phase of the worker's poll loop, as real runs do.
                time.sleep(args.poll_seconds * ((index * 0.37) % 1))
                api(prefect.api_url, "POST", f"/deployments/{deployment_id}/create_flow_run", {})
            scheduled = time.monotonic()
            deadline = scheduled + 30 * args.poll_seconds
            new: set[str] = set()
            while not new and time.monotonic() < deadline:
                new = set(ecs.list_tasks(cluster=exports["clusterArn"])["taskArns"]) - seen
                if not new:
                    time.sleep(0.02)
            if not new:
                raise SystemExit(f"run {index}: no RunTask within {30 * args.poll_seconds}s; "
                                 f"see {workdir / 'worker.log'}")
            seen |= new
            if not first:
                latencies.append(time.monotonic() - scheduled)
            first = False

        median = statistics.median(latencies)
        ratio = median / args.poll_seconds
        print(json.dumps({
            "poll_seconds": args.poll_seconds,
            "runs": len(latencies),
            "latencies_s": [round(x, 2) for x in latencies],
            "median_s": round(median, 2),
            "median_ratio_to_poll": round(ratio, 2),
            "target_ratio": TARGET_RATIO,
        }, indent=2))
        print(f"pickup latency: median {median:.2f} s = {ratio:.2f}x the {args.poll_seconds:g} s "
              f"poll interval (target <= {TARGET_RATIO}x): {'OK' if ratio <= TARGET_RATIO else 'OVER'}")
        return 0 if ratio <= TARGET_RATIO else 1
    finally:
        if worker is not None:
            stop(worker)
        moto.stop()
        prefect.stop()


if __name__ == "__main__":
    sys.exit(main())
