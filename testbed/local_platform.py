"""`make sandbox`: one stack file's whole platform running on this machine, without AWS, the
Pulumi CLI or Docker.

    python -m testbed.local_platform [STACK] [--once] [--state-dir DIR]

1. The program is evaluated with the stack's config as `pulumi preview` would (tools/mock_engine.py);
   a refused config stops here with the program's own message.
2. Every declared resource is replayed into a local AWS emulator (moto, testbed/replay/).
3. A Prefect API comes up (testbed/platform_stack.py): for `prefectServer: none` a local Prefect
   server stands in for the stack's external one, and the stack's providers create the pool and
   the stuck-run automation on it; for `single` and `ha` the declared server containers run with
   their exact commands and environment against a local PostgreSQL (and Redis), and the worker
   task's pool bootstrap creates both.
4. The declared worker runs with its exact command, environment and secrets; each ECS task it
   starts runs here as a local process (testbed/ecs_tasks.py), its events going through the
   stack's rule and queue to the worker's observer.
5. The sample flow (examples/flows/hello.py) is deployed onto the pool and run.

It then prints where everything is and waits for Ctrl-C, which stops every process it started,
by PID. `--once` stops after the sample run and prints, as its last line, one JSON object:
`stack`, `ready_s` (from this process's start until the UI and API answer and the worker is
ONLINE), `completed_s` (from the run's creation to its final state, by the server's clock),
`final_state` and `processes_left` (processes it started still alive after the teardown).

One sandbox runs at a time per state directory: a lock file there, held with `flock` and naming
its PID, turns a second one away.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

import pulumi

from testbed.platform_stack import ROOT, Platform, stack_path

DEFAULT_STATE_DIR = ROOT / ".sandbox"
RUN_WITHIN_S = 300


def process_age() -> float:
    """Seconds since this process started (the kernel's clock, so imports count)."""
    ticks = os.sysconf("SC_CLK_TCK")
    started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    return float(Path("/proc/uptime").read_text().split()[0]) - started


class Lock:
    """`<state dir>/lock`: flock'd while a sandbox runs, holding its PID, stack and URL."""

    def __init__(self, state_dir: Path):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "lock"
        self._file: Optional[TextIO] = None

    def holder(self) -> Optional[dict[str, Any]]:
        """Take the lock; None when taken, else what the running sandbox wrote in it."""
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read()
            handle.close()
            try:
                held: dict[str, Any] = json.loads(text)
            except json.JSONDecodeError:
                held = {}
            # The PID check: the lock's holder is alive (the kernel drops a dead one's flock).
            pid = held.get("pid")
            held["alive"] = isinstance(pid, int) and Path(f"/proc/{pid}").exists()
            return held
        self._file = handle
        self.write(pid=os.getpid())
        return None

    def write(self, **fields: Any) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps(fields))
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: stop everything."""


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def say(line: str = "") -> None:
    print(line, flush=True)


def summary(platform: Platform, ready_s: float) -> list[str]:
    """What is where, and how to use and stop it: a few lines."""
    api_url = platform.api_url
    env = f"PREFECT_API_URL={api_url}"
    auth_lines = []
    if platform.auth_file is not None:
        env += f' PREFECT_API_AUTH_STRING="$(cat {platform.auth_file})"'
        auth_lines = [f"  login        the auth string in {platform.auth_file} (user:password, "
                      f"the stack's own secret)"]
    pool = platform.pool
    # This venv's CLI, by its full path: your flow's directory is elsewhere.
    prefect = Path(sys.executable).parent / "prefect"
    assert platform.moto is not None
    return [
        f"Sandbox of stack {platform.stack} ready in {ready_s:.1f} s; nothing here is on AWS.",
        f"  UI           {platform.ui_url}",
        *auth_lines,
        f"  work pool    {pool} (the stack's template), worker {platform.worker_name} ONLINE "
        f"(the declared container)",
        f"  emulator     {platform.moto.url} (moto: the stack's {platform.resource_count} "
        f"resources; cluster {platform.cluster_name}; flow-run tasks run here as processes)",
        f"  your flow    {env} {prefect} deploy ./my_flow.py:my_flow -n mine -p {pool}",
        f"               then: {env} {prefect} deployment run my-flow/mine",
        f"  stop         Ctrl-C (or kill -INT {os.getpid()}); logs: {platform.workdir}",
    ]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.local_platform",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", nargs="?", default="dev",
                        help="a stack name (Pulumi.<stack>.yaml, default dev) or a stack file")
    parser.add_argument("--once", action="store_true",
                        help="run the sample flow to a final state, stop, print one JSON line")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="the lock file and this run's logs (default .sandbox/)")
    args = parser.parse_args(argv)

    lock = Lock(args.state_dir)
    held = lock.holder()
    if held is not None:
        say(f"A sandbox is already running (PID {held.get('pid')}, stack {held.get('stack')}"
            + (f", UI {held['ui']}" if held.get("ui") else "") + "): stop it with Ctrl-C in its "
            f"terminal or `kill -INT {held.get('pid')}`, then try again.")
        return 1
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    outcome: dict[str, Any] = {"stack": args.stack, "ready_s": None, "completed_s": None,
                               "final_state": None, "processes_left": None}
    code = 1
    platform: Optional[Platform] = None
    try:
        workdir = args.state_dir / stack_path(args.stack)[0]
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        platform = Platform(args.stack, workdir,
                            report=lambda line: say(f"  {process_age():5.1f} s  {line}"))
        outcome["stack"] = platform.stack
        lock.write(pid=os.getpid(), stack=platform.stack)
        say(f"Sandbox of stack {platform.stack}: starting (logs in {workdir})")
        platform.up()
        outcome["ready_s"] = round(process_age(), 1)
        lock.write(pid=os.getpid(), stack=platform.stack, ui=platform.ui_url,
                   api=platform.api_url, emulator=platform.moto.url if platform.moto else None,
                   pool=platform.pool, auth_file=str(platform.auth_file or "") or None)
        say("\n".join(summary(platform, outcome["ready_s"])))
        run_id = platform.run_sample()
        state = platform.wait_final(run_id, RUN_WITHIN_S)
        outcome["final_state"] = state["name"]
        outcome["completed_s"] = platform.run_seconds(run_id)
        say(f"Sample run {run_id}: {state['name']} {outcome['completed_s']} s after its "
            f"creation; see it in the UI under Runs.")
        code = 0 if state["type"] == "COMPLETED" or not args.once else 1
        if args.once:
            platform.wait_task_stopped(run_id, 30)
        else:
            say("Running; Ctrl-C stops everything.")
            platform.watch()
    except (pulumi.RunError, SystemExit) as error:
        # The program refused the config: the message `pulumi preview` prints, and nothing else.
        message = str(error)
        say(message if isinstance(error, SystemExit) else f"error: {message}")
        code = 1
        args.once = False
    except Interrupted:
        say("\nStopping...")
        # Stopping is how an interactive sandbox ends; a --once run stopped early failed.
        code = 1 if args.once else 0
    except Exception as error:
        say(f"error: {type(error).__name__}: {error}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        started = platform is not None and bool(platform.processes.started)
        left = platform.down() if platform is not None else []
        lock.release()
        outcome["processes_left"] = len(left)
        if left:
            say(f"still running after the teardown: PIDs {left}")
            code = 1
        elif started:
            say("Stopped: every process it started is gone.")
    if args.once:
        print(json.dumps(outcome), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
