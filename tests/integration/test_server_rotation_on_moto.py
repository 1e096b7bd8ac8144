"""A rotation of the database password redeploys the server, as far as moto allows.

moto emits no CloudTrail service events and runs no Step Functions tasks, so the chain is walked
link by link on the replayed stack: Secrets Manager's `RotationSucceeded` event for the RDS
managed secret matches the stack's rule (EventBridge's own matcher, TestEventPattern) and for no
other secret; the rule targets the state machine with a role; and each state of the deployed
definition, run as the AWS SDK integration would call it, is an ECS UpdateService that moto
accepts, together covering every server service and nothing else.
"""

from __future__ import annotations

import json

import pytest

from testbed.eventpattern import matches
from testbed.prefect_worker import deploy
from testbed.server_containers import rds_master, server_evaluation

pytestmark = pytest.mark.slow


def rotation_event(secret_arn: str) -> str:
    """What Secrets Manager sends through EventBridge when a rotation succeeds."""
    return json.dumps({
        "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "AWS Service Event via CloudTrail", "source": "aws.secretsmanager",
        "account": "123456789012", "time": "2026-11-28T18:00:00Z", "region": "us-east-1",
        "resources": [],
        "detail": {"eventVersion": "1.08", "eventSource": "secretsmanager.amazonaws.com",
                   "eventName": "RotationSucceeded", "eventType": "AwsServiceEvent",
                   "additionalEventData": {"SecretId": secret_arn}},
    })


@pytest.mark.parametrize("mode", ["single", "ha"])
def test_a_rotation_of_the_managed_secret_redeploys_every_server_service(mode, moto_server):
    stack = deploy(server_evaluation(mode), moto_server, prefect_api_url=None)
    replayed = stack.replayed
    master = rds_master(replayed)
    events = replayed.client("events")
    rules = [r for r in events.list_rules()["Rules"]
             if "RotationSucceeded" in r.get("EventPattern", "")]
    (rule,) = rules
    pattern = json.loads(rule["EventPattern"])  # as deployed, with moto's secret ARN
    assert matches(pattern, json.loads(rotation_event(master.secret_arn)))
    assert not matches(pattern, json.loads(rotation_event(stack.exports["credentialSecretArn"])))

    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    sfn = replayed.client("stepfunctions")
    machine = sfn.describe_state_machine(stateMachineArn=target["Arn"])
    assert target["RoleArn"], "EventBridge needs a role to start an execution"
    definition = json.loads(machine["definition"])

    ecs = replayed.client("ecs")
    cluster = stack.exports["clusterArn"]
    redeployed = []
    state = definition["StartAt"]
    while state is not None:
        step = definition["States"][state]
        assert step["Resource"] == "arn:aws:states:::aws-sdk:ecs:updateService"
        request = {key[0].lower() + key[1:]: value for key, value in step["Parameters"].items()}
        assert request["forceNewDeployment"] is True
        service = ecs.update_service(**request)["service"]
        redeployed.append(service["serviceName"])
        state = step.get("Next")
    listed = ecs.describe_services(cluster=cluster, services=ecs.list_services(
        cluster=cluster)["serviceArns"])["services"]
    servers = sorted(s["serviceName"] for s in listed if "-server" in s["serviceName"])
    assert sorted(redeployed) == servers and servers
    assert stack.exports["workPoolName"] not in " ".join(redeployed)
