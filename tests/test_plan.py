"""`make plan STACK=...` works with no CLI and no credentials, and says what it is."""

import os
import runpy
import subprocess
import sys
from functools import cache

import pytest

import tools.plan as plan_module
from tests.harness import ROOT, stack_names
from tools.plan import make_plan, render_plan

NO_CREDENTIALS_ENV = {
    key: value for key, value in os.environ.items()
    if not key.startswith(("AWS_", "PULUMI_"))
} | {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "HOME": "/nonexistent"}


@cache
def plan_of(stack):
    return make_plan(stack)


def test_plan_runs_without_pulumi_cli_or_aws_credentials():
    result = subprocess.run([sys.executable, "scripts/plan.py", "dev"], cwd=ROOT,
                            env=NO_CREDENTIALS_ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "not a diff against AWS" in result.stdout
    assert "aws:ecs/service:Service" in result.stdout
    assert "Total" in result.stdout


def test_plan_needs_nothing_from_the_tests():
    # `tests` made unimportable: the plan stands on tools/ and the program alone.
    program = ("import runpy, sys; sys.modules['tests'] = None; sys.argv = ['plan.py', 'dev']; "
               "runpy.run_path('scripts/plan.py', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=NO_CREDENTIALS_ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Offline plan for stack 'dev'" in result.stdout


@pytest.mark.parametrize("stack", [*stack_names(), "seed"])
def test_plan_lists_every_declared_resource_policy_result_and_a_total(stack):
    plan = plan_of(stack)
    text = render_plan(plan)
    for type_, name, _ in plan.resources:
        assert name in text and type_ in text
    for rule in plan.policy_results:
        assert f"pass  {rule}" in text
    assert f"${plan.cost.total:>8.2f}" in text


def test_plan_shows_the_properties_a_reviewer_checks():
    text = render_plan(plan_of("prod"))
    assert 'strategy="OnePerAz"' in text
    assert "minCapacity=2, maxCapacity=4" in text
    assert 'cpuArchitecture="ARM64"' in text
    assert "assignPublicIp=false" in text


def test_plan_fails_and_names_the_rule_when_a_policy_is_violated(monkeypatch, capsys):
    def violated(resources):
        return {"image-pinned": ["container 'prefect-worker' runs 'x:latest'"]}

    monkeypatch.setattr(plan_module.worker_rules, "evaluate", violated)
    assert plan_module.main(["dev"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  image-pinned" in out and "x:latest" in out


def test_unknown_stack_is_refused_with_the_known_ones():
    with pytest.raises(SystemExit, match="dev, prod, selfhosted-dev, selfhosted-prod, staging, seed"):
        make_plan("qa")


def test_bench_prints_each_stack_as_a_ratio_to_the_seed(capsys, monkeypatch):
    monkeypatch.setattr(plan_module, "make_plan", lambda stack, prices=None: plan_of(stack))
    bench = runpy.run_path(str(ROOT / "bench" / "cost.py"), run_name="bench")
    assert bench["main"]() == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:8]}
    assert set(rows) == {"seed", "dev", "staging", "prod", "selfhosted-dev", "selfhosted-prod"}
    assert float(rows["seed"][2]) == 1.0
    assert float(rows["dev"][2]) <= 0.25
    assert "dev is" in out and "meets the 0.25x target" in out
    assert float(rows["selfhosted-dev"][2]) <= 0.75
    assert "selfhosted-dev is" in out and "meets the 0.75x target" in out
