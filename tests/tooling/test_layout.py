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


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for p in python_files(*NOT_TESTS, "tests")}


def import_graph() -> dict[str, set[str]]:
    """Each project module -> the project modules it imports, at any depth of its body (an import
    inside a function still runs, and still closes a cycle). `from a import b` counts as `a.b`
    where `a.b` is a module, else as `a`; importing a package module runs its `__init__`."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
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
    assert not cycles(graph), f"import cycles: {cycles(graph)}"


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
