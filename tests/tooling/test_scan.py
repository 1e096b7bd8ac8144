"""checkov on every stack file: each stack's evaluated resources as a Terraform plan
(scripts/scan.py), scanned with checkov's terraform_plan framework. Every failed check must be in
docs/hardening.md's triage table (its one home), and every row of that table must still be needed.

checkov lives in its own virtualenv (`.venv-scan/`, made here on first use with the pinned
version; `CHECKOV=/path/to/checkov` names another): its dependencies are not the program's.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.support.harness import ROOT, stack_names
from tools.mock_engine import evaluate_stack
from scripts.scan import plan, snake, terraform_type, terraform_values

pytestmark = pytest.mark.slow

CHECKOV_VERSION = "3.3.30"
TRIAGE = re.compile(r"<!-- scan-triage:start -->(.*?)<!-- scan-triage:end -->", re.S)


def triage_rows() -> list[tuple[str, str, tuple[str, ...]]]:
    """(check id, resource address pattern, stacks) of each row of docs/hardening.md's table."""
    table = TRIAGE.search((ROOT / "docs" / "hardening.md").read_text())
    assert table, "docs/hardening.md has no scan-triage table"
    rows = []
    for line in table.group(1).strip().splitlines()[2:]:
        check, resource, stacks = (cell.strip() for cell in line.strip("|").split("|")[:3])
        named = tuple(stack_names()) if stacks == "all" else tuple(
            s.strip() for s in stacks.split(","))
        rows.append((check, resource.strip("`"), named))
    assert rows
    return rows


@cache
def checkov() -> str:
    if os.environ.get("CHECKOV"):
        return os.environ["CHECKOV"]
    venv = ROOT / ".venv-scan"
    binary = venv / "bin" / "checkov"
    if not binary.exists():
        # uv beside this interpreter (make installs it) takes seconds where pip took half a minute.
        uv = Path(sys.executable).parent / "uv"
        if uv.exists():
            subprocess.run([str(uv), "venv", "--quiet", str(venv)], check=True)
            install = [str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
        else:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            install = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                       "--disable-pip-version-check"]
        subprocess.run([*install, f"checkov=={CHECKOV_VERSION}"], check=True, timeout=900)
    return str(binary)


def scan(stacks: list[str], tmp_path: Path) -> dict[str, list[tuple[str, str]]]:
    """Each stack's failed checks, from one checkov run over every stack's plan (checkov's start,
    loading its checks, is most of a run: 8 s for one plan, 10 s for five)."""
    for stack in stacks:
        (tmp_path / f"{stack}.json").write_text(
            json.dumps(plan(evaluate_stack(stack)), default=str))
    files = [arg for stack in stacks for arg in ("-f", str(tmp_path / f"{stack}.json"))]
    result = subprocess.run(
        [checkov(), *files, "--framework", "terraform_plan", "--compact", "-o", "json",
         "--skip-download"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    checks = report.get("results", {})

    def of(stack: str, kind: str) -> list[dict]:
        return [c for c in checks.get(kind, []) if Path(c["file_path"]).stem == stack]

    for stack in stacks:
        assert len(of(stack, "passed_checks")) > 100, (stack, report["summary"])
    return {stack: [(f["check_id"], f["resource"]) for f in of(stack, "failed_checks")]
            for stack in stacks}
def test_the_plan_converts_names_and_blocks_as_terraform_has_them():
    assert terraform_type("aws:rds/instance:Instance") == "aws_db_instance"
    assert terraform_type("aws:ecs/taskDefinition:TaskDefinition") == "aws_ecs_task_definition"
    assert terraform_type("prefect-ecs-worker:index:Network") is None
    assert snake("enableDeletionProtection") == "enable_deletion_protection"
    values = terraform_values({"defaultActions": [{"type": "forward"}],
                               "healthCheck": {"path": "/"}, "tags": {"a": "b"}})
    assert values == {"default_action": [{"type": "forward"}],
                      "health_check": [{"path": "/"}], "tags": {"a": "b"}}


def test_every_stack_file_has_no_untriaged_checkov_finding_and_no_stale_triage(tmp_path):
    rows = triage_rows()
    used: set[int] = set()
    untriaged: dict[str, list[tuple[str, str]]] = {}
    counts = {}
    stacks = stack_names()
    assert len(stacks) == 5
    for stack, findings in scan(stacks, tmp_path).items():
        counts[stack] = len(findings)
        for check, resource in findings:
            match = [i for i, (c, pattern, named) in enumerate(rows)
                     if c == check and stack in named and fnmatch.fnmatch(resource, pattern)]
            used.update(match)
            if not match:
                untriaged.setdefault(stack, []).append((check, resource))
    print("checkov findings before triage:", counts)
    assert not untriaged, f"findings not in docs/hardening.md's triage table: {untriaged}"
    stale = [rows[i] for i in range(len(rows)) if i not in used]
    assert not stale, f"triage rows no stack needs any more: {stale}"
