"""Rung 2: what each stack declares is accepted by the AWS API (moto server, botocore validation).

Every stack file is evaluated under mocks and replayed into moto; then the deployed state is read
back and compared with the declaration: the worker's network, task and roles, the events queue,
and the operations layer (alarm key and topic, alarms, notification rules, autoscaling). Each
broken declaration below is one a real `pulumi up` would hit, and the replay must refuse it,
naming the resource.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

import boto3
import pytest

from tests.support.evaluations import evaluated_seed
from tests.support.harness import WORK_POOL, Declared, Evaluation, worker_only_stack_names
from testbed.replay.prefect import AUTOMATION, AUTOMATION_NOT_CREATED
from testbed.replay import (
    HANDLERS, POOL_NOT_CREATED, ReplayError, UnknownResourceTypes, real_exports, replay,
)

pytestmark = pytest.mark.slow

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
QUEUE = "aws:sqs/queue:Queue"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
KEY = "aws:kms/key:Key"
ALIAS = "aws:kms/alias:Alias"
KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SCALING_TARGET = "aws:appautoscaling/target:Target"
SCALING_POLICY = "aws:appautoscaling/policy:Policy"
ONCALL = "oncall@example.com"


def task_state_change(cluster_arn: str) -> dict[str, str]:
    return {"Source": "aws.ecs", "DetailType": "ECS Task State Change",
            "Detail": json.dumps({"clusterArn": cluster_arn, "lastStatus": "STOPPED"})}


@pytest.fixture(scope="module")
def dev(evaluated) -> Evaluation:
    return evaluated("dev")


# The seed's architecture (examples/) is priced against the stacks, so it must deploy too. The
# stacks with their own Prefect server declare more tasks and services than this reads back; they
# are replayed by tests/integration/test_server_replay.py.
@pytest.mark.parametrize("stack", [*worker_only_stack_names(), "seed"])
def test_every_declared_resource_is_accepted_by_the_aws_api(stack, moto, evaluated):
    evaluation = evaluated_seed() if stack == "seed" else evaluated(stack)
    replayed = replay(evaluation, moto.url)

    aws_resources = [(r.type, r.name) for r in evaluation.resources if r.type in HANDLERS]
    assert sorted(replayed.created) == sorted(aws_resources)
    # The pool is Prefect's, not AWS's: checked here, created where a Prefect server runs.
    assert replayed.not_created == {(WORK_POOL, "work-pool"): POOL_NOT_CREATED,
                                    (AUTOMATION, "stuck-runs"): AUTOMATION_NOT_CREATED}

    exports = real_exports(evaluation, replayed)
    ecs = replayed.client("ecs")
    service_created = replayed.created[(SERVICE, evaluation.one(SERVICE).name)]
    service = ecs.describe_services(cluster=exports["clusterArn"],
                                    services=[service_created["arn"]])["services"][0]
    network = service["networkConfiguration"]["awsvpcConfiguration"]
    assert network["subnets"] == exports["workerSubnetIds"]
    assert network["securityGroups"] == [exports["workerSecurityGroupId"]]
    assert network["assignPublicIp"] == ("ENABLED" if exports["workerAssignsPublicIp"] else "DISABLED")
    declared_service = evaluation.one(SERVICE).inputs
    # AWS refuses a strategy naming a provider the cluster lacks; moto does not check, so we do.
    (cluster,) = ecs.describe_clusters(clusters=[exports["clusterArn"]])["clusters"]
    assert {s["capacityProvider"] for s in declared_service["capacityProviderStrategies"]} <= set(
        cluster["capacityProviders"])
    assert service["desiredCount"] == declared_service["desiredCount"]

    declared_task = evaluation.one(TASK_DEFINITION).inputs
    task = ecs.describe_task_definition(taskDefinition=exports["taskDefinitionArn"])["taskDefinition"]
    assert task["cpu"] == declared_task["cpu"] and task["memory"] == declared_task["memory"]
    assert task["runtimePlatform"] == declared_task["runtimePlatform"]
    assert task["executionRoleArn"] == exports["executionRoleArn"]
    assert task["taskRoleArn"] == exports["workerTaskRoleArn"]
    (container,) = task["containerDefinitions"]
    assert container["secrets"] == [{"name": "PREFECT_API_KEY",
                                     "valueFrom": exports["credentialSecretArn"]}]

    secrets = replayed.client("secretsmanager")
    assert secrets.describe_secret(SecretId=exports["credentialSecretArn"])["VersionIdsToStages"]

    ec2 = replayed.client("ec2")
    (worker_sg,) = ec2.describe_security_groups(GroupIds=[exports["workerSecurityGroupId"]])[
        "SecurityGroups"]
    assert worker_sg["VpcId"] == exports["vpcId"] and worker_sg["IpPermissions"] == []
    assert {(p["IpProtocol"], p.get("FromPort")) for p in worker_sg["IpPermissionsEgress"]} == {
        ("tcp", int(rule["fromPort"]))
        for rule in evaluation.one("aws:ec2/securityGroup:SecurityGroup", "network-worker-sg")
        .inputs["egress"]}
    (vpc,) = ec2.describe_vpcs(VpcIds=[exports["vpcId"]])["Vpcs"]
    assert ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsHostnames")[
        "EnableDnsHostnames"]["Value"]

    iam = replayed.client("iam")
    execution_role = exports["executionRoleArn"].rsplit("/", 1)[1]
    assert iam.list_role_policies(RoleName=execution_role)["PolicyNames"]
    attached = iam.list_attached_role_policies(RoleName=execution_role)["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AmazonECSTaskExecutionRolePolicy"]


def test_ecs_task_events_of_this_cluster_reach_the_encrypted_queue_and_no_others(moto, evaluated):
    evaluation = evaluated("staging")
    replayed = replay(evaluation, moto.url)
    exports = real_exports(evaluation, replayed)
    sqs = replayed.client("sqs")
    queue = replayed.created[(QUEUE, "ecs-events-queue")]
    dead_letter = replayed.created[(QUEUE, "ecs-events-dead-letter")]
    assert queue["url"] == exports["ecsEventsQueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue["url"], AttributeNames=["All"])["Attributes"]
    assert attributes["SqsManagedSseEnabled"] == "true"
    assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"] == dead_letter["arn"]
    (statement,) = json.loads(attributes["Policy"])["Statement"]
    rule = replayed.created[(RULE, "ecs-events-task-state")]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule["arn"]}}
    events = replayed.client("events")
    (target,) = events.list_targets_by_rule(Rule=rule["name"])["Targets"]
    assert target["Arn"] == queue["arn"]

    other_cluster = exports["clusterArn"].replace(exports["clusterName"], "another-cluster")
    events.put_events(Entries=[task_state_change(other_cluster),
                               task_state_change(exports["clusterArn"])])
    received = sqs.receive_message(QueueUrl=queue["url"], MaxNumberOfMessages=10,
                                   WaitTimeSeconds=1)["Messages"]
    assert [json.loads(m["Body"])["detail"]["clusterArn"] for m in received] == [
        exports["clusterArn"]]


def test_alarm_key_topic_alarms_rules_and_scaling_are_stored_as_declared(moto, evaluated):
    """prod with an alarm email: every operations resource kind, read back from moto."""
    evaluation = evaluated("prod", alarmEmail=ONCALL)
    replayed = replay(evaluation, moto.url)
    exports = real_exports(evaluation, replayed)
    kms, sns = replayed.client("kms"), replayed.client("sns")

    key = replayed.created[(KEY, "stack-key-key")]
    assert kms.get_key_rotation_status(KeyId=key["key_id"])["KeyRotationEnabled"] is True
    stored_policy = json.loads(kms.get_key_policy(KeyId=key["key_id"], PolicyName="default")["Policy"])
    # The key policy names the roles and the secret: moto's ARNs for them.
    assert stored_policy == json.loads(replayed.real(evaluation.one(KEY_POLICY).inputs["policy"]))
    (alias,) = kms.list_aliases(KeyId=key["key_id"])["Aliases"]
    assert alias["AliasName"] == evaluation.one(ALIAS).inputs["name"]

    topic_arn = replayed.created[(TOPIC, "alarms-topic")]["arn"]
    assert topic_arn == exports["alarmTopicArn"]  # the ARN the stack computes is the one AWS makes
    attributes = sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"]
    assert attributes["KmsMasterKeyId"] == key["arn"]
    assert json.loads(attributes["Policy"]) == json.loads(evaluation.one(TOPIC_POLICY).inputs["policy"])
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", ONCALL)

    cloudwatch = replayed.client("cloudwatch")
    # Target tracking adds its own alarms (TargetTracking-…), as it does on AWS.
    stored = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]
              if not a["AlarmName"].startswith("TargetTracking-")}
    declared_alarms = {a.inputs["name"]: a.inputs for a in evaluation.of_type(ALARM)}
    assert set(stored) == set(declared_alarms)
    for name, alarm in stored.items():
        declared = declared_alarms[name]
        assert alarm["AlarmActions"] == alarm["OKActions"] == [topic_arn]
        assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (
            declared["threshold"], declared["evaluationPeriods"], declared["datapointsToAlarm"])
    running = stored["prefect-ecs-worker-prod-running-below-desired"]
    assert [m.get("Expression") for m in running["Metrics"] if m.get("ReturnData")] == [
        "desired - running"]

    events = replayed.client("events")
    alarm_rules = [r for r in evaluation.of_type(RULE) if r.name.startswith("alarms-")]
    assert len(alarm_rules) == 2
    for rule in alarm_rules:
        stored_rule = events.describe_rule(Name=rule.inputs["name"])
        assert json.loads(stored_rule["EventPattern"]) == json.loads(
            replayed.real(rule.inputs["eventPattern"]))
        (target,) = events.list_targets_by_rule(Rule=rule.inputs["name"])["Targets"]
        assert target["Arn"] == topic_arn
        assert target["InputTransformer"]["InputTemplate"].startswith('"prefect-ecs-worker-prod: ')

    scaling = replayed.client("application-autoscaling")
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    declared_target = evaluation.one(SCALING_TARGET).inputs
    assert (target["MinCapacity"], target["MaxCapacity"]) == (
        declared_target["minCapacity"], declared_target["maxCapacity"])
    service_name = replayed.created[(SERVICE, "worker-service")]["name"]
    assert target["ResourceId"] == f"service/{exports['clusterName']}/{service_name}"
    policies = scaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    assert sorted(p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
        "PredefinedMetricType"] for p in policies) == [
        "ECSServiceAverageCPUUtilization", "ECSServiceAverageMemoryUtilization"]
    assert {p["TargetTrackingScalingPolicyConfiguration"]["ScaleInCooldown"] for p in policies} == {
        declared["targetTrackingScalingPolicyConfiguration"]["scaleInCooldown"]
        for declared in (p.inputs for p in evaluation.of_type(SCALING_POLICY))}


# --- deliberately broken declarations ----------------------------------------------------------

def _one(resources: list[Declared], type_: str, name: str | None = None) -> Declared:
    return next(r for r in resources if r.type == type_ and (name is None or r.name == name))


def _json_edit(key: str, edit: Callable[[Any], None]) -> Callable[[Declared], None]:
    def mutate(resource: Declared) -> None:
        document = json.loads(resource.inputs[key])
        edit(document)
        resource.inputs[key] = json.dumps(document)
    return mutate


def _set(key: str, value: Any) -> Callable[[Declared], None]:
    return lambda resource: resource.inputs.__setitem__(key, value)


def _network(**changes: Any) -> Callable[[Declared], None]:
    return lambda resource: resource.inputs["networkConfiguration"].update(changes)


BROKEN = {
    "trust policy not JSON": (
        "aws:iam/role:Role", "iam-execution",
        lambda r: r.inputs.__setitem__("assumeRolePolicy", r.inputs["assumeRolePolicy"][:-2]),
        "MalformedPolicyDocument"),
    "inline policy not JSON": (
        "aws:iam/rolePolicy:RolePolicy", "iam-worker-task",
        lambda r: r.inputs.__setitem__("policy", r.inputs["policy"].replace('"Statement":', "")),
        "MalformedPolicyDocument"),
    "inline policy action without service prefix": (
        "aws:iam/rolePolicy:RolePolicy", "iam-execution-secret",
        _json_edit("policy", lambda doc: doc["Statement"][0].update(Action="GetSecretValue")),
        "must be prefaced by a vendor"),
    "managed policy ARN with the wrong path": (
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "iam-execution-managed",
        _set("policyArn", "arn:aws:iam::aws:policy/AmazonECSTaskExecutionRolePolicy"),
        "is not an AWS managed policy"),
    "empty secret value": (
        "aws:secretsmanager/secretVersion:SecretVersion", None,
        _set("secretString", ""), "Invalid length for parameter SecretString"),
    "log group name too long": (
        "aws:cloudwatch/logGroup:LogGroup", "worker-logs",
        _set("name", "/ecs/" + "x" * 520), "InvalidParameterException"),
    "egress rule with an invalid CIDR": (
        "aws:ec2/securityGroup:SecurityGroup", "network-worker-sg",
        lambda r: r.inputs["egress"][0].update(cidrBlocks=["0.0.0.0/33"]),
        "invalid CIDR"),
    "unknown container definition key": (
        TASK_DEFINITION, None,
        _json_edit("containerDefinitions", lambda defs: defs[0].update(memoryMiB=512)),
        'Unknown parameter in containerDefinitions[0]: "memoryMiB"'),
    "container port as a string": (
        TASK_DEFINITION, None,
        _json_edit("containerDefinitions",
                   lambda defs: defs[0].update(portMappings=[{"containerPort": "8080"}])),
        "Invalid type for parameter containerDefinitions[0].portMappings[0].containerPort"),
    "service in no subnet": (
        SERVICE, None, _network(subnets=[]), "subnets can not be empty"),
    "service in a subnet nothing created": (
        SERVICE, None, _network(subnets=["subnet-00000000000000999"]),
        "which no replayed resource created"),
    "assignPublicIp not a boolean": (
        SERVICE, None, _network(assignPublicIp="ENABLED"), "is not a boolean"),
    "circuit breaker without rollback": (
        SERVICE, None, _set("deploymentCircuitBreaker", {"enable": True}),
        'Missing required parameter in deploymentConfiguration.deploymentCircuitBreaker: "rollback"'),
    "service input the replay does not translate": (
        SERVICE, None, _set("availabilityZoneRebalancing", "ENABLED"),
        "inputs not replayed: ['availabilityZoneRebalancing']"),
    "NAT gateways without private subnets": (
        "awsx:ec2:Vpc", None, _set("natGateways", {"strategy": "Single"}),
        "needs public and private subnets"),
    "redrive to a dead-letter queue nothing created": (
        QUEUE, "ecs-events-queue",
        _json_edit("redrivePolicy", lambda doc: doc.update(
            deadLetterTargetArn=doc["deadLetterTargetArn"] + "-missing")),
        "Could not find DLQ"),
    "event retention beyond the SQS maximum": (
        QUEUE, "ecs-events-queue", _set("messageRetentionSeconds", 30 * 24 * 3600),
        "outside 60..1209600"),
    "queue policy action without service prefix": (
        QUEUE_POLICY, None,
        _json_edit("policy", lambda doc: doc["Statement"][0].update(Action="SendMessage")),
        "MalformedPolicyDocument"),
    "event pattern with a scalar where a list belongs": (
        RULE, None, _json_edit("eventPattern", lambda doc: doc.update(source="aws.ecs")),
        "InvalidEventPatternException"),
    "target on a rule nothing created": (
        TARGET, None, _set("rule", "no-such-rule"), "ResourceNotFoundException"),
    "pool template without job configuration": (
        WORK_POOL, None,
        lambda r: r.inputs["base_job_template"].pop("job_configuration"),
        "base_job_template: expected a template with job_configuration and variables"),
    "key policy that locks the account out": (
        KEY_POLICY, None,
        _json_edit("policy", lambda doc: doc.update(Statement=doc["Statement"][1:])),
        "lockout safety check"),
    "key deletion window beyond 30 days": (
        KEY, None, _set("deletionWindowInDays", 45.0), "outside 7..30"),
    "key alias outside alias/": (
        ALIAS, None, _set("name", "prefect-alarms"), "Invalid identifier"),
    "topic name with a dot": (
        TOPIC, None, _set("name", "prefect.alarms"), "Topic names must be made up of"),
    "topic policy with an unknown effect": (
        TOPIC_POLICY, None,
        _json_edit("policy", lambda doc: doc["Statement"][0].update(Effect="Permit")),
        "MalformedPolicyDocument"),
    "alarm period of 90 seconds": (
        ALARM, "alarms-worker-cpu-high", _set("period", 90.0), "not 10, 20, 30"),
    "alarm over no evaluation period": (
        ALARM, "alarms-worker-cpu-high",
        lambda r: r.inputs.update(evaluationPeriods=0.0, datapointsToAlarm=0.0),
        "valid min value: 1"),
    "notification template naming an undefined path": (
        TARGET, "alarms-flow-run-failed-to-topic",
        lambda r: r.inputs["inputTransformer"].update(inputTemplate='"<task> in <cluster>"'),
        "names ['cluster'], which no input path defines"),
}
# Kinds only prod declares: metric math (Container Insights), autoscaling and, given an alarm
# email, the topic subscription.
BROKEN_IN_PROD = {
    "subscription to a topic nothing created": (
        SUBSCRIPTION, None, _set("topic", "arn:aws:sns:us-east-1:123456789012:no-such-topic"),
        "Topic does not exist"),
    "subscription over an unknown protocol": (
        SUBSCRIPTION, None, _set("protocol", "mail"), "protocol 'mail' is not one of"),
    "alarm with one metric and metric math": (
        ALARM, "alarms-running-below-desired", _set("namespace", "AWS/ECS"),
        "InvalidParameterCombination"),
    "metric math where no query returns data": (
        ALARM, "alarms-running-below-desired",
        lambda r: [q.update(returnData=False) for q in r.inputs["metricQueries"]],
        "exactly one metric query must return data"),
    "metric math reading an undefined id": (
        ALARM, "alarms-running-below-desired",
        lambda r: r.inputs["metricQueries"][2].update(expression="desired - runing"),
        "reads ['runing']"),
    "scaling target for a service nothing created": (
        SCALING_TARGET, None, _set("resourceId", "service/prefect-ecs-worker-prod/missing"),
        "ECS service doesn't exist"),
    "scaling minimum above maximum": (
        SCALING_TARGET, None, _set("minCapacity", 5.0), "minCapacity 5 is above maxCapacity 4"),
    "scaling policy for a target nothing registered": (
        SCALING_POLICY, "scaling-cpu", _set("resourceId", "service/prefect-ecs-worker-prod/other"),
        "no scalable target registered"),
    "scaling cooldown not a whole number of seconds": (
        SCALING_POLICY, "scaling-cpu",
        lambda r: r.inputs["targetTrackingScalingPolicyConfiguration"].update(
            scaleInCooldown=900.5),
        "Invalid type for parameter TargetTrackingScalingPolicyConfiguration.ScaleInCooldown"),
}


@pytest.mark.parametrize("stack,case", [("dev", case) for case in sorted(BROKEN)]
                         + [("prod", case) for case in sorted(BROKEN_IN_PROD)])
def test_replay_refuses_a_broken_declaration_naming_the_resource(stack, case, evaluated, moto):
    type_, name, mutate, expected = {**BROKEN, **BROKEN_IN_PROD}[case]
    evaluation = evaluated(stack, **({"alarmEmail": ONCALL} if stack == "prod" else {}))
    resources = copy.deepcopy(evaluation.resources)
    target = _one(resources, type_, name)
    mutate(target)

    with pytest.raises(ReplayError) as refused:
        replay(Evaluation(resources, evaluation.calls, evaluation.exports), moto.url)

    assert refused.value.resource.name == target.name
    assert f"{type_} {target.name!r}" in str(refused.value)
    assert expected in str(refused.value)


def test_the_unbroken_dev_stack_replays(dev, moto):
    """The baseline of the broken cases: without a mutation the same replay succeeds."""
    assert replay(Evaluation(copy.deepcopy(dev.resources), dev.calls, dev.exports), moto.url).created


def test_a_type_without_a_handler_fails_before_anything_is_created(dev, moto):
    resources = copy.deepcopy(dev.resources) + [
        Declared("aws:lambda/function:Function", "worker-events", {"name": "events"}),
        Declared("aws:s3/bucketV2:BucketV2", "worker-artifacts", {}),
    ]

    with pytest.raises(UnknownResourceTypes) as unknown:
        replay(Evaluation(resources, dev.calls, dev.exports), moto.url)

    assert unknown.value.types == ["aws:lambda/function:Function", "aws:s3/bucketV2:BucketV2"]
    assert "worker-events" in str(unknown.value)
    clusters = boto3.client("ecs", endpoint_url=moto.url, region_name="us-east-1",
                            aws_access_key_id="testing",
                            aws_secret_access_key="testing").list_clusters()
    assert clusters["clusterArns"] == []
