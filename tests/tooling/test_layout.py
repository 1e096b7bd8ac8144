"""Each kind of code has one home and the homes depend one way: the program and its tools never
import the tests, the benchmarks stand on the test bed rather than on `tests/`, and nothing edits
`sys.path` (pyproject.toml makes the root the import root)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.harness import ROOT

NOT_TESTS = ["__main__.py", "components", "tools", "scripts", "policies", "bench", "testbed"]


def python_files(*homes: str) -> list[Path]:
    files: list[Path] = []
    for home in homes:
        path = ROOT / home
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*.py") if "venv" not in p.parts)
    return files


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", python_files(*NOT_TESTS), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_tests_import_the_tests(path):
    assert not {m for m in imported_modules(path) if m == "tests" or m.startswith("tests.")}


def test_no_file_edits_sys_path():
    edits = [str(p.relative_to(ROOT)) for p in python_files(*NOT_TESTS, "tests")
             if any(isinstance(n, ast.Attribute) and n.attr == "path"
                    and isinstance(n.value, ast.Name) and n.value.id == "sys"
                    for n in ast.walk(ast.parse(p.read_text())))]
    assert not edits, f"sys.path edited in {edits}: the root is the import root (pyproject.toml)"


def test_tests_are_grouped():
    assert not list((ROOT / "tests").glob("test_*.py")), "tests/ groups tests in unit/, integration/, tooling/"
