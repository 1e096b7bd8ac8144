"""ECS task events reach the worker's observer through an encrypted queue only this rule feeds.
(The worker role's SQS statement, on that queue only, is among the exact statements in
tests/unit/test_iam.py.)"""

import json

import pytest

from tests.support.harness import ACCOUNT, PROJECT, REGION, policy, stack_names, worker_container

QUEUE = "aws:sqs/queue:Queue"
RULE = "aws:cloudwatch/eventRule:EventRule"
TASK_STATE_RULE = "ecs-events-task-state"

def queues(evaluation):
    return {q.name: q for q in evaluation.of_type(QUEUE)}


@pytest.mark.parametrize("stack", stack_names())
def test_events_queue_is_encrypted_with_a_dead_letter_queue(evaluated, stack):
    evaluation = evaluated(stack)
    found = queues(evaluation)
    queue, dead_letter = found["ecs-events-queue"], found["ecs-events-dead-letter"]
    assert queue.inputs["name"] == f"{PROJECT}-{stack}-ecs-events"
    assert queue.inputs["sqsManagedSseEnabled"] is True
    assert dead_letter.inputs["sqsManagedSseEnabled"] is True
    redrive = json.loads(queue.inputs["redrivePolicy"])
    assert redrive["deadLetterTargetArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{dead_letter.inputs['name']}"
    assert redrive["maxReceiveCount"] >= 1


@pytest.mark.parametrize("stack", stack_names())
def test_rule_matches_task_state_changes_of_this_cluster_only(evaluated, stack):
    evaluation = evaluated(stack)
    pattern = json.loads(evaluation.one(RULE, TASK_STATE_RULE).inputs["eventPattern"])
    assert pattern == {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {"clusterArn": [evaluation.exports["clusterArn"]]},
    }
    target = evaluation.one("aws:cloudwatch/eventTarget:EventTarget", "ecs-events-to-queue")
    assert target.inputs["arn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{PROJECT}-{stack}-ecs-events"


def test_only_this_rule_may_send_to_the_queue(evaluated):
    evaluation = evaluated("staging")
    # Under mocks an auto-named resource is named after its logical name.
    rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{evaluation.one(RULE, TASK_STATE_RULE).name}-"
    document = policy(evaluation.one("aws:sqs/queuePolicy:QueuePolicy"))
    [statement] = document["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert list(statement["Condition"]) == ["ArnEquals"]
    assert list(statement["Condition"]["ArnEquals"]) == ["aws:SourceArn"]
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"].startswith(rule_arn)
    assert statement["Resource"].endswith(":prefect-ecs-worker-staging-ecs-events")


@pytest.mark.parametrize("stack", stack_names())
def test_worker_observer_reads_the_stack_queue(evaluated, stack):
    evaluation = evaluated(stack)
    env = {e["name"]: e["value"] for e in worker_container(evaluation)["environment"]}
    assert env["PREFECT_INTEGRATIONS_AWS_ECS_OBSERVER_SQS_QUEUE_NAME"] == f"{PROJECT}-{stack}-ecs-events"
    assert env["PREFECT_INTEGRATIONS_AWS_ECS_OBSERVER_SQS_QUEUE_REGION"] == REGION
