"""Each kind of code has one home and the homes depend one way: the program and its tools never
import the tests, the benchmarks stand on the test bed rather than on `tests/`, and nothing edits
`sys.path` (pyproject.toml makes the root the import root)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from tests.support.harness import ROOT
from tests.support.sources import nodes

NOT_TESTS = ["__main__.py", "components", "tools", "scripts", "policies", "bench", "testbed"]


def python_files(*homes: str) -> list[Path]:
    files: list[Path] = []
    for home in homes:
        path = ROOT / home
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*.py") if "venv" not in p.parts)
    return files


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in nodes(path):
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
                    for n in nodes(p))]
    assert not edits, f"sys.path edited in {edits}: the root is the import root (pyproject.toml)"


def test_tests_are_grouped():
    assert not list((ROOT / "tests").glob("test_*.py")), "tests/ groups tests in unit/, integration/, tooling/"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for p in python_files(*NOT_TESTS, "tests")}


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Each project module -> the project modules it imports, at any depth of its body (an import
    inside a function still runs, and still closes a cycle). `from a import b` counts as `a.b`
    where `a.b` is a module, else as `a`; importing a package module runs its `__init__`."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in nodes(path):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                           else node.module for alias in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_project_imports_itself_back():
    graph = import_graph()
    assert {"components.config.settings", "components.config.reader",
            "components.composition"} <= set(graph)
    assert "components.config.reader" in graph["components.config.settings"]
    found = cycles(graph)
    assert not found, f"import cycles: {found}"


# The `__provider` a stack deployed before the grouping holds in state for its work pool and its
# stuck-run automation (pulumi.dynamic pickles a provider by reference, module and class).
PICKLED_BEFORE_THE_GROUPING = {
    "WorkPoolProvider":
        "gASVMAAAAAAAAACMFGNvbXBvbmVudHMud29ya19wb29slIwQV29ya1Bvb2xQcm92aWRlcpSTlCmBlC4=",
    "StuckRunAutomationProvider":
        "gASVPQAAAAAAAACMF2NvbXBvbmVudHMucnVuX3JlY292ZXJ5lIwaU3R1Y2tSdW5BdXRvbWF0aW9uUHJvdmlk"
        "ZXKUk5QpgZQu",
}


@pytest.mark.parametrize("class_name", PICKLED_BEFORE_THE_GROUPING)
def test_state_from_before_the_grouping_still_loads_its_providers(class_name):
    """`pulumi refresh` and `destroy` load the provider from state as pulumi.dynamic does
    (dill.loads of the base64 text): the old module path must still name the class."""
    import base64

    import dill

    from components.prefect.stuck_run_automation import StuckRunAutomationProvider
    from components.prefect.work_pool import WorkPoolProvider

    provider = dill.loads(base64.b64decode(PICKLED_BEFORE_THE_GROUPING[class_name]))
    expected = {"WorkPoolProvider": WorkPoolProvider,
                "StuckRunAutomationProvider": StuckRunAutomationProvider}[class_name]
    assert type(provider) is expected


MAX_LINES = 600


def test_no_module_or_test_helper_grows_past_the_cap():
    """A module past about 600 lines holds more than one concern: split it by what it serves."""
    files = python_files(*NOT_TESTS, "tests")
    assert len(files) > 100
    long = {str(p.relative_to(ROOT)): n for p in files
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_pyproject_names_every_package_and_mypy_reads_every_one_but_the_tests():
    import re
    import tomllib

    text = (ROOT / "pyproject.toml").read_text()
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert {"components", "testbed", "tests"} <= packages
    named = re.search(r"import root \(packages ([\w, ]+)\)", text)
    assert named and set(named.group(1).split(", ")) == packages
    checked = set(tomllib.loads(text)["tool"]["mypy"]["files"])
    assert packages - {"tests", "policies"} <= checked


def test_tools_need_no_aws_account_and_write_no_file():
    """The rule that splits tools/ from scripts/ (docs/architecture.md): a tool evaluates the
    program offline and prints; what reaches a deployment or rewrites a file is a script."""
    tools = python_files("tools")
    assert tools
    reaching = [str(p.relative_to(ROOT)) for p in tools
                if imported_modules(p) & {"boto3", "botocore", "subprocess"}
                or any(isinstance(n, ast.Attribute) and n.attr in ("write_text", "write_bytes")
                       for n in nodes(p))]
    assert not reaching, f"move to scripts/: {reaching}"


# components/'s packages, each using only those before it (docs/architecture.md).
PACKAGE_ORDER = ["config", "platform", "prefect", "worker", "server"]


def test_each_package_of_components_uses_only_the_packages_before_it():
    graph = import_graph()

    def package(module: str) -> str:
        parts = module.split(".")
        return parts[1] if parts[0] == "components" and len(parts) > 2 else ""

    assert {package(m) for m in graph} - {""} == set(PACKAGE_ORDER)
    uses = {(package(a), package(b)) for a, targets in graph.items() for b in targets
            if package(a) and package(b) and package(a) != package(b)}
    assert ("server", "worker") in uses
    backwards = sorted((a, b) for a, b in uses if PACKAGE_ORDER.index(b) > PACKAGE_ORDER.index(a))
    assert not backwards, f"a package using one after it: {backwards}"
