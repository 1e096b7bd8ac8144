"""`make plan STACK=...` works with no CLI and no credentials, and says what it is."""

import os
import subprocess
import sys
from functools import cache

import pytest

import tools.plan as plan_module
from tests.support.evaluations import evaluated
from tests.support.harness import ROOT, stack_names
from tools.cost import main as cost_main
from tools.plan import make_plan, render_plan

NO_CREDENTIALS_ENV = {
    key: value for key, value in os.environ.items()
    if not key.startswith(("AWS_", "PULUMI_"))
} | {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "HOME": "/nonexistent"}


@cache
def plan_of(stack):
    return make_plan(stack)


def test_plan_runs_without_pulumi_cli_aws_credentials_or_the_tests():
    # One process for both properties (each costs a cold start): no credentials in the
    # environment, no CLI on PATH, and `tests` made unimportable, run the way `make plan` does.
    program = ("import runpy, sys; sys.modules['tests'] = None; sys.argv = ['plan', 'dev']; "
               "runpy.run_module('tools.plan', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=NO_CREDENTIALS_ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Offline plan for stack 'dev'" in result.stdout
    assert "not a diff against AWS" in result.stdout
    assert "aws:ecs/service:Service" in result.stdout
    assert "Total" in result.stdout


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
    with pytest.raises(SystemExit, match="dev, prod, staging, seed"):
        make_plan("qa")


def test_cost_prints_each_stack_as_a_ratio_to_the_seed(capsys):
    assert cost_main(evaluated) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:6]}
    assert set(rows) == {"seed", "dev", "staging", "prod"}
    assert float(rows["seed"][2]) == 1.0
    assert float(rows["dev"][2]) <= 0.25
    assert "meets the 0.25x target" in out
