"""`make deploy` (scripts/deploy.sh): without the Pulumi CLI or AWS credentials it stops at once and
says what to install or set; otherwise it picks a state backend, the stack, asks only for what is
missing (the key as a secret, never on a command line) and runs `pulumi up`.

The later branches run against a stand-in `pulumi` on PATH that records its arguments and keeps
config in a JSON file, answering the few commands the script uses the way the CLI does."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.harness import CLOUD_URL, ROOT, TEST_API_KEY

FAKE_PULUMI = r'''#!PYTHON -S
import json, os, sys
home = os.environ["FAKE_PULUMI_HOME"]
state_path = os.path.join(home, "state.json")
state = json.load(open(state_path)) if os.path.exists(state_path) else {
    "logged_in": False, "stacks": {}}
args = sys.argv[1:]
with open(os.path.join(home, "calls.log"), "a") as log:
    log.write(json.dumps(args) + "\n")

def save():
    json.dump(state, open(state_path, "w"))

def option(name):
    return args[args.index(name) + 1] if name in args else state.get("current")

if args[:1] == ["whoami"]:
    sys.exit(0 if state["logged_in"] else 1)
elif args[:1] == ["login"]:
    state["logged_in"] = True
elif args[:2] == ["stack", "select"]:
    if args[2] not in state["stacks"]:
        sys.exit(1)
    state["current"] = args[2]
elif args[:2] == ["stack", "init"]:
    state["stacks"][args[2]] = {}
    state["current"] = args[2]
elif args[:2] == ["config", "--json"]:
    config = state["stacks"][option("--stack")]
    print(json.dumps({f"prefect-ecs-worker:{k}": {"value": "[secret]" if v["secret"] else v["value"],
                                                  "secret": v["secret"]} for k, v in config.items()}))
elif args[:2] == ["config", "set"]:
    positional = [a for a in args[2:] if not a.startswith("--")]
    positional = [a for a in positional if a != option("--stack")]
    key, value = positional[0], positional[1] if len(positional) > 1 else sys.stdin.readline().strip()
    state["stacks"][option("--stack")][key] = {"value": value, "secret": "--secret" in args}
elif args[:1] == ["up"]:
    print("Updating (" + option("--stack") + ")")
else:
    sys.exit(f"fake pulumi: unexpected {args}")
save()
'''
TOOLS = ("bash", "dirname", "grep", "env")


def make_bin(tmp_path: Path, with_pulumi: bool) -> Path:
    """A PATH directory with only what the script may use: no aws CLI, and pulumi only if asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "python3").symlink_to(sys.executable)
    if with_pulumi:
        shim = bin_dir / "pulumi"
        shim.write_text(FAKE_PULUMI.replace("PYTHON", sys.executable, 1))
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def make_checkout(tmp_path: Path) -> Path:
    """The files the script reads, and a venv that is already installed (a symlinked interpreter)."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "deploy.sh", checkout / "scripts" / "deploy.sh")
    for name in ["requirements.txt", "Pulumi.yaml", *(p.name for p in ROOT.glob("Pulumi.*.yaml"))]:
        shutil.copy(ROOT / name, checkout / name)
    (checkout / "venv" / "bin").mkdir(parents=True)
    (checkout / "venv" / "bin" / "python").symlink_to(sys.executable)
    (checkout / "venv" / ".deploy-installed").touch()
    return checkout


def run_deploy(tmp_path: Path, *, with_pulumi: bool, aws_env: dict[str, str],
               stdin: str = "", stack: str = "dev") -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    fake_home = tmp_path / "fake-pulumi"
    fake_home.mkdir(exist_ok=True)
    checkout = tmp_path / "checkout"
    if not checkout.exists():
        make_checkout(tmp_path)
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        make_bin(tmp_path, with_pulumi)
    env = {"PATH": str(bin_dir), "HOME": str(home), "FAKE_PULUMI_HOME": str(fake_home), **aws_env}
    return subprocess.run(["bash", str(checkout / "scripts" / "deploy.sh"), stack], input=stdin,
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)


def pulumi_calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "fake-pulumi" / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


KEYS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example"}


def test_without_the_pulumi_cli_it_stops_at_once_and_says_how_to_install_it(tmp_path):
    result = run_deploy(tmp_path, with_pulumi=False, aws_env={})
    assert result.returncode == 1
    assert "the Pulumi CLI is not installed" in result.stderr
    assert "https://get.pulumi.com" in result.stderr
    assert result.stdout == ""  # nothing was started


def test_without_aws_credentials_it_stops_before_calling_pulumi(tmp_path):
    result = run_deploy(tmp_path, with_pulumi=True, aws_env={})
    assert result.returncode == 1
    assert "no AWS credentials found" in result.stderr
    assert "AWS_PROFILE" in result.stderr and "AWS_ACCESS_KEY_ID" in result.stderr
    assert pulumi_calls(tmp_path) == []


@pytest.mark.parametrize("aws_env", [
    {"AWS_PROFILE": "platform"}, {"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token"}])
def test_any_usual_credential_source_gets_past_the_check(tmp_path, aws_env):
    result = run_deploy(tmp_path, with_pulumi=True, aws_env=aws_env,
                        stdin=f"{CLOUD_URL}\n{TEST_API_KEY}\n")
    assert result.returncode == 0, result.stderr
    assert pulumi_calls(tmp_path)[-1] == ["up", "--stack", "dev"]


def test_first_deploy_uses_local_state_creates_the_stack_and_asks_for_url_and_key(tmp_path):
    result = run_deploy(tmp_path, with_pulumi=True, aws_env=KEYS,
                        stdin=f"{CLOUD_URL}\n{TEST_API_KEY}\n")
    assert result.returncode == 0, result.stderr
    calls = pulumi_calls(tmp_path)
    assert ["login", "--local"] in calls
    assert calls.index(["stack", "select", "dev"]) < calls.index(["stack", "init", "dev"])
    assert ["config", "set", "--stack", "dev", "prefectApiUrl", CLOUD_URL] in calls
    # The key is read by pulumi itself from the prompt, stored as a secret, never an argument.
    assert ["config", "set", "--stack", "dev", "--secret", "prefectApiKey"] in calls
    assert TEST_API_KEY not in json.dumps(calls)
    state = json.loads((tmp_path / "fake-pulumi" / "state.json").read_text())
    assert state["stacks"]["dev"]["prefectApiKey"] == {"value": TEST_API_KEY, "secret": True}
    assert calls[-1] == ["up", "--stack", "dev"]
    assert TEST_API_KEY not in result.stdout + result.stderr


def test_second_deploy_keeps_the_backend_and_asks_nothing(tmp_path):
    first = run_deploy(tmp_path, with_pulumi=True, aws_env=KEYS, stdin=f"{CLOUD_URL}\n{TEST_API_KEY}\n")
    assert first.returncode == 0, first.stderr
    (tmp_path / "fake-pulumi" / "calls.log").unlink()
    second = run_deploy(tmp_path, with_pulumi=True, aws_env=KEYS, stdin="")
    assert second.returncode == 0, second.stderr
    calls = pulumi_calls(tmp_path)
    assert not [c for c in calls if c[0] == "login" or c[:2] in (["stack", "init"], ["config", "set"])]
    assert calls[-1] == ["up", "--stack", "dev"]


def test_an_adopted_secret_arn_counts_as_the_credential(tmp_path):
    make_checkout(tmp_path)
    make_bin(tmp_path, with_pulumi=True)
    fake_home = tmp_path / "fake-pulumi"
    fake_home.mkdir()
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prefect/api-key-Xy12Ab"
    (fake_home / "state.json").write_text(json.dumps({"logged_in": True, "stacks": {"dev": {
        "prefectApiUrl": {"value": CLOUD_URL, "secret": False},
        "prefectApiKeySecretArn": {"value": arn, "secret": False}}}}))
    result = run_deploy(tmp_path, with_pulumi=True, aws_env=KEYS, stdin="")
    assert result.returncode == 0, result.stderr
    assert not [c for c in pulumi_calls(tmp_path) if c[:2] == ["config", "set"]]


def test_no_answer_for_the_api_url_stops_with_the_command_to_set_it(tmp_path):
    result = run_deploy(tmp_path, with_pulumi=True, aws_env=KEYS, stdin="")
    assert result.returncode == 1
    assert "pulumi config set prefectApiUrl" in result.stderr
    assert not [c for c in pulumi_calls(tmp_path) if c[0] == "up"]


def test_make_deploy_runs_this_script_for_the_chosen_stack():
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/deploy.sh $(STACK)" in makefile
    assert os.access(ROOT / "scripts" / "deploy.sh", os.X_OK)
