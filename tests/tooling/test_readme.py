"""The README is the manual and docs/ holds the rest: every table in them is generated from its one
source (scripts/doc_tables.py) and equal to what is checked in, every doc is linked from the README,
and the commands the README promises exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from scripts import doc_tables
from scripts.doc_tables import default_cell, table_in
from tests.support.evaluations import evaluated
from tests.support.harness import ROOT, read_yaml

README = (ROOT / "README.md").read_text()
ROW = re.compile(r"^\| `(?P<key>[A-Za-z]+)` \| (?P<type>[a-z ]+) \| (?P<default>[^|]+) \|", re.M)
# The cost table is priced from the session's cached evaluations instead of evaluating again.
GENERATORS = {**{name: generate for name, (_, generate) in doc_tables.TABLES.items()},
              "cost": lambda: doc_tables.cost_table(evaluated)}


def declared() -> dict[str, dict]:
    return read_yaml(ROOT / "Pulumi.yaml")["config"]


@pytest.mark.parametrize("name", doc_tables.TABLES)
def test_every_table_is_the_generated_one(name):
    path, _ = doc_tables.TABLES[name]
    assert table_in(path.read_text(), name) == GENERATORS[name](), (
        f"{path.name}'s {name} table is stale: python -m scripts.doc_tables --write")


def test_config_reference_lists_exactly_the_declared_keys_with_their_defaults():
    rows = {m["key"]: m for m in ROW.finditer(table_in(doc_tables.CONFIG_DOC.read_text(), "config"))}
    assert list(rows) == list(declared())
    for key, spec in declared().items():
        assert rows[key]["default"].strip() == default_cell(spec), key
        assert rows[key]["type"].split()[0] == spec["type"], key


def test_default_cell_shows_what_the_cli_would_use_as_yaml_writes_it():
    assert default_cell({"type": "string"}) == "**required**"
    assert default_cell({"type": "string", "default": ""}) == "(unset)"
    assert default_cell({"type": "integer", "default": 256}) == "`256`"
    assert default_cell({"type": "boolean", "default": True}) == "`true`"
    assert default_cell({"type": "array", "default": []}) == "`[]`"


def test_every_doc_is_linked_from_the_readme():
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert docs
    for doc in docs:
        assert f"(docs/{doc.name})" in README, doc.name


def test_readme_stays_an_overview():
    """The written part stays an overview (the rest belongs in docs/); the generated tables grow
    with the code, one row per key, export or component, and are not counted."""
    prose = re.sub(r"<!-- ([a-z]+)-table:start -->.*?<!-- \1-table:end -->\n", "", README,
                   flags=re.S)
    assert len(prose.splitlines()) <= 230


def test_quick_start_is_three_commands_that_the_makefile_has():
    """The first screen: try it, deploy it, test it; the quick start comes before anything else."""
    assert README.split("\n## ", 1)[1].startswith("Quick start\n")
    quick_start = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["make sandbox", "make deploy STACK=dev", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in ("sandbox", "deploy", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_names_every_stack_file_and_nat_mode():
    for stack in ("dev", "staging", "prod"):
        assert f"Pulumi.{stack}.yaml" in README
    for mode in ("none", "single", "per-az"):
        assert f"`natGateways: {mode}`" in README


# A path a reader opens next: under one of the repository's homes, ending in a file type.
NAMED_PATH = re.compile(
    r"(?<![\w/.{])((?:tests|components|testbed|bench|scripts|tools|policies|docs|examples|pricing"
    r"|\.ci|\.github)/[\w/.-]*\.(?:py|md|ya?ml|json|sh|cjs|txt))\b")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".sh", ".cfg"}


def tracked_text_files() -> list:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()
            and (Path(name).suffix in TEXT_SUFFIXES or Path(name).name == "Makefile")]


def test_every_file_named_anywhere_exists():
    """A path like tests/unit/test_iam.py in the README, docs/, a docstring, a comment or a stack
    file is what a reader opens next; a moved file must take its mentions along."""
    files = tracked_text_files()
    mentions = [(path.relative_to(ROOT), named) for path in files
                for named in NAMED_PATH.findall(path.read_text())]
    assert len(files) > 100 and len(mentions) > 200
    missing = [(str(where), named) for where, named in mentions if not (ROOT / named).exists()]
    assert missing == []


def test_the_path_pattern_finds_paths_in_prose_and_not_templates():
    text = "see tests/unit/test_iam.py, (components/config/reader.py) and f\"components/{name}.py\""
    assert NAMED_PATH.findall(text) == ["tests/unit/test_iam.py", "components/config/reader.py"]
