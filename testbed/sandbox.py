"""Run a command as a container with `readonlyRootFilesystem` would: every mount read-only, and a
fresh, empty tmpfs at each path the task definition gives a volume.

It uses a private mount namespace (`unshare --mount`, root only): the remounts are invisible to
the rest of the machine and vanish with the process. `/proc`, `/sys` and `/dev` stay as they
are, as Docker keeps them writable under a read-only root; `/dev/shm`, which Docker would also
leave writable, is made read-only here too, so the proof is the stricter one.

A checkout (and its venv) may itself lie under a volume path, e.g. in a clone under /tmp: it is
carried over, read-only, onto the fresh tmpfs, so the command still finds its interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

# The checkout the command runs from (its venv included).
CHECKOUT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
set -e
keep="$1"
shift
mount --make-rprivate /
# A checkout under a volume path is staged aside first, and made read-only with everything else.
for path in "$@"; do
  [ "$path" = "--" ] && break
  case "$keep/" in "$path"/*) mount --bind "$keep" /mnt ;; esac
done
for mount_point in $(awk '{print $2}' /proc/self/mounts | sort -u); do
  case "$mount_point" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/pts) continue ;; esac
  # A mount under /mnt that the staged checkout now hides is out of reach anyway.
  [ -e "$mount_point" ] || continue
  mount -o remount,bind,ro "$mount_point"
done
while [ "$1" != "--" ]; do
  mount -t tmpfs -o size=64m,mode=1777 tmpfs "$1"
  case "$keep/" in
    "$1"/*) mkdir -p "$keep" && mount --no-mtab --move /mnt "$keep" ;;
  esac
  shift
done
shift
exec "$@"
"""


@cache
def available() -> str:
    """Why the sandbox cannot run here (the exact refusal), or '' when it can."""
    if os.geteuid() != 0:
        return "needs root: it remounts every mount read-only in a private mount namespace"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    # A container without CAP_SYS_ADMIN refuses: "unshare failed: Operation not permitted".
    probe = subprocess.run(["unshare", "--mount", "--", "sh", "-c",
                            "mount --make-rprivate / && mount -o remount,bind,ro /"],
                           capture_output=True, text=True, timeout=10)
    return probe.stderr.strip() or f"exit {probe.returncode}" if probe.returncode else ""


def read_only_command(command: list[str], writable: list[Path]) -> list[str]:
    """`command` in a new mount namespace where only `writable` (each an empty tmpfs) can be
    written. `unshare` and `sh` exec, so the process's PID is the command's."""
    return ["unshare", "--mount", "--", "sh", "-c", SCRIPT, "read-only-root", str(CHECKOUT),
            *map(str, writable), "--", *command]


def mounts_of(pid: int) -> dict[str, str]:
    """Mount point -> options, as the process sees them."""
    seen = {}
    for line in Path(f"/proc/{pid}/mounts").read_text().splitlines():
        _, mount_point, _, options, *_ = line.split()
        seen[mount_point] = options
    return seen


def files_written(pid: int, path: str) -> list[str]:
    """What the process wrote under `path` in its own namespace (through /proc/<pid>/root); a
    checkout carried over onto it is not the process's writing."""
    root = Path(f"/proc/{pid}/root") / path.lstrip("/")
    carried = Path(f"/proc/{pid}/root") / str(CHECKOUT).lstrip("/")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and carried not in p.parents)
