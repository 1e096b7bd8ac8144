"""Fargate's part, which moto lacks: each task RunTask starts in the cluster runs on this machine.

moto records a RunTask and answers as ECS does, but runs nothing. `TaskRunner` watches the cluster
(ListTasks every half second) and, for each new task that no service started (the worker's flow
runs), does what the Fargate agent does:

- reads the task definition the task names and the RunTask `overrides` moto kept;
- starts its container as a local process: the override's command (or the definition's
  `entryPoint` + `command`), the definition's `environment` with the override's on top, and each
  of `secrets` read from (moto's) Secrets Manager by its `valueFrom` (testbed/server_containers.py,
  `resolve_value_from`), in an empty working directory and home, as a fresh container has;
- sends the task's state changes as ECS sends them to EventBridge (`ECS Task State Change`:
  PENDING, RUNNING, then STOPPED with the container's exit code), through moto's EventBridge, so
  the stack's own rule puts them on the stack's queue, where the worker's observer reads them:
  a container killed from outside (exit 137) is marked Crashed on that path and no other;
- on StopTask (anyone calling it on the emulator's ECS API), sends SIGTERM to the container, and
  SIGKILL after its `stopTimeout` (30 s by default on Fargate): exit code 143, and the observer
  marks the run Crashed;
- with the `awslogs` driver, copies the container's output to its log stream
  (`<prefix>/<container>/<task id>`) in the declared log group, where the observer looks for a
  crashed run's last lines.

What cannot be the same: the image is not pulled (the process runs this venv's Prefect, the
version the flow-run image pins), the task's CPU and memory are not enforced, the network is this
machine's loopback, and a task definition with more than one container is refused (STOPPED with
`TaskFailedToStart`), since Prefect's ECS template declares one.
"""

from __future__ import annotations

import datetime
import json
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from testbed.server_containers import resolve_value_from
from testbed.processes import Processes, kill_all, signal_group, stop_group, with_environment
from testbed.replay import Replay
from testbed.servers import BIN, spawn

POLL_SECONDS = 0.5
# Fargate's default when the container definition sets no stopTimeout.
DEFAULT_STOP_TIMEOUT_S = 30
FLOW_RUN_TAG = "prefect.io/flow-run-id"
# The most events one PutLogEvents call takes.
LOG_BATCH = 10_000


@dataclass
class RunningTask:
    arn: str
    task: dict[str, Any]
    definition: dict[str, Any]
    container: dict[str, Any]
    process: subprocess.Popen
    log_path: Path
    root: Path
    stop_timeout: float
    stop_requested: Optional[float] = None
    stopped_reason: str = "Essential container in task exited"
    stop_code: str = "EssentialContainerExited"

    @property
    def task_id(self) -> str:
        return self.arn.rsplit("/", 1)[1]

    @property
    def flow_run_id(self) -> Optional[str]:
        return {t["key"]: t["value"] for t in self.task.get("tags", [])}.get(FLOW_RUN_TAG)


@dataclass
class FinishedTask:
    arn: str
    flow_run_id: Optional[str]
    exit_code: Optional[int]
    log_path: Optional[Path]


