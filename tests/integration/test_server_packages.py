"""The `ha` server installs only what requirements-server-ha.txt pins by hash, or stops at once.

The declared `prefect-api` and `prefect-services` commands run as ECS would start them, install step
kept (testbed/server_containers.py `keep_install`), with the package index as the one seam
(`PIP_INDEX_URL`; pip reads no other configuration here):

- an index that cannot be reached: the task exits non-zero within seconds with one ERROR line,
  never starting Prefect;
- an index that serves other bytes under the pinned file names (a tampered mirror, a replaced
  release): pip refuses them for their hash, and the task exits the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.server.migrate import CA_BUNDLE_ENV
from testbed.prefect_worker import deploy
from testbed.servers import free_port, spawn, stop
from testbed.server_containers import container_launch, family_of, server_evaluation

pytestmark = pytest.mark.slow

FAILS_WITHIN_S = 60  # measured about 3 s: two retries of a refused connection
INSTALL_ERROR = "could not install the hash-pinned server packages"
WHEELS = ("prefect_redis-0.3.0-py3-none-any.whl", "redis-8.1.0-py3-none-any.whl")


@pytest.fixture(scope="module")
def stack(moto_server):
    return deploy(server_evaluation("ha"), moto_server, prefect_api_url=None)


def run_declared(stack, container: str, home: Path, index_url: str) -> tuple[int, str, float]:
    family = family_of(stack.evaluation, container)
    launch = container_launch(
        stack.evaluation, stack.replayed, container, family=family, home=home,
        endpoints={CA_BUNDLE_ENV: "not used: the task stops before it connects"},
        extra_env={"PIP_INDEX_URL": index_url, "PIP_CONFIG_FILE": "/dev/null"},
        keep_install=True)
    assert "--require-hashes" in launch.command[2]
    started = time.monotonic()
    code, log = launch.run(home.parent / f"{home.name}.log", FAILS_WITHIN_S)
    return code, log, time.monotonic() - started


def error_lines(log: str) -> list[dict]:
    records = []
    for line in log.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in records if isinstance(r, dict) and r.get("level") == "ERROR"]


@pytest.mark.parametrize("container", ["prefect-api", "prefect-services"])
def test_an_unreachable_index_stops_the_task_at_once_with_a_clear_line(stack, container,
                                                                       tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/simple"
    code, log, took = run_declared(stack, container, tmp_path / "home", closed)
    assert code == 1 and took < FAILS_WITHIN_S, (code, took, log[-2000:])
    (error,) = error_lines(log)
    assert error["name"] == "prefect.server_install" and INSTALL_ERROR in error["message"]
    assert "Uvicorn running" not in log and "Starting services" not in log
    print(f"\n{container}: stopped {took:.1f} s after start")


@pytest.fixture
def tampered_index(tmp_path):
    """A PEP 503 index on 127.0.0.1 that serves other bytes under the pinned wheels' names."""
    root = tmp_path / "index"
    for wheel in WHEELS:
        project = wheel.split("-")[0].replace("_", "-")
        (root / project).mkdir(parents=True)
        (root / project / wheel).write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip
        (root / project / "index.html").write_text(f'<a href="{wheel}">{wheel}</a>\n')
    port = free_port()
    server = spawn([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                    "--directory", str(root)], {"PATH": "/usr/bin:/bin"}, tmp_path / "index.log")
    deadline = time.monotonic() + 30
    while subprocess.run(["python3", "-c", f"import urllib.request; urllib.request.urlopen("
                          f"'http://127.0.0.1:{port}/redis/')"], capture_output=True
                         ).returncode != 0:
        assert time.monotonic() < deadline and server.poll() is None
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    stop(server)


def test_a_package_that_does_not_match_its_hash_is_refused(stack, tampered_index, tmp_path):
    code, log, took = run_declared(stack, "prefect-api", tmp_path / "home", tampered_index)
    assert code == 1, log[-2000:]
    assert "DO NOT MATCH THE HASHES" in log  # pip's own words, above our line
    (error,) = error_lines(log)
    assert INSTALL_ERROR in error["message"]
    assert not (tmp_path / "home" / "python" / "redis").exists()
