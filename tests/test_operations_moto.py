"""Rung 2: the alarm topic, its key, the alarms, the EventBridge rules and the scaling policies, as
declared for prod, replayed through boto3 into a moto server. What the AWS APIs (as moto models
them) refuse, a real `pulumi up` would refuse too; what they store is read back and compared."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.evaluations import evaluated

pytestmark = pytest.mark.slow


@pytest.fixture()
def aws(moto_server):
    moto_server.reset()
    env = moto_server.client_env()

    def client(service):
        return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return client


def declared(type_):
    return [r.inputs for r in evaluated("prod").of_type(type_)]


def _dimensions(dimensions):
    return [{"Name": k, "Value": v} for k, v in dimensions.items()]


def _alarm_request(alarm):
    request = {
        "AlarmName": alarm["name"], "AlarmDescription": alarm["alarmDescription"],
        "EvaluationPeriods": int(alarm["evaluationPeriods"]),
        "DatapointsToAlarm": int(alarm["datapointsToAlarm"]),
        "Threshold": alarm["threshold"], "ComparisonOperator": alarm["comparisonOperator"],
        "TreatMissingData": alarm["treatMissingData"], "AlarmActions": alarm["alarmActions"],
        "OKActions": alarm["okActions"],
    }
    if "metricQueries" in alarm:
        request["Metrics"] = [
            {"Id": q["id"], "ReturnData": q.get("returnData", False),
             **({"Expression": q["expression"], "Label": q["label"]} if "expression" in q else {
                 "MetricStat": {
                     "Metric": {"Namespace": q["metric"]["namespace"],
                                "MetricName": q["metric"]["metricName"],
                                "Dimensions": _dimensions(q["metric"]["dimensions"])},
                     "Period": int(q["metric"]["period"]), "Stat": q["metric"]["stat"]}})}
            for q in alarm["metricQueries"]]
    else:
        request.update(Namespace=alarm["namespace"], MetricName=alarm["metricName"],
                       Dimensions=_dimensions(alarm["dimensions"]), Statistic=alarm["statistic"],
                       Period=int(alarm["period"]))
    return request


def test_topic_key_and_policy_are_accepted_and_bind_the_topic_to_the_key(aws):
    kms, sns = aws("kms"), aws("sns")
    (key,) = declared("aws:kms/key:Key")
    key_id = kms.create_key(Policy=key["policy"], Description=key["description"])["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=key_id)
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    stored = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    assert {s["Sid"] for s in stored["Statement"]} == {
        "AccountAdministersKeyThroughIam", "CloudWatchAlarmsPublish", "EventBridgeRulesPublish"}

    (topic,) = declared("aws:sns/topic:Topic")
    key_arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    topic_arn = sns.create_topic(Name=topic["name"],
                                 Attributes={"KmsMasterKeyId": key_arn})["TopicArn"]
    (topic_policy,) = declared("aws:sns/topicPolicy:TopicPolicy")
    assert topic_policy["arn"] == topic_arn  # the name the stack gives is the ARN AWS makes
    sns.set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy",
                             AttributeValue=topic_policy["policy"])
    attributes = sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"]
    assert attributes["KmsMasterKeyId"] == key_arn
    assert json.loads(attributes["Policy"]) == json.loads(topic_policy["policy"])


def test_alarms_are_accepted_as_declared(aws):
    cloudwatch = aws("cloudwatch")
    alarms = declared("aws:cloudwatch/metricAlarm:MetricAlarm")
    for alarm in alarms:
        cloudwatch.put_metric_alarm(**_alarm_request(alarm))
    stored = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert set(stored) == {a["name"] for a in alarms}
    running = stored["prefect-ecs-worker-prod-running-below-desired"]
    assert [m.get("Expression") for m in running["Metrics"] if m.get("ReturnData")] == [
        "desired - running"]
    cpu = stored["prefect-ecs-worker-prod-worker-cpu-high"]
    assert (cpu["Threshold"], cpu["EvaluationPeriods"], cpu["AlarmActions"]) == (
        85.0, 5, [evaluated("prod").exports["alarmTopicArn"]])


def test_event_rules_and_their_topic_targets_are_accepted(aws):
    events = aws("events")
    rules = declared("aws:cloudwatch/eventRule:EventRule")
    targets = {t["rule"]: t for t in declared("aws:cloudwatch/eventTarget:EventTarget")}
    for rule in rules:
        events.put_rule(Name=rule["name"], EventPattern=rule["eventPattern"],
                        Description=rule["description"])
        target = targets[rule["name"]]
        result = events.put_targets(Rule=rule["name"], Targets=[{
            "Id": "topic", "Arn": target["arn"],
            "InputTransformer": {"InputPathsMap": target["inputTransformer"]["inputPaths"],
                                 "InputTemplate": target["inputTransformer"]["inputTemplate"]}}])
        assert result["FailedEntryCount"] == 0
        stored = events.describe_rule(Name=rule["name"])
        assert json.loads(stored["EventPattern"]) == json.loads(rule["eventPattern"])
    assert len(rules) == 2


def test_scaling_target_and_policies_are_accepted_for_the_service(aws):
    ecs, scaling = aws("ecs"), aws("application-autoscaling")
    (target,) = declared("aws:appautoscaling/target:Target")
    _, cluster, service = target["resourceId"].split("/")
    ecs.create_cluster(clusterName=cluster)
    definition = ecs.register_task_definition(
        family="worker", containerDefinitions=[{"name": "w", "image": "x:1", "memory": 512}])
    ecs.create_service(cluster=cluster, serviceName=service, desiredCount=2,
                       taskDefinition=definition["taskDefinition"]["taskDefinitionArn"])
    scaling.register_scalable_target(
        ServiceNamespace=target["serviceNamespace"], ResourceId=target["resourceId"],
        ScalableDimension=target["scalableDimension"], MinCapacity=int(target["minCapacity"]),
        MaxCapacity=int(target["maxCapacity"]))
    for policy in declared("aws:appautoscaling/policy:Policy"):
        config = policy["targetTrackingScalingPolicyConfiguration"]
        scaling.put_scaling_policy(
            PolicyName=config["predefinedMetricSpecification"]["predefinedMetricType"],
            ServiceNamespace=policy["serviceNamespace"], ResourceId=policy["resourceId"],
            ScalableDimension=policy["scalableDimension"], PolicyType=policy["policyType"],
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": config["targetValue"],
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": config["predefinedMetricSpecification"][
                        "predefinedMetricType"]},
                "ScaleInCooldown": int(config["scaleInCooldown"]),
                "ScaleOutCooldown": int(config["scaleOutCooldown"]),
                "DisableScaleIn": config["disableScaleIn"],
            })
    (stored_target,) = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert (stored_target["MinCapacity"], stored_target["MaxCapacity"]) == (2, 4)
    stored = scaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    assert {p["TargetTrackingScalingPolicyConfiguration"]["ScaleInCooldown"] for p in stored} == {900}
    assert len(stored) == 2
