"""A test that cannot run on this machine skips with its reason, except under CI=true, where the
same skip fails the run (tests/support/ci_skips.py): CI never goes green on fewer tests."""

from __future__ import annotations

import pytest

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


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
         ) -> pytest.RunResult:
    """The sample run by pytest with the plugin, in this process (pytester), CI set to `ci`."""
    pytester.makepyfile(test_sample=SAMPLE)
    monkeypatch.delenv("CI", raising=False)
    if ci:
        monkeypatch.setenv("CI", ci)
    return pytester.runpytest_inprocess("-q", "-rsE", "-p", "no:cacheprovider",
                                        "-p", "tests.support.ci_skips")


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_skip_fails_with_its_reason(pytester, monkeypatch, ci):
    result = _run(pytester, monkeypatch, ci)
    out = result.stdout.str()
    # A skip in setup (a mark) is reported as an error, one from inside the test as a failure.
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in out and result.ret == 1, out
    assert "under CI=true every test must run: needs root: a private mount namespace" in out
    assert "under CI=true every test must run: actionlint is not installed" in out


@pytest.mark.parametrize("ci", ["", "false"])
def test_outside_ci_a_skip_is_a_skip_with_its_reason(pytester, monkeypatch, ci):
    result = _run(pytester, monkeypatch, ci)
    out = result.stdout.str()
    assert "1 passed, 2 skipped, 1 xfailed" in out and result.ret == 0, out
    assert "needs root: a private mount namespace" in out
