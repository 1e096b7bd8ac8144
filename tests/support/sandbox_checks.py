"""A sandbox (`make sandbox`, testbed/local_platform.py) for a test module, and what it must leave
behind when Ctrl-C stops it: every process it started gone, every port it served free, its lock
released."""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from testbed.platform_client import SandboxProcess
from testbed.processes import with_environment


@contextmanager
def running_sandbox(stack: str, state_dir: Path, ready_within_s: float) -> Iterator[SandboxProcess]:
    """The stack's sandbox, once its sample run is final; stopped on exit unless a test did."""
    running = SandboxProcess(stack, state_dir)
    try:
        running.wait_ready(ready_within_s)
        yield running
    finally:
        if running.process.poll() is None:
            running.interrupt()


def listening(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((parts.hostname, parts.port)) == 0


def assert_ctrl_c_leaves_nothing(sandbox: SandboxProcess) -> None:
    task_pids = [int(pid) for pid in re.findall(r"running as PID (\d+)", sandbox.output)]
    assert task_pids
    code = sandbox.interrupt()
    assert code == 0, sandbox.output[-3000:]
    assert "Stopped: every process it started is gone." in sandbox.output
    for url in (sandbox.facts["ui"], sandbox.facts["emulator"]):
        assert not listening(url), url
    assert not [pid for pid in task_pids if os.path.exists(f"/proc/{pid}")]
    # Nor any process a task started, in whatever session (Prefect's engine runs in its own).
    assert not with_environment("HOME", str(sandbox.state_dir)), "a task's process outlived it"
    assert json.loads((sandbox.state_dir / "lock").read_text() or "null") is None
