"""A process held to its Fargate task's size: cgroup v1 limits, as root.

Fargate gives a task `cpu` units (1024 = one vCPU) and `memory` MiB. Here the same limits are a
cgroup of each v1 controller this machine mounts separately:

- `cpu/<name>`: `cpu.cfs_quota_us` = units / 1024 x `cpu.cfs_period_us` (100000): 512 units may
  run 50 ms of every 100 ms, half a CPU, as Fargate's CFS quota does;
- `memory/<name>`: `memory.limit_in_bytes` = MiB x 2^20 (the kernel reclaims, then OOM-kills
  past it, as Fargate stops a task that exceeds its memory);
- `cpuacct/<name>`: `cpuacct.usage`, the CPU time used, for the measurement.

A process joins them before it does any work: `wrap(command)` prefixes a small `sh` launcher that
writes its own PID into each group's `cgroup.procs`, then `exec`s the command, so the process and
every child it forks are inside from their first instruction. `remove()` moves any straggler back
to the root group and deletes the groups.

https://docs.kernel.org/scheduler/sched-bwc.html (CFS bandwidth control),
https://docs.kernel.org/admin-guide/cgroup-v1/memory.html (memory limits and usage).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "cpuacct", "memory")
PERIOD_US = 100_000
CPU_UNITS_PER_VCPU = 1024
MIB = 1 << 20
# Joins each group (its own PID into cgroup.procs), then becomes the command; 97 if it cannot join.
LAUNCHER = 'for g in {dirs}; do echo $$ > "$g/cgroup.procs" || exit 97; done; exec "$@"'


class CgroupsUnavailable(RuntimeError):
    """Not root, or no cgroup v1 controller where it is expected."""


def check_available() -> None:
    """Raise with the reason when this process cannot create and fill cgroups."""
    if os.geteuid() != 0:
        raise CgroupsUnavailable("creating cgroups needs root (this process runs as uid "
                                 f"{os.geteuid()}); run the benchmark as root")
    missing = [c for c in CONTROLLERS if not (ROOT / c / "cgroup.procs").exists()]
    if missing:
        raise CgroupsUnavailable(f"no cgroup v1 controller mounted at {ROOT}/" + ", ".join(missing))


@dataclass
class TaskLimits:
    """The cgroups of one task, `cpu_units` and `memory_mib` as its task definition declares."""

    name: str
    # None: no limit, the group only measures (a database that is not the task under test).
    cpu_units: Optional[int]
    memory_mib: Optional[int]
    _dirs: list[Path] = field(default_factory=list, repr=False)
    rss_peak: float = 0.0  # MiB, the highest `sample_rss` saw since `reset_memory_peak`

    def create(self) -> "TaskLimits":
        check_available()
        self._dirs = [ROOT / controller / self.name for controller in CONTROLLERS]
        for directory in self._dirs:
            directory.mkdir(exist_ok=True)
        cpu, memory = self._dir("cpu"), self._dir("memory")
        (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (cpu / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        if self.memory_mib is not None:
            (memory / "memory.limit_in_bytes").write_text(str(self.memory_mib * MIB))
        return self

    @property
    def quota_us(self) -> int:
        """CFS quota for the CPU units; -1 (no limit) without them."""
        if self.cpu_units is None:
            return -1
        return self.cpu_units * PERIOD_US // CPU_UNITS_PER_VCPU

    def _dir(self, controller: str) -> Path:
        return ROOT / controller / self.name

    def wrap(self, command: list[str]) -> list[str]:
        """`command`, started inside the groups (see LAUNCHER), its environment untouched."""
        if not self._dirs:
            raise RuntimeError(f"cgroups {self.name} not created")
        script = LAUNCHER.format(dirs=" ".join(str(d) for d in self._dirs))
        return ["/bin/sh", "-c", script, f"cgroup-{self.name}", *command]

    def adopt(self, root_pid: int) -> int:
        """Move a running process and all its descendants in (a server started elsewhere, such
        as PostgreSQL's postmaster and its backends); what they fork later is inside too. Returns
        how many processes moved."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        tree, moved = [root_pid], 0
        while tree:
            pid = tree.pop()
            tree += children.get(pid, [])
            for directory in self._dirs:
                with contextlib.suppress(OSError):  # it exited meanwhile
                    (directory / "cgroup.procs").write_text(str(pid))
            moved += 1
        return moved

    def read(self, controller: str, key: str) -> str:
        return (self._dir(controller) / key).read_text().strip()

    def cpu_seconds(self) -> float:
        """CPU time the group's processes used so far (cpuacct.usage, in ns)."""
        return int(self.read("cpuacct", "cpuacct.usage")) / 1e9

    def throttled_seconds(self) -> float:
        """Time the group was held back by its quota (cpu.stat throttled_time, in ns)."""
        stat = dict(line.split() for line in self.read("cpu", "cpu.stat").splitlines())
        return int(stat.get("throttled_time", 0)) / 1e9

    def memory_mib_now(self) -> float:
        return int(self.read("memory", "memory.usage_in_bytes")) / MIB

    def memory_peak_mib(self) -> float:
        return int(self.read("memory", "memory.max_usage_in_bytes")) / MIB

    def rss_mib(self) -> float:
        """Anonymous memory of the group now (memory.stat total_rss): what a task's memory limit
        must hold; usage_in_bytes also counts page cache, which the kernel reclaims first."""
        stat = dict(line.split() for line in self.read("memory", "memory.stat").splitlines())
        return int(stat.get("total_rss", 0)) / MIB

    def reset_memory_peak(self) -> None:
        self.rss_peak = 0.0
        (self._dir("memory") / "memory.max_usage_in_bytes").write_text("0")

    def sample_rss(self) -> None:
        with contextlib.suppress(OSError):
            self.rss_peak = max(self.rss_peak, self.rss_mib())

    def oom_kills(self) -> int:
        """OOM kills inside the group (memory.oom_control's oom_kill, on kernels that count it)."""
        control = dict(line.split() for line in self.read("memory", "memory.oom_control").splitlines())
        return int(control.get("oom_kill", 0))

    def pids(self) -> list[int]:
        return [int(p) for p in self.read("memory", "cgroup.procs").split()]

    def remove(self) -> None:
        """Move what is left back to the root groups, then delete the groups."""
        for directory in self._dirs:
            if not directory.exists():
                continue
            for pid in (directory / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):  # it exited meanwhile
                    (directory.parent / "cgroup.procs").write_text(pid)
            for _ in range(50):  # a process still exiting keeps the group busy for a moment
                try:
                    directory.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
        self._dirs = []


class RssSampler(threading.Thread):
    """Samples each group's RSS every `interval` seconds, keeping its peak (`rss_peak`): the kernel
    keeps a peak of usage with page cache only."""

    def __init__(self, groups: list[TaskLimits], interval: float = 0.5):
        super().__init__(daemon=True)
        self.groups, self.interval = groups, interval
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            for group in self.groups:
                group.sample_rss()

    def __enter__(self) -> "RssSampler":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join(5)
