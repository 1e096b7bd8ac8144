"""One home per fact: a config default lives in Pulumi.yaml alone, and an enumerated key's accepted
values are its `Literal` type's."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest

from components.config import operations, reader, settings
from tests.support.harness import ROOT, project_defaults
from tests.support.sources import nodes

PROGRAM = [ROOT / "__main__.py", *sorted((ROOT / "components").rglob("*.py"))]
READER_METHODS = {name for name in vars(reader.Reader) if not name.startswith("__")}


def reader_calls():
    for path in PROGRAM:
        for node in nodes(path):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in READER_METHODS
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "reader"):
                yield path, node


def _module(path):
    return importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))


# Every enumerated read in the program (`reader.choice("key", SomeLiteral)`), key -> the object its
# second argument names in its own module.
ENUMERATED = {
    call.args[0].value: getattr(_module(path), call.args[1].id, None)
    for path, call in reader_calls()
    if call.func.attr == "choice" and isinstance(call.args[1], ast.Name)
}
# Each module's frozen settings dataclasses: none may carry a default of its own.
SETTINGS_CLASSES = [
    cls for path in PROGRAM if path.parent == ROOT / "components" / "config"
    for cls in vars(_module(path)).values()
    if dataclasses.is_dataclass(cls) and cls.__module__ == _module(path).__name__
    and cls.__name__.endswith("Settings")
]


def test_config_reads_pass_no_default():
    # A second argument that is a constant is a default written again in Python.
    found = [f"{path.name}:{call.lineno}" for path, call in reader_calls()
             if any(isinstance(arg, ast.Constant) for arg in call.args[1:])
             or any(k.arg == "default" for k in call.keywords)]
    assert not found, f"defaults belong in Pulumi.yaml only: {found}"


def test_settings_fields_have_no_defaults():
    assert settings.Settings in SETTINGS_CLASSES and operations.OperationsSettings in SETTINGS_CLASSES
    for cls in SETTINGS_CLASSES:
        defaulted = [f.name for f in dataclasses.fields(cls)
                     if f.default is not dataclasses.MISSING
                     or f.default_factory is not dataclasses.MISSING]
        assert not defaulted, f"{cls.__name__} repeats Pulumi.yaml's defaults: {defaulted}"


@pytest.mark.parametrize("key", [k for k, v in project_defaults().items()
                                 if isinstance(v, str) and len(v) >= 8])
def test_no_string_default_is_copied_into_the_program(key):
    default = project_defaults()[key]
    copies = [path.name for path in PROGRAM if default in _constants_outside_literal_types(path)]
    assert not copies, f"{key}'s default {default!r} is written again in {copies}"


@cache
def _constants_outside_literal_types(path: Path) -> frozenset[Any]:
    """The file's constants but those inside a `Literal[...]`: an enumerated key's type lists its
    default among the accepted values, which is the one place it belongs besides Pulumi.yaml."""
    literal_parts = {id(node) for sub in nodes(path)
                     if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name)
                     and sub.value.id == "Literal"
                     for node in ast.walk(sub.slice)}
    return frozenset(node.value for node in nodes(path)
                     if isinstance(node, ast.Constant) and id(node) not in literal_parts
                     and isinstance(node.value, str))


@pytest.mark.parametrize("key", ENUMERATED)
def test_enumerated_default_is_one_of_the_literal_values(key):
    assert project_defaults()[key] in get_args(ENUMERATED[key])


def test_every_enumerated_read_names_a_literal_type():
    choices = [call for _, call in reader_calls() if call.func.attr == "choice"]
    assert {"natGateways", "cpuArchitecture", "capacityProvider", "containerInsights"} <= set(
        ENUMERATED)
    assert len(choices) == len(ENUMERATED), "each choice names its key and a Literal type by name"
    for key, accepted in ENUMERATED.items():
        assert get_origin(accepted) is Literal, f"{key} reads its values from {accepted!r}"


def test_the_project_name_is_written_once_and_every_type_token_uses_it():
    """Component type tokens and descriptions build on `NAMESPACE`; the string itself lives in
    components/config/reader.py alone."""
    spelled = [path.relative_to(ROOT).as_posix() for path in PROGRAM
               if any(isinstance(node, ast.Constant) and isinstance(node.value, str)
                      and reader.NAMESPACE in node.value
                      for node in nodes(path))]
    assert spelled == ["components/config/reader.py"]
    tokens = [node.args[0] for path in PROGRAM for node in nodes(path)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "__init__" and node.args
              and isinstance(node.args[0], ast.JoinedStr) and ":index:" in ast.unparse(node.args[0])]
    assert len(tokens) >= 16
    assert all(isinstance(t.values[0], ast.FormattedValue) and ast.unparse(t.values[0].value)
               == "NAMESPACE" for t in tokens)
