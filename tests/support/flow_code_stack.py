"""The stack the slow flow-code tests share: staging with a publisher role, a pool of its own and
non-default lifecycle values, evaluated once per session (tests/support/evaluations.py caches it)."""

from __future__ import annotations

import json
from typing import Callable

from tests.support.harness import Evaluation
from testbed.replay import Replay

PUBLISHER = "arn:aws:iam::123456789012:role/ci/flow-publisher"
POOL = "ecs-flow-code"
OVERRIDES = {"workPoolName": POOL, "flowPublisherRoleArn": PUBLISHER,
             "flowImageKeepTaggedCount": "12", "flowImageUntaggedExpiryDays": "3",
             "flowResultRetentionDays": "45"}


def published(evaluated: Callable[..., Evaluation]) -> Evaluation:
    return evaluated("staging", **OVERRIDES)


def create_publisher(moto_url: str) -> None:
    """The publisher is the team's CI role, not the stack's: it exists before `pulumi up`."""
    Replay(moto_url).client("iam").create_role(
        RoleName="flow-publisher", Path="/ci/",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
