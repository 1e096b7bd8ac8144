"""Rung 2 for the hardening resources: a declaration AWS would refuse where moto would not is
refused, naming the resource. (What the dev stack reads back from moto is checked in
tests/integration/test_hardening_on_prefect.py, on the replay that run already makes.)"""

from __future__ import annotations

import copy
import json

import pytest

from tests.support.harness import Evaluation
from testbed.replay import ReplayError, replay

pytestmark = pytest.mark.slow

KEY = "aws:kms/key:Key"
KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"


def _drop_statement(prefix):
    def mutate(resource):
        document = json.loads(resource.inputs["policy"])
        document["Statement"] = [s for s in document["Statement"]
                                 if not s["Sid"].startswith(prefix)]
        resource.inputs["policy"] = json.dumps(document)
    return mutate


def _missing_principal(resource):
    document = json.loads(resource.inputs["policy"])
    next(s for s in document["Statement"] if s["Sid"].startswith("ExecutionRoles"))[
        "Principal"]["AWS"].append("arn:aws:iam::123456789012:role/deleted-role")
    resource.inputs["policy"] = json.dumps(document)


BROKEN = {
    "key policy without the account's administration": (
        KEY_POLICY, None, _drop_statement("AccountAdministers"), "lockout safety check"),
    "key policy naming a role that does not exist": (
        KEY_POLICY, None, _missing_principal, "invalid principals"),
    "log group whose key does not admit CloudWatch Logs": (
        LOG_GROUP, "vpc-hardening-flow-logs", None, "does not let CloudWatch Logs use the key"),
    "flow log aggregating every 2 minutes": (
        FLOW_LOG, None, lambda r: r.inputs.__setitem__("maxAggregationInterval", 120.0),
        "AWS accepts 60 or 600"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_replay_refuses_what_aws_would(case, moto, evaluated):
    type_, name, mutate, expected = BROKEN[case]
    evaluation = evaluated("dev")
    resources = copy.deepcopy(evaluation.resources)
    target = next(r for r in resources if r.type == type_ and (name is None or r.name == name))
    if mutate is None:  # the log group's refusal comes from the key policy, declared earlier
        _drop_statement("CloudWatchLogs")(next(r for r in resources if r.type == KEY_POLICY))
    else:
        mutate(target)
    # Only what the target needs is replayed: stop once it is reached.
    resources = resources[:resources.index(target) + 1]
    with pytest.raises(ReplayError) as refused:
        replay(Evaluation(resources, evaluation.calls, evaluation.exports), moto.url)
    assert refused.value.resource.name == target.name
    assert expected in str(refused.value)
