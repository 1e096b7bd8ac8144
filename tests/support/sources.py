"""The project's Python sources as the tests that read code see them: each file read, parsed and
walked once per test process, however many tests look at it. Callers must not change the trees."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path


@cache
def source(path: Path) -> str:
    return path.read_text()


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(source(path))


@cache
def nodes(path: Path) -> tuple[ast.AST, ...]:
    """Every node of the file, in `ast.walk` order."""
    return tuple(ast.walk(parsed(path)))
