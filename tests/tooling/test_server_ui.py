"""`make ui`: the exact SSM port-forward call, built from the stack's outputs and what ECS reports
about the running server task, without AWS (the AWS CLI's answers are canned)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from scripts.server_ui import DOCUMENT, main, session_command
from tests.support.harness import ROOT

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/prefect-ecs-worker-selfhosted-dev/0f1e2d3c4b5a"
RUNTIME_ID = "0f1e2d3c4b5a-1234567890"


def outputs_of(evaluation) -> dict:
    keys = ("clusterName", "serverExecServiceName", "serverExecContainer", "serverPort",
            "serverExecEnabled", "credentialSecretArn", "serverMode")
    return {k: evaluation.exports[k] for k in keys}


class FakeAws:
    """Answers the two ECS calls as the AWS CLI prints them; records every call."""

    def __init__(self, container: str, exec_enabled: bool = True, running: bool = True):
        self.calls: list[list[str]] = []
        self.container, self.exec_enabled, self.running = container, exec_enabled, running

    def __call__(self, argv):
        self.calls.append(list(argv))
        if argv[:3] == ["aws", "ecs", "list-tasks"]:
            return json.dumps({"taskArns": [TASK_ARN] if self.running else []})
        if argv[:3] == ["aws", "ecs", "describe-tasks"]:
            return json.dumps({"tasks": [{
                "taskArn": TASK_ARN, "enableExecuteCommand": self.exec_enabled,
                "containers": [{"name": "sidecar", "runtimeId": "other"},
                               {"name": self.container, "runtimeId": RUNTIME_ID}]}]})
        raise AssertionError(f"unexpected call {argv}")


@pytest.fixture
def dev_outputs(evaluated, tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs_of(evaluated("selfhosted-dev"))))
    return path


def test_ui_builds_the_port_forward_into_the_running_server_container(dev_outputs, capsys):
    fake = FakeAws("prefect-server")
    assert main(["selfhosted-dev", "--outputs", str(dev_outputs), "--print"], runner=fake) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "aws ssm start-session --target "
        f"ecs:prefect-ecs-worker-selfhosted-dev_0f1e2d3c4b5a_{RUNTIME_ID} "
        f"--document-name {DOCUMENT} --parameters "
        "'{\"host\":[\"localhost\"],\"portNumber\":[\"4200\"],\"localPortNumber\":[\"4200\"]}'")
    assert fake.calls[0] == ["aws", "ecs", "list-tasks", "--cluster",
                             "prefect-ecs-worker-selfhosted-dev", "--service-name",
                             "prefect-ecs-worker-selfhosted-dev-server", "--desired-status",
                             "RUNNING", "--output", "json"]
    assert "http://localhost:4200" in out[1]
    assert "aws secretsmanager get-secret-value --secret-id arn:aws:secretsmanager:" in out[2]


def test_the_local_port_is_the_users_choice():
    command = session_command("ecs:c_t_r", 4200, 14200)
    assert json.loads(command[-1]) == {"host": ["localhost"], "portNumber": ["4200"],
                                       "localPortNumber": ["14200"]}
    assert command[command.index("--document-name") + 1] == DOCUMENT


@pytest.mark.parametrize("fake,message", [
    (FakeAws("prefect-server", running=False), "no running task in service"),
    (FakeAws("prefect-server", exec_enabled=False), "started without ECS Exec"),
    (FakeAws("prefect-api"), "container prefect-server is not running yet"),
])
def test_ui_says_what_is_wrong_with_the_task(dev_outputs, fake, message):
    with pytest.raises(SystemExit, match=message):
        main(["selfhosted-dev", "--outputs", str(dev_outputs), "--print"], runner=fake)


def test_ui_refuses_a_public_server_and_a_stack_without_one(evaluated, tmp_path):
    public = dict(outputs_of(evaluated("selfhosted-prod")),
                  serverUrl=evaluated("selfhosted-prod").exports["serverUrl"])
    path = tmp_path / "public.json"
    path.write_text(json.dumps(public))
    with pytest.raises(SystemExit, match=re.escape("open https://prefect.example.com instead")):
        main(["selfhosted-prod", "--outputs", str(path), "--print"], runner=FakeAws("x"))
    path.write_text(json.dumps(evaluated("dev").exports, default=str))
    with pytest.raises(SystemExit, match="runs no Prefect server"):
        main(["dev", "--outputs", str(path), "--print"], runner=FakeAws("x"))


def test_make_ui_runs_the_script_with_the_stack_and_outputs_file():
    dry = subprocess.run(["make", "-n", "ui", "STACK=selfhosted-dev", "OUTPUTS=o.json"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "scripts/server_ui.py selfhosted-dev --outputs o.json" in dry
