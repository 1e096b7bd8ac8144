"""Each stack file evaluated once per test session: the tests only read the result."""

from __future__ import annotations

from functools import cache

from tests.support.harness import Evaluation, evaluate_stack


@cache
def evaluated(stack: str, **overrides: str) -> Evaluation:
    return evaluate_stack(stack, **overrides)


@cache
def evaluated_seed() -> Evaluation:
    """The seed report's architecture (examples/Pulumi.seed.yaml), priced and checked like a stack."""
    return evaluated("seed")
