"""An older Prefect release in its own venv, for upgrade tests: installed once, kept in `.cache/`.

    python -m testbed.old_prefect       # install it if missing (make test does this)

Installing an older Prefect against today's dependencies breaks it (a current FastAPI makes 3.4
answer 500), so every dependency is resolved as PyPI stood when the release was uploaded: uv's
`--exclude-newer` (the pip here, 23.x, has no `--uploaded-prior-to`). The release is the newest
3.6.x, three minor versions behind the pinned 3.9.1 (components/config/server.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD_PREFECT_VERSION = "3.6.29"
# The release wheel's upload time on PyPI (its own files page): nothing newer is resolved.
OLD_PREFECT_UPLOADED = "2026-05-01T21:50:00Z"
VENV = ROOT / ".cache" / f"prefect-{OLD_PREFECT_VERSION}"
BIN = VENV / "bin"
STAMP = VENV / ".installed"


def _uv() -> str:
    found = Path(sys.executable).parent / "uv"
    if found.exists():
        return str(found)
    which = shutil.which("uv")
    if which is None:
        raise RuntimeError("uv is needed (make install puts it in the venv) for --exclude-newer")
    return which


def ensure() -> Path:
    """The old release's bin directory, installed first if it is not there yet."""
    if STAMP.exists():
        return BIN
    shutil.rmtree(VENV, ignore_errors=True)
    uv = _uv()
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(VENV)], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(BIN / "python"),
                    "--exclude-newer", OLD_PREFECT_UPLOADED, f"prefect=={OLD_PREFECT_VERSION}"],
                   check=True)
    version = subprocess.run([str(BIN / "python"), "-c",
                              "import prefect; print(prefect.__version__)"],
                             check=True, capture_output=True, text=True).stdout.strip()
    if version != OLD_PREFECT_VERSION:
        raise RuntimeError(f"{VENV} holds prefect {version}, not {OLD_PREFECT_VERSION}")
    STAMP.write_text(f"prefect {OLD_PREFECT_VERSION}, dependencies as of {OLD_PREFECT_UPLOADED}\n")
    return BIN


if __name__ == "__main__":
    print(ensure())
