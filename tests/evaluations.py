"""Each stack file evaluated once per test session: the tests only read the result."""

from __future__ import annotations

from functools import cache

from tests.harness import Evaluation, evaluate, evaluate_stack, load_stack_config, with_credentials
from tools.mock_engine import SEED_STACK_FILE


@cache
def evaluated(stack: str, **overrides: str) -> Evaluation:
    return evaluate_stack(stack, **overrides)


@cache
def evaluated_seed() -> Evaluation:
    """The seed report's architecture (examples/Pulumi.seed.yaml), priced and checked like a stack."""
    return evaluate(with_credentials(load_stack_config(stack_file=SEED_STACK_FILE)), stack="seed")
