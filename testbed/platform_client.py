"""`make sandbox` driven from another process: the tests, the benchmark and `make screenshot`.

`SandboxProcess` starts `python -m testbed.local_platform` as a child (in a session of its own,
as a terminal would run it), keeps every line it prints, waits until it is ready and its sample
run is final, and reads where everything is from its lock file. `interrupt()` is the user's
Ctrl-C. `run_once()` runs `--once` and returns its last line, the JSON outcome.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from testbed.platform_stack import ROOT
from testbed.prefect_worker import api, basic_auth

TASK_LINE = re.compile(r"flow-run task (?P<task>\S+) running as PID (?P<pid>\d+) "
                       r"\(flow run (?P<run>[0-9a-f-]+)\)")


def command(stack: str, state_dir: Path, once: bool = False) -> list[str]:
    return [sys.executable, "-m", "testbed.local_platform", stack, "--state-dir", str(state_dir),
            *(["--once"] if once else [])]


def run_once(stack: str, state_dir: Path, timeout: float = 900,
             nice: int = 0) -> tuple[int, dict[str, Any], str]:
    """`make sandbox ONCE=1` for `stack`: its exit code, its last line's JSON and its output."""
    prefix = ["nice", "-n", str(nice)] if nice else []
    result = subprocess.run(prefix + command(stack, state_dir, once=True), cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    lines = result.stdout.strip().splitlines()
    try:
        outcome = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        outcome = {}
    return result.returncode, outcome, result.stdout + result.stderr


class SandboxProcess:
    def __init__(self, stack: str, state_dir: Path, echo: bool = False):
        self.state_dir = state_dir
        self.echo = echo
        self.lines: list[str] = []
        self.process = subprocess.Popen(command(stack, state_dir), cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True,
                                        start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.facts: dict[str, Any] = {}

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if self.echo:
                print(line, end="", flush=True)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in self.lines if text in line), None)
            if found is not None:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no line with {text!r} within {timeout}s; output:\n"
                             f"{self.output[-4000:]}")

    def wait_ready(self, timeout: float = 600) -> dict[str, Any]:
        """Until the sample run is final; then the facts of its lock file."""
        self.wait_for_line("Sample run ", timeout)
        self.facts = json.loads((self.state_dir / "lock").read_text())
        return self.facts

    def sample_run_id(self) -> str:
        """The run the sandbox made of its sample flow."""
        match = re.search(r"^Sample run ([0-9a-f-]+):", self.output, re.MULTILINE)
        assert match, self.output[-2000:]
        return match.group(1)

    @property
    def auth_string(self) -> Optional[str]:
        path = self.facts.get("auth_file")
        return Path(path).read_text() if path else None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return api(self.facts["api"], method, path, body, headers=basic_auth(self.auth_string))

    def run(self, deployment: str, parameters: Optional[dict[str, Any]] = None) -> str:
        """A run of one of the sample deployments (`hello/sample`, `failing/sample`)."""
        flow_name, name = deployment.split("/")
        (found,) = self.call("POST", "/deployments/filter", {
            "flows": {"name": {"any_": [flow_name]}}, "deployments": {"name": {"any_": [name]}}})
        return self.call("POST", f"/deployments/{found['id']}/create_flow_run",
                         {"parameters": parameters or {}})["id"]

    def wait_state(self, run_id: str, types: tuple[str, ...], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.call("GET", f"/flow_runs/{run_id}")["state"]
            if state["type"] in types or time.monotonic() > deadline:
                return state
            time.sleep(0.5)

    def task_pid(self, run_id: str, timeout: float = 120) -> int:
        """The PID of the local process running the run's ECS task, as the sandbox printed it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                match = TASK_LINE.search(line)
                if match and match.group("run") == run_id:
                    return int(match.group("pid"))
            time.sleep(0.2)
        raise AssertionError(f"no task for run {run_id} within {timeout}s")

    def interrupt(self, timeout: float = 120) -> int:
        """Ctrl-C: SIGINT to the sandbox alone; its exit code once it has stopped everything."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self._reader.join(10)
        return code
