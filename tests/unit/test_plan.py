"""`make plan STACK=...` works with no CLI and no credentials, and says what it is."""

import os
from functools import cache

import pytest

import tools.plan as plan_module
from tests.support.evaluations import evaluated
from tests.support.harness import stack_names
from tools.cost import main as cost_main
from tools.plan import make_plan, render_plan

@cache
def plan_of(stack):
    return make_plan(stack, evaluate=evaluated)


def test_plan_runs_without_pulumi_cli_or_aws_credentials(monkeypatch, capsys):
    # In-process, the way `make plan` runs it, with no credential in the environment and no CLI
    # on PATH. That it needs nothing from tests/ is tests/tooling/test_layout.py's import check.
    for key in list(os.environ):
        if key.startswith(("AWS_", "PULUMI_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("HOME", "/nonexistent")
    assert plan_module.main(["dev"]) == 0
    out = capsys.readouterr().out
    assert "Offline plan for stack 'dev'" in out
    assert "not a diff against AWS" in out
    assert "aws:ecs/service:Service" in out
    assert "Total" in out


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


def test_cost_prints_each_stack_as_a_ratio_to_the_seed(capsys):
    assert cost_main(evaluated) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:8]}
    assert set(rows) == {"seed", "dev", "staging", "prod", "selfhosted-dev", "selfhosted-prod"}
    assert float(rows["seed"][2]) == 1.0
    assert float(rows["dev"][2]) <= 0.25
    assert "dev is" in out and "meets the 0.25x target" in out
    assert float(rows["selfhosted-dev"][2]) <= 0.75
    assert "selfhosted-dev is" in out and "meets the 0.75x target" in out
