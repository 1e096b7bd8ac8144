"""Real servers for the slower rungs: moto (the AWS API) and a Prefect server (SQLite).

Each runs as a child process on a free 127.0.0.1 port and is stopped by its PID. Use them through
the session fixtures in `conftest.py`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float, process: Optional[subprocess.Popen] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(process: subprocess.Popen, timeout: float = 15,
         sig: int = signal.SIGTERM) -> Optional[int]:
    """`sig` (SIGTERM) by PID, then SIGKILL if it lingers; returns the exit code."""
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
    return process.returncode


def _default_sigint() -> None:
    # A container's PID 1 child gets default signal handling; a shell's background job does not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(command: list[str], env: dict[str, str], log_path: Path, *,
          new_session: bool = False, cwd: Optional[Path] = None) -> subprocess.Popen:
    """`command` with its output in `log_path`. `new_session`: in a session (and process group) of
    its own, whose id is its PID, so a terminal's Ctrl-C reaches only its parent, which stops it."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_default_sigint,
                                start_new_session=new_session, cwd=cwd)


class MotoServer:
    """`moto_server` on a free port; ECS services report running tasks."""

    def __init__(self, workdir: Path, new_session: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "moto.log"
        env = {**os.environ, "MOTO_ECS_SERVICE_RUNNING": "1",
               # Where /moto-api/recorder/* keeps recorded requests (tests read RunTask back).
               "MOTO_RECORDER_FILEPATH": str(workdir / "moto-recording")}
        self.process = spawn([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                             env, self.log_path, new_session=new_session)
        wait_for_http(f"{self.url}/moto-api/", 30, self.process)

    def _post(self, path: str, body: Optional[dict] = None) -> bytes:
        request = urllib.request.Request(
            f"{self.url}{path}", method="POST",
            data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def reset(self) -> None:
        self._post("/moto-api/reset")

    def hold_tasks(self, describes: int = 1000) -> None:
        """Keep ECS tasks RUNNING: moto otherwise moves a task one state on at each describe
        (here, after `describes` of them)."""
        self._post("/moto-api/state-manager/set-transition", {
            "model_name": "ecs::task", "transition": {"progression": "manual", "times": describes}})

    def start_recording(self) -> None:
        """Record every request from now on, starting from an empty record."""
        self._post("/moto-api/recorder/reset-recording")
        self._post("/moto-api/recorder/start-recording")

    def stop_recording(self) -> None:
        self._post("/moto-api/recorder/stop-recording")

    def recorded(self, operation: str) -> list[dict]:
        """The bodies of the recorded requests to one AWS JSON-protocol operation (`RunTask`)."""
        with urllib.request.urlopen(f"{self.url}/moto-api/recorder/download-recording",
                                    timeout=10) as response:
            lines = response.read().decode().splitlines()
        bodies = []
        for line in lines:
            entry = json.loads(line)
            if entry["headers"].get("X-Amz-Target", "").endswith(f".{operation}"):
                body = entry["body"]
                if entry["body_encoded"]:
                    body = base64.b64decode(body)
                bodies.append(json.loads(body))
        return bodies

    def client_env(self) -> dict[str, str]:
        """What points boto3 (and a worker) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def stop(self) -> None:
        stop(self.process)


class PrefectServer:
    """`prefect server start` with SQLite in a temporary PREFECT_HOME."""

    def __init__(self, workdir: Path, extra_env: Optional[dict[str, str]] = None,
                 new_session: bool = False, wait: bool = True):
        self.home = Path(tempfile.mkdtemp(prefix="prefect-home-", dir=workdir))
        self.log_path = workdir / "prefect-server.log"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.home}/prefect.db",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        self._new_session = new_session
        self._start()
        if wait:
            self.wait_healthy()

    def _start(self) -> None:
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.process = spawn([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                              "--port", str(self.port)], self.env, self.log_path,
                             new_session=self._new_session)

    def wait_healthy(self, timeout: float = 240) -> None:
        """Until /api/health answers: ~10 s on a quiet machine; minutes on a 2-core one shared
        with other test runs. Stopped, not left running, when it answers too late. A free port
        can be taken by another process before the server binds it: a server that exits while
        starting gets one more port (a new `process`)."""
        for attempt in (1, 2):
            try:
                wait_for_http(f"{self.api_url}/health", timeout, self.process)
                return
            except RuntimeError as exited:
                stop(self.process)
                log = self.log_path.read_text(errors="replace")[-2000:]
                if attempt == 2:
                    raise RuntimeError(f"{exited}; its log ends: {log}") from None
                self._start()
            except BaseException:
                stop(self.process)  # not left running when it answers too late
                raise

    def client_env(self) -> dict[str, str]:
        """What a Prefect client (CLI, worker, flow) needs to reach this server."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home)}

    def stop(self) -> None:
        stop(self.process)
