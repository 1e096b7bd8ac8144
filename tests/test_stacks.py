"""Every stack file in the repo is evaluated as the CLI would load it."""

import pytest

from tests.harness import evaluate_stack, stack_names


def test_every_stack_file_is_found():
    assert {"dev", "staging", "prod"} <= set(stack_names())


@pytest.mark.parametrize("stack", stack_names())
def test_stack_declares_the_worker_service(stack):
    evaluation = evaluate_stack(stack)
    service = evaluation.one("aws:ecs/service:Service")
    assert service.inputs["desiredCount"] >= 1
    assert evaluation.exports["workPoolName"] == f"ecs-{stack}"
