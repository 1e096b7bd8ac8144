"""The alarm topic, the CloudWatch alarms and the EventBridge rules that feed it."""

import json

import pulumi
import pytest

from components.worker.alarms import (AlarmsArgs, WorkerAlarms, flow_run_failure_pattern,
                                      service_problem_pattern)
from components.platform.aws import AwsContext
from tests.support.evaluations import evaluated
from testbed.eventpattern import matches
from tests.support.harness import PROJECT, RecordingMocks, evaluate_stack, policy, stack_names

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
RULE = "aws:cloudwatch/eventRule:EventRule"
CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/prefect-ecs-worker-prod"
OTHER_CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/someone-else"


def alarms_by_name(evaluation):
    return {a.inputs["name"]: a.inputs for a in evaluation.of_type(ALARM)}


def task_stopped(exit_codes, group="family:prefect-flow-run", cluster=CLUSTER_ARN):
    return {
        "source": "aws.ecs",
        "detail-type": "ECS Task State Change",
        "detail": {
            "clusterArn": cluster, "lastStatus": "STOPPED", "group": group,
            "containers": [{"name": f"c{i}", "exitCode": code} for i, code in enumerate(exit_codes)],
        },
    }


@pytest.mark.parametrize("stack", stack_names())
def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_and_eventbridge_may_use(stack):
    evaluation = evaluated(stack)
    key = evaluation.one("aws:kms/key:Key")
    topic = evaluation.one("aws:sns/topic:Topic")
    # The AWS managed alias/aws/sns key cannot grant the CloudWatch and EventBridge principals.
    # The stack's one key encrypts the topic; its policy is a resource of its own.
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    statements = {s["Sid"]: s for s in policy(evaluation.one("aws:kms/keyPolicy:KeyPolicy"))[
        "Statement"]}
    for sid, principal in (("CloudWatchAlarmsPublish", "cloudwatch.amazonaws.com"),
                           ("EventBridgeRulesPublish", "events.amazonaws.com")):
        assert statements[sid]["Principal"] == {"Service": principal}
        assert set(statements[sid]["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}


@pytest.mark.parametrize("stack", stack_names())
def test_topic_policy_lets_only_this_stacks_rules_and_alarms_publish(stack):
    evaluation = evaluated(stack)
    statements = policy(evaluation.one("aws:sns/topicPolicy:TopicPolicy"))["Statement"]
    # The rules that target the topic; the events queue's rule targets SQS, not this topic.
    rule_arns = sorted(f"arn:aws:events:us-east-1:123456789012:rule/{r.inputs['name']}"
                       for r in evaluation.of_type(RULE) if r.name.startswith("alarms-"))
    by_principal = {s["Principal"]["Service"]: s for s in statements}
    assert set(by_principal) == {"events.amazonaws.com", "cloudwatch.amazonaws.com"}
    events = by_principal["events.amazonaws.com"]
    assert events["Action"] == "sns:Publish"
    assert sorted(events["Condition"]["ArnEquals"]["aws:SourceArn"]) == rule_arns
    cloudwatch = by_principal["cloudwatch.amazonaws.com"]
    assert cloudwatch["Condition"]["ArnLike"]["aws:SourceArn"] == (
        f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{PROJECT}-{stack}-*")
    assert all(name.startswith(f"{PROJECT}-{stack}-") for name in alarms_by_name(evaluation))


def test_email_subscription_only_when_an_address_is_configured():
    assert evaluated("dev").of_type("aws:sns/topicSubscription:TopicSubscription") == []
    evaluation = evaluate_stack("dev", alarmEmail="oncall@example.com")
    subscription = evaluation.one("aws:sns/topicSubscription:TopicSubscription").inputs
    assert (subscription["protocol"], subscription["endpoint"]) == ("email", "oncall@example.com")


@pytest.mark.parametrize("stack", stack_names())
def test_worker_cpu_and_memory_alarms_watch_the_service_and_notify_the_topic(stack):
    evaluation = evaluated(stack)
    alarms = alarms_by_name(evaluation)
    topic_arn = evaluation.exports["alarmTopicArn"]
    for role, metric in (("cpu", "CPUUtilization"), ("memory", "MemoryUtilization")):
        alarm = alarms[f"{PROJECT}-{stack}-worker-{role}-high"]
        assert (alarm["namespace"], alarm["metricName"]) == ("AWS/ECS", metric)
        assert alarm["dimensions"] == {"ClusterName": evaluation.exports["clusterName"],
                                       "ServiceName": evaluation.exports["serviceName"]}
        assert alarm["threshold"] == 85
        assert alarm["comparisonOperator"] == "GreaterThanThreshold"
        assert alarm["evaluationPeriods"] == alarm["datapointsToAlarm"] == 5
        assert alarm["alarmActions"] == [topic_arn] == alarm["okActions"]


def test_alarm_thresholds_come_from_config():
    alarms = alarms_by_name(evaluate_stack("staging", alarmCpuHighPercent="70",
                                           alarmMemoryHighPercent="90", alarmEvaluationMinutes="10"))
    cpu = alarms[f"{PROJECT}-staging-worker-cpu-high"]
    memory = alarms[f"{PROJECT}-staging-worker-memory-high"]
    assert (cpu["threshold"], memory["threshold"]) == (70, 90)
    assert cpu["evaluationPeriods"] == memory["evaluationPeriods"] == 10


def test_running_below_desired_compares_container_insights_counts():
    evaluation = evaluated("prod")
    alarm = alarms_by_name(evaluation)[f"{PROJECT}-prod-running-below-desired"]
    queries = {q["id"]: q for q in alarm["metricQueries"]}
    for query_id, metric in (("desired", "DesiredTaskCount"), ("running", "RunningTaskCount")):
        assert queries[query_id]["metric"]["namespace"] == "ECS/ContainerInsights"
        assert queries[query_id]["metric"]["metricName"] == metric
        assert queries[query_id]["metric"]["dimensions"]["ServiceName"] == (
            evaluation.exports["serviceName"])
    returned = [q for q in queries.values() if q.get("returnData")]
    assert [q["expression"] for q in returned] == ["desired - running"]
    assert (alarm["threshold"], alarm["comparisonOperator"]) == (0, "GreaterThanThreshold")
    cluster = evaluation.one("aws:ecs/cluster:Cluster").inputs
    assert cluster["settings"] == [{"name": "containerInsights", "value": "enabled"}]


def test_dev_saves_container_insights_and_keeps_the_service_event_rule():
    evaluation = evaluated("dev")
    assert evaluation.one("aws:ecs/cluster:Cluster").inputs["settings"] == [
        {"name": "containerInsights", "value": "disabled"}]
    assert f"{PROJECT}-dev-running-below-desired" not in alarms_by_name(evaluation)
    rule = evaluation.one(RULE, "alarms-worker-service-problem")
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern["detail"]["eventType"] == ["WARN", "ERROR"]


def test_flow_run_rule_fires_on_a_non_zero_exit_in_this_cluster_only():
    evaluation = evaluated("prod")
    rule = evaluation.one(RULE, "alarms-flow-run-failed")
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern == flow_run_failure_pattern(evaluation.exports["clusterArn"])
    assert matches(pattern, task_stopped([1]))
    assert matches(pattern, task_stopped([0, 137]))
    assert not matches(pattern, task_stopped([0]))
    assert not matches(pattern, task_stopped([1], cluster=OTHER_CLUSTER_ARN))
    # The worker service's own tasks are covered by the service alarms, not this rule.
    assert not matches(pattern, task_stopped([1], group="service:worker"))
    running = task_stopped([1])
    running["detail"]["lastStatus"] = "RUNNING"
    assert not matches(pattern, running)


def test_flow_run_rule_sends_a_readable_message_to_the_topic():
    evaluation = evaluated("prod")
    target = next(t for t in evaluation.of_type("aws:cloudwatch/eventTarget:EventTarget")
                  if t.name.endswith("flow-run-failed-to-topic"))
    assert target.inputs["arn"] == evaluation.exports["alarmTopicArn"]
    transformer = target.inputs["inputTransformer"]
    assert transformer["inputPaths"]["exit"] == "$.detail.containers[0].exitCode"
    placeholders = {f"<{name}>" for name in transformer["inputPaths"]}
    assert all(p in transformer["inputTemplate"] for p in placeholders)


def test_service_problem_rule_matches_this_services_warnings_only():
    service_arn = "arn:aws:ecs:us-east-1:123456789012:service/c/worker"
    pattern = service_problem_pattern(service_arn)
    impeded = {"source": "aws.ecs", "detail-type": "ECS Service Action",
               "resources": [service_arn],
               "detail": {"eventType": "WARN", "eventName": "SERVICE_TASK_START_IMPEDED"}}
    assert matches(pattern, impeded)
    assert not matches(pattern, {**impeded, "resources": ["arn:aws:ecs:::service/c/other"]})
    assert not matches(pattern, {**impeded, "detail": {"eventType": "INFO",
                                                       "eventName": "SERVICE_STEADY_STATE"}})


def _alarms_with_dead_letter_queue(queue_name):
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="test", preview=False)

    @pulumi.runtime.test
    def run():
        alarms = WorkerAlarms("alarms", AlarmsArgs(
            prefix=f"{PROJECT}-test",
            context=AwsContext.current(pulumi.InvokeOptions()),
            cluster_name="c", cluster_arn=CLUSTER_ARN, service_name="s",
            service_arn="arn:aws:ecs:us-east-1:123456789012:service/c/s",
            container_insights=False, email=None, cpu_high_percent=80, memory_high_percent=80,
            evaluation_minutes=5, tags={}, dead_letter_queue_name=queue_name,
            key_arn="arn:aws:kms:us-east-1:123456789012:key/test",
        ))
        return alarms.topic.arn

    run()
    return {r.inputs["name"]: r.inputs for r in mocks.resources if r.type == ALARM}


def test_dead_letter_queue_alarm_fires_on_the_first_message():
    alarms = _alarms_with_dead_letter_queue("prefect-ecs-worker-test-events-dlq")
    alarm = alarms[f"{PROJECT}-test-events-dlq-not-empty"]
    assert (alarm["namespace"], alarm["metricName"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["dimensions"] == {"QueueName": "prefect-ecs-worker-test-events-dlq"}
    assert (alarm["statistic"], alarm["threshold"], alarm["evaluationPeriods"]) == ("Maximum", 0, 1)
    assert alarm["comparisonOperator"] == "GreaterThanThreshold"
