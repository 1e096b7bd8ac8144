"""Every process a long-running test bed starts, stopped by PID and counted after.

Each process runs in a session of its own (its session and process group ids are its PID), so a
terminal's Ctrl-C reaches only the parent, which then stops them in the reverse order of their
start: what uses a server stops before the server. Stopping signals the process group, so a
container command that runs `sh -c '... && prefect ...'` loses its child too. `left()` counts the
processes of those sessions still alive, grandchildren included, read from /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional


@dataclass
class Started:
    name: str
    pid: int
    # Stops it (and waits); None: signal the process group, SIGKILL after `timeout`.
    stopper: Optional[Callable[[], object]] = None
    process: Optional[subprocess.Popen] = None
    timeout: float = 20


def session_of(pid: int) -> Optional[int]:
    """The session id of a live process (None once it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[3])


def sessions_alive(sessions: set[int]) -> list[int]:
    """PIDs of live processes in any of `sessions`."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and session_of(int(entry.name)) in sessions:
            alive.append(int(entry.name))
    return alive


def with_environment(name: str, prefix: str) -> list[int]:
    """PIDs of live processes whose environment sets `name` to a value starting with `prefix`: how
    the sandbox finds every process of a flow-run task's "container", whatever session a child
    started (Prefect's runner starts its engine in a session of its own)."""
    wanted = f"{name}={prefix}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or session_of(int(entry.name)) is None:
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(wanted) for item in environment.split(b"\0")):
            found.append(int(entry.name))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Processes:
    def __init__(self) -> None:
        self.started: list[Started] = []

    def add(self, name: str, process: subprocess.Popen, timeout: float = 20) -> subprocess.Popen:
        """A process started in its own session (`spawn(..., new_session=True)`)."""
        self.started.append(Started(name, process.pid, process=process, timeout=timeout))
        return process

    def add_server(self, name: str, pid: int, stopper: Callable[[], object]) -> None:
        """A server with its own stop (a database's fast shutdown), started in its own session."""
        self.started.append(Started(name, pid, stopper=stopper))

    def stop(self, entry: Started) -> None:
        if entry.stopper is not None:
            entry.stopper()
            return
        assert entry.process is not None
        stop_group(entry.process, entry.timeout)

    def stop_all(self, report: Callable[[str], None] = lambda _: None) -> None:
        """Everything, last started first; one failing stop does not keep the others running."""
        for entry in reversed(self.started):
            try:
                self.stop(entry)
            except Exception as error:  # keep stopping the rest, then say what went wrong
                report(f"stopping {entry.name} (PID {entry.pid}): {error}")

    def left(self) -> list[int]:
        """PIDs of processes still alive in the sessions of what was started."""
        return sessions_alive({entry.pid for entry in self.started})


def signal_group(leader: int, sig: int) -> None:
    """`sig` to the process group `leader` leads (nothing once it is empty)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, sig)


def stop_group(process: subprocess.Popen, timeout: float = 20, sig: int = signal.SIGTERM) -> None:
    """`sig` to the process group the process leads, then SIGKILL to it if the leader lingers;
    whatever of the group outlives the leader gets SIGKILL too."""
    if process.poll() is None:
        signal_group(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(process.pid, signal.SIGKILL)
            process.wait(10)
    deadline = time.monotonic() + 5
    while sessions_alive({process.pid}) and time.monotonic() < deadline:
        signal_group(process.pid, signal.SIGKILL)
        time.sleep(0.1)
