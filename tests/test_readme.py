"""The README is the manual: its configuration table lists exactly Pulumi.yaml's keys, with the same
types and defaults, and the commands it promises exist."""

from __future__ import annotations

import re

import yaml

from scripts.config_table import config_table, default_cell, readme_table
from tests.harness import ROOT

README = (ROOT / "README.md").read_text()
ROW = re.compile(r"^\| `(?P<key>[A-Za-z]+)` \| (?P<type>[a-z ]+) \| (?P<default>[^|]+) \|", re.M)


def declared() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]


def test_readme_table_lists_exactly_the_declared_keys_with_their_defaults():
    rows = {m["key"]: m for m in ROW.finditer(readme_table(README))}
    assert list(rows) == list(declared())
    for key, spec in declared().items():
        assert rows[key]["default"].strip() == default_cell(spec), key
        assert rows[key]["type"].split()[0] == spec["type"], key


def test_readme_table_is_the_generated_one():
    assert readme_table(README) == config_table(), "run: python -m scripts.config_table --write"


def test_default_cell_shows_what_the_cli_would_use():
    assert default_cell({"type": "string"}) == "**required**"
    assert default_cell({"type": "string", "default": ""}) == "(unset)"
    assert default_cell({"type": "integer", "default": 256}) == "`256`"
    assert default_cell({"type": "boolean", "default": True}) == "`true`"
    assert default_cell({"type": "array", "default": []}) == "`[]`"


def test_quick_start_is_two_commands_that_the_makefile_has():
    quick_start = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["make deploy STACK=dev", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^deploy:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_names_every_stack_file_and_nat_mode():
    for stack in ("dev", "staging", "prod"):
        assert f"Pulumi.{stack}.yaml" in README
    for mode in ("none", "single", "per-az"):
        assert f"`natGateways: {mode}`" in README
