#!/usr/bin/env python3
"""Open the stack's internal Prefect server on this machine: `make ui STACK=selfhosted-dev`.

An internal server has no public endpoint. This builds, from the stack's outputs, an SSM port
forward through ECS Exec into the running server (single) or API (ha) task, and runs it:

    aws ssm start-session --target ecs:<cluster>_<task id>_<container runtime id> \\
        --document-name AWS-StartPortForwardingSessionToRemoteHost \\
        --parameters '{"host":["localhost"],"portNumber":["4200"],"localPortNumber":["4200"]}'

then the UI is at http://localhost:4200 and the CLI works with
`PREFECT_API_URL=http://localhost:4200/api`. The login is the stack's basic-auth string, read with
the printed `aws secretsmanager get-secret-value` command (never printed itself).

Needs the AWS CLI with the Session Manager plugin, and credentials allowed `ecs:ListTasks`,
`ecs:DescribeTasks` and `ssm:StartSession` on the task. `--print` only prints the command;
`--outputs FILE` reads `pulumi stack output --json` from a file instead of the Pulumi CLI.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

DOCUMENT = "AWS-StartPortForwardingSessionToRemoteHost"
REQUIRED = ("clusterName", "serverExecServiceName", "serverExecContainer", "serverPort",
            "serverExecEnabled", "credentialSecretArn")

Runner = Callable[[Sequence[str]], str]


class UiError(SystemExit):
    def __init__(self, message: str):
        super().__init__(f"make ui: {message}")


def run(argv: Sequence[str]) -> str:
    try:
        return subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise UiError(f"{argv[0]} is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise UiError(f"{shlex.join(argv)} failed: {exc.stderr.strip()[:500]}") from None


def stack_outputs(stack: str, outputs_file: str | None, runner: Runner = run) -> dict[str, Any]:
    if outputs_file:
        return json.loads(Path(outputs_file).read_text())
    return json.loads(runner(["pulumi", "stack", "output", "--json", "--stack", stack]))


def check_outputs(outputs: dict[str, Any]) -> None:
    missing = [key for key in REQUIRED if key not in outputs]
    if "serverMode" not in outputs:
        raise UiError("this stack runs no Prefect server (prefectServer is none)")
    if missing:
        raise UiError(f"the stack outputs lack {', '.join(missing)}; run pulumi up first")
    if not outputs["serverExecEnabled"]:
        raise UiError("ECS Exec is off for this server (serverAccess public): open "
                      f"{outputs.get('serverUrl', 'its serverUrl output')} instead")


def session_target(outputs: dict[str, Any], runner: Runner = run) -> str:
    """`ecs:<cluster>_<task id>_<runtime id>` of a running server task's main container."""
    cluster, service = outputs["clusterName"], outputs["serverExecServiceName"]
    listed = json.loads(runner(["aws", "ecs", "list-tasks", "--cluster", cluster,
                                "--service-name", service, "--desired-status", "RUNNING",
                                "--output", "json"]))
    if not listed.get("taskArns"):
        raise UiError(f"no running task in service {service} of cluster {cluster}")
    described = json.loads(runner(["aws", "ecs", "describe-tasks", "--cluster", cluster,
                                   "--tasks", listed["taskArns"][0], "--output", "json"]))
    task = described["tasks"][0]
    if not task.get("enableExecuteCommand"):
        raise UiError(f"task {task['taskArn']} was started without ECS Exec; redeploy the service")
    containers = [c for c in task["containers"] if c["name"] == outputs["serverExecContainer"]]
    if not containers or not containers[0].get("runtimeId"):
        raise UiError(f"container {outputs['serverExecContainer']} is not running yet")
    task_id = task["taskArn"].rsplit("/", 1)[-1]
    return f"ecs:{cluster}_{task_id}_{containers[0]['runtimeId']}"


def session_command(target: str, remote_port: int, local_port: int) -> list[str]:
    parameters = {"host": ["localhost"], "portNumber": [str(remote_port)],
                  "localPortNumber": [str(local_port)]}
    return ["aws", "ssm", "start-session", "--target", target, "--document-name", DOCUMENT,
            "--parameters", json.dumps(parameters, separators=(",", ":"))]


def login_hint(outputs: dict[str, Any], local_port: int) -> str:
    return (f"UI: http://localhost:{local_port}  CLI: PREFECT_API_URL=http://localhost:"
            f"{local_port}/api\nLogin (basic auth user:password): aws secretsmanager "
            f"get-secret-value --secret-id {outputs['credentialSecretArn']} --query SecretString "
            "--output text")


def main(argv: Sequence[str] | None = None, runner: Runner = run) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack")
    parser.add_argument("--outputs", help="pulumi stack output --json, saved to a file")
    parser.add_argument("--local-port", type=int, default=4200)
    parser.add_argument("--print", action="store_true", help="print the command, do not run it")
    args = parser.parse_args(argv)
    outputs = stack_outputs(args.stack, args.outputs, runner)
    check_outputs(outputs)
    command = session_command(session_target(outputs, runner), int(outputs["serverPort"]),
                              args.local_port)
    print(shlex.join(command))
    print(login_hint(outputs, args.local_port))
    if args.print:
        return 0
    if shutil.which("session-manager-plugin") is None:
        raise UiError("the AWS Session Manager plugin is not installed: "
                      "https://docs.aws.amazon.com/systems-manager/latest/userguide/"
                      "session-manager-working-with-install-plugin.html")
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
