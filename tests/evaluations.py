"""Each stack file evaluated once per test session: the tests only read the result."""

from __future__ import annotations

from functools import cache

from tests.harness import (ROOT, Evaluation, evaluate, evaluate_stack, load_stack_config,
                           with_credentials)


@cache
def evaluated(stack: str) -> Evaluation:
    return evaluate_stack(stack)


SEED_STACK_FILE = ROOT / "examples" / "Pulumi.seed.yaml"


@cache
def evaluated_seed() -> Evaluation:
    """The seed report's architecture (examples/Pulumi.seed.yaml), priced and checked like a stack."""
    return evaluate(with_credentials(load_stack_config(stack_file=SEED_STACK_FILE)), stack="seed")
