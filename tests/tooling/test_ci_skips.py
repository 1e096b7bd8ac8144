"""A test that cannot run on this machine skips with its reason, except under CI=true, where the
same skip fails the run (tests/support/ci_skips.py): CI never goes green on fewer tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = '''
import pytest

@pytest.mark.skipif(True, reason="needs root: a private mount namespace")
def test_marked():
    pass

def test_skips_from_inside():
    pytest.skip("actionlint is not installed")

@pytest.mark.xfail(reason="a known failure", strict=True)
def test_expected_to_fail():
    assert False

def test_runs():
    pass
'''


def _run(tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = ci
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsE", "-p", "no:cacheprovider",
                             "-p", "tests.support.ci_skips", "--rootdir", str(tmp_path),
                             str(tmp_path / "test_sample.py")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return result


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_skip_fails_with_its_reason(tmp_path, ci):
    result = _run(tmp_path, ci)
    out = result.stdout
    # A skip in setup (a mark) is reported as an error, one from inside the test as a failure.
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in out and result.returncode == 1, out
    assert "under CI=true every test must run: needs root: a private mount namespace" in out
    assert "under CI=true every test must run: actionlint is not installed" in out


@pytest.mark.parametrize("ci", ["", "false"])
def test_outside_ci_a_skip_is_a_skip_with_its_reason(tmp_path, ci):
    result = _run(tmp_path, ci)
    out = result.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in out and result.returncode == 0, out
    assert "needs root: a private mount namespace" in out