def exit_code(returncode: int) -> int:
    """What a container runtime reports for a process: a signal N as 128 + N (SIGKILL: 137)."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class TaskRunner:
    replayed: Replay
    cluster_arn: str
    processes: Processes
    workdir: Path
    # What a task's AWS SDK reads instead of the task role's credentials: the emulator.
    aws_env: dict[str, str]
    report: Callable[[str], None] = print
    running: dict[str, RunningTask] = field(default_factory=dict)
    finished: dict[str, FinishedTask] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)
    _halt: threading.Event = field(default_factory=threading.Event)
    _thread: Optional[threading.Thread] = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "TaskRunner":
        (self.workdir / "tasks").mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="ecs-tasks", daemon=True)
        self._thread.start()
        return self

    def task_of(self, flow_run_id: str) -> Optional[RunningTask]:
        with self._lock:
            return next((t for t in self.running.values() if t.flow_run_id == flow_run_id), None)

    def _loop(self) -> None:
        while not self._halt.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception as error:  # the emulator restarting, a malformed task: keep going
                self.report(f"ecs tasks: {type(error).__name__}: {error}")

    def poll(self) -> None:
        ecs = self.replayed.client("ecs")
        desired_running = set(ecs.list_tasks(cluster=self.cluster_arn,
                                             desiredStatus="RUNNING")["taskArns"])
        new = sorted(desired_running - self._seen)
        if new:
            self._seen.update(new)
            described = ecs.describe_tasks(cluster=self.cluster_arn, tasks=new,
                                           include=["TAGS"])["tasks"]
            for task in described:
                # A service's tasks (the worker, the server) are run by the platform itself.
                if not (task.get("group") or "").startswith("service:"):
                    self._launch(task)
        with self._lock:
            tasks = list(self.running.values())
        for running in tasks:
            if running.process.poll() is not None:
                self._finish(running)
            elif running.arn not in desired_running:
                self._stop_requested(running)

    def _launch(self, task: dict[str, Any]) -> None:
        ecs = self.replayed.client("ecs")
        definition = ecs.describe_task_definition(
            taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        self._event(task, definition, "PENDING")
        containers = definition["containerDefinitions"]
        if len(containers) != 1:
            self._refuse(task, definition, f"the sandbox runs one container per flow-run task; "
                                           f"this definition has {len(containers)}")
            return
        (container,) = containers
        overrides = {o["name"]: o for o in task.get("overrides", {}).get("containerOverrides", [])}
        override = overrides.get(container["name"], {})
        command = override.get("command") or [*(container.get("entryPoint") or []),
                                              *(container.get("command") or [])]
        env = {e["name"]: e["value"] for e in [*container.get("environment", []),
                                                *override.get("environment", [])]}
        try:
            for secret in container.get("secrets", []):
                env[secret["name"]] = resolve_value_from(self.replayed, secret["valueFrom"])
        except Exception as error:  # SecretResolutionError, or the secret is missing
            # ECS: ResourceInitializationError, the task stops before its container starts.
            self._refuse(task, definition, f"ResourceInitializationError: unable to pull "
                                           f"secrets: {error}")
            return
        task_id = task["taskArn"].rsplit("/", 1)[1]
        root = self.workdir / "tasks" / task_id
        home = root / "home"
        home.mkdir(parents=True)
        env.update({
            # A fresh container: an empty home, and the `prefect` the image would have on PATH.
            "HOME": str(home),
            "PREFECT_HOME": str(home / ".prefect"),
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            **self.aws_env,
        })
        log_path = self.workdir / "tasks" / f"{task_id}.log"
        process = self.processes.add(f"task {task_id}", spawn(
            command, env, log_path, new_session=True, cwd=home))
        running = RunningTask(task["taskArn"], task, definition, container, process, log_path,
                              root, float(container.get("stopTimeout", DEFAULT_STOP_TIMEOUT_S)))
        with self._lock:
            self.running[running.arn] = running
        self._event(task, definition, "RUNNING", containers=[
            {"name": container["name"], "lastStatus": "RUNNING"}])
        self.report(f"flow-run task {task_id} running as PID {process.pid} "
                    f"(flow run {running.flow_run_id}), log: {log_path}")

    def _stop_requested(self, running: RunningTask) -> None:
        """StopTask: SIGTERM to the container, SIGKILL once its stopTimeout has passed."""
        now = time.monotonic()
        if running.stop_requested is None:
            running.stop_requested = now
            running.stop_code, running.stopped_reason = "UserInitiated", "Task stopped by StopTask"
            self.report(f"flow-run task {running.task_id}: StopTask, SIGTERM to PID "
                        f"{running.process.pid}")
            signal_group(running.process.pid, signal.SIGTERM)
        elif now - running.stop_requested > running.stop_timeout:
            signal_group(running.process.pid, signal.SIGKILL)

    def _end_container(self, running: RunningTask) -> None:
        """What a container's end does to the processes in it: once its first process has exited,
        the kernel kills every other one in its PID namespace. Here they are the processes with
        the task's own HOME, whatever session they started."""
        kill_all(with_environment("HOME", str(running.root / "home")))

    def _finish(self, running: RunningTask) -> None:
        self._end_container(running)
        code = exit_code(running.process.returncode)
        with self._lock:
            self.running.pop(running.arn, None)
        ecs = self.replayed.client("ecs")
        if running.stop_requested is None:
            ecs.stop_task(cluster=self.cluster_arn, task=running.arn,
                          reason=running.stopped_reason)
        self._ship_logs(running)
        self._event(running.task, running.definition, "STOPPED", containers=[
            {"name": running.container["name"], "lastStatus": "STOPPED", "exitCode": code}],
            stopCode=running.stop_code, stoppedReason=running.stopped_reason)
        self.finished[running.arn] = FinishedTask(running.arn, running.flow_run_id, code,
                                                  running.log_path)
        shutil.rmtree(running.root, ignore_errors=True)
        self.report(f"flow-run task {running.task_id} stopped: exit code {code}")

    def _refuse(self, task: dict[str, Any], definition: dict[str, Any], reason: str) -> None:
        self.replayed.client("ecs").stop_task(cluster=self.cluster_arn, task=task["taskArn"],
                                              reason=reason)
        self._event(task, definition, "STOPPED", containers=[], stopCode="TaskFailedToStart",
                    stoppedReason=reason)
        tags = {t["key"]: t["value"] for t in task.get("tags", [])}
        self.finished[task["taskArn"]] = FinishedTask(task["taskArn"], tags.get(FLOW_RUN_TAG),
                                                      None, None)
        self.report(f"flow-run task {task['taskArn'].rsplit('/', 1)[1]} failed to start: {reason}")

    def _event(self, task: dict[str, Any], definition: dict[str, Any], last_status: str,
               containers: Optional[list[dict[str, Any]]] = None, **detail: Any) -> None:
        """An `ECS Task State Change` as ECS sends it to the default event bus
        (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_task_events.html)."""
        body = {
            "clusterArn": self.cluster_arn, "taskArn": task["taskArn"],
            "taskDefinitionArn": definition["taskDefinitionArn"],
            "group": task.get("group"), "startedBy": task.get("startedBy"),
            "launchType": task.get("launchType"),
            "capacityProviderName": task.get("capacityProviderName"),
            "lastStatus": last_status,
            "desiredStatus": "STOPPED" if last_status == "STOPPED" else "RUNNING",
            "containers": [{"taskArn": task["taskArn"], **c} for c in (containers or [])],
            "overrides": task.get("overrides", {}),
            "updatedAt": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            **detail,
        }
        self.replayed.client("events").put_events(Entries=[{
            "Source": "aws.ecs", "DetailType": "ECS Task State Change",
            "Resources": [task["taskArn"]],
            "Detail": json.dumps({k: v for k, v in body.items() if v is not None}, default=str),
        }])

    def _ship_logs(self, running: RunningTask) -> None:
        """The container's output into its awslogs stream, as the log driver would have sent it."""
        config = running.container.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") != "awslogs" or not running.log_path.exists():
            return
        group = options["awslogs-group"]
        stream = f"{options.get('awslogs-stream-prefix', 'ecs')}/{running.container['name']}/" \
                 f"{running.task_id}"
        lines = running.log_path.read_text(errors="replace").splitlines()
        logs = self.replayed.client("logs")
        try:
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
            now = int(time.time() * 1000)
            events = [{"timestamp": now, "message": line} for line in lines if line]
            for start in range(0, len(events), LOG_BATCH):
                logs.put_log_events(logGroupName=group, logStreamName=stream,
                                    logEvents=events[start:start + LOG_BATCH])
        except Exception as error:  # a missing log group fails the task in ECS; here, say so
            self.report(f"flow-run task {running.task_id}: logs not shipped to {group}: {error}")

    def stop(self) -> None:
        """Stop watching, then stop every task still running (SIGTERM, then SIGKILL)."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            tasks = list(self.running.values())
        for running in tasks:
            stop_group(running.process, timeout=10)
            self._end_container(running)
            shutil.rmtree(running.root, ignore_errors=True)

