"""What the `ha` server installs at task start: requirements-server-ha.txt, every package pinned
to the version the tests run and to the sha256 of its wheel, passed to the containers as text and
installed with pip's hash checking on (components/server/server.py)."""

from __future__ import annotations

import re

import pytest

from components.server.server import (
    API_CONTAINER, EXTRA_PACKAGES_INSTALL, REQUIREMENTS_ENV, SERVICES_CONTAINER,
    SERVER_REQUIREMENTS_FILE, server_requirements,
)
from scripts.refresh_server_requirements import PACKAGES, dev_pins, render
from tests.support.server_evaluations import all_containers, environment

REQUIREMENT = re.compile(r"^(?P<name>[a-z0-9-]+)==(?P<version>\S+)$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def parsed() -> dict[str, tuple[str, list[str]]]:
    """Name -> (version, sha256 digests), read as pip reads the file (continuation lines)."""
    text = re.sub(r"\\\n\s*", " ", server_requirements())
    found = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement, *options = line.split()
        match = REQUIREMENT.match(requirement)
        assert match, f"not pinned with ==: {line!r}"
        assert options and all(HASH.match(o) for o in options), f"not pinned by hash: {line!r}"
        found[match.group("name")] = (match.group("version"), [o.split(":")[1] for o in options])
    return found


def test_every_package_is_pinned_to_a_version_and_a_wheel_hash():
    found = parsed()
    assert set(found) == set(PACKAGES) == {"prefect-redis", "redis"}
    for name, (_version, digests) in found.items():
        assert len(digests) == len(set(digests)) >= 1, name


def test_the_pins_are_the_versions_the_tests_run_the_server_with():
    pins = dev_pins()
    assert {name: version for name, (version, _) in parsed().items()} == {
        name: pins[name] for name in PACKAGES}


def test_the_file_is_what_the_refresh_script_writes():
    assert render(parsed()) == SERVER_REQUIREMENTS_FILE.read_text()


def test_the_install_checks_hashes_installs_nothing_else_and_fails_fast():
    for flag in ("--require-hashes", "--no-deps", "--only-binary :all:",
                 '--requirement "$PREFECT_HOME/requirements.txt"', "--retries 2",
                 "--timeout 15"):
        assert flag in EXTRA_PACKAGES_INSTALL, flag
    assert f'"${REQUIREMENTS_ENV}" > "$PREFECT_HOME/requirements.txt"' in EXTRA_PACKAGES_INSTALL
    assert "|| {" in EXTRA_PACKAGES_INSTALL and "exit 1; }" in EXTRA_PACKAGES_INSTALL


@pytest.mark.parametrize("stack", ["selfhosted-prod"])
def test_each_ha_process_gets_the_file_as_text_and_installs_it_first(evaluated, stack):
    found = [c for c in all_containers(evaluated(stack)).values()
             if c["name"] in (API_CONTAINER, SERVICES_CONTAINER)]
    assert len(found) == 2
    for container in found:
        assert environment(container)[REQUIREMENTS_ENV] == server_requirements()
        assert EXTRA_PACKAGES_INSTALL in container["command"][2]
        # Installed before Prefect starts, never by the image entrypoint (read-only root).
        assert container["command"][2].index(EXTRA_PACKAGES_INSTALL) < \
            container["command"][2].index("exec prefect")
        assert "EXTRA_PIP_PACKAGES" not in environment(container)
