"""Each stack file evaluated once per test session: the tests only read the result."""

from __future__ import annotations

from functools import cache

from tests.harness import Evaluation, evaluate_stack


@cache
def evaluated(stack: str) -> Evaluation:
    return evaluate_stack(stack)
