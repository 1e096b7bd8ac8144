"""Running the server: IAM scoped to its secrets (and ssmmessages for exec), the generated auth
string kept out of plain state and exports, a password rotation that redeploys the server, the
alarms on the stack's topic, and what it all costs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from components.server.database import max_connections
from components.server.alarms import CPU_HIGH_PERCENT, REDIS_MEMORY_HIGH_PERCENT
from components.server.growth import ALARM_HEADROOM_DAYS, STATED_RUNS_PER_DAY, daily_bytes
from components.server.rotation_redeploy import UPDATE_SERVICE, rotation_pattern
from testbed.eventpattern import matches
from tests.support.harness import is_secret_input, policy, server_stack_names, stack_settings
from tools.cost import PriceTable, estimate, items_by_name
from tools.mock_engine import GENERATED_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"


def declared(evaluation):
    return [(r.type, r.inputs) for r in evaluation.resources]


@pytest.mark.parametrize("stack", server_stack_names())
def test_server_execution_role_reads_exactly_its_secrets(evaluated, stack):
    evaluation = evaluated(stack)
    statement, decrypt = policy(evaluation.one(ROLE_POLICY, "server-execution-secrets"))[
        "Statement"]
    expected = [evaluation.exports["serverDbSecretArn"], evaluation.exports["serverDbAppSecretArn"],
                evaluation.exports["credentialSecretArn"]]
    redis = evaluation.of_type("aws:secretsmanager/secret:Secret")
    expected += [r.outputs["arn"] for r in redis if r.name == "server-redis-token"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == expected
    # The secrets are on the stack key: decrypting goes through Secrets Manager only.
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == evaluation.exports["stackKeyArn"]
    assert decrypt["Condition"] == {"StringEquals": {
        "kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}


@pytest.mark.parametrize("stack", server_stack_names())
def test_database_redis_and_their_secrets_are_on_the_stack_key(evaluated, stack):
    evaluation = evaluated(stack)
    key = evaluation.exports["stackKeyArn"]
    db = evaluation.one("aws:rds/instance:Instance").inputs
    assert db["storageEncrypted"] is True and db["kmsKeyId"] == key
    assert db["manageMasterUserPassword"] is True and db["masterUserSecretKmsKeyId"] == key
    groups = evaluation.of_type("aws:elasticache/replicationGroup:ReplicationGroup")
    assert bool(groups) == stack_settings(stack).server.ha
    for group in groups:
        assert group.inputs["atRestEncryptionEnabled"] is True
        assert group.inputs["kmsKeyId"] == key
    statements = {s["Sid"]: s for s in policy(
        evaluation.one("aws:kms/keyPolicy:KeyPolicy"))["Statement"]}
    secrets = statements["ServerSecretsViaSecretsManagerWithIam"]["Condition"]["StringEquals"]
    tokens = [r.outputs["arn"] for r in evaluation.of_type("aws:secretsmanager/secret:Secret")
              if r.name == "server-redis-token"]
    assert secrets["kms:EncryptionContext:SecretARN"] == [
        evaluation.exports["serverDbSecretArn"], evaluation.exports["serverDbAppSecretArn"], *tokens]
    (app_secret,) = [r.inputs for r in evaluation.of_type("aws:secretsmanager/secret:Secret")
                     if r.name == "server-db-app-secret"]
    assert app_secret["kmsKeyId"] == key
    storage = statements["ServerStorageViaRdsAndElastiCache"]["Condition"]["StringEquals"]
    assert storage["kms:ViaService"] == ["rds.us-east-1.amazonaws.com", *(
        ["elasticache.us-east-1.amazonaws.com"] if tokens else [])]


def test_exec_role_opens_channels_logs_its_sessions_and_decrypts_them_and_nothing_else(
        evaluated):
    evaluation = evaluated("selfhosted-dev")
    statements = {s["Sid"]: s for s in policy(
        evaluation.one(ROLE_POLICY, "server-task-exec"))["Statement"]}
    assert set(statements) == {"EcsExecChannels", "LogExecSessions", "FindTheExecLogGroup",
                               "DecryptExecSessions"}
    channels = statements["EcsExecChannels"]
    assert sorted(channels["Action"]) == [
        "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"]
    assert channels["Resource"] == "*"
    cluster = evaluation.one("aws:ecs/cluster:Cluster").inputs
    exec_config = cluster["configuration"]["executeCommandConfiguration"]
    group = exec_config["logConfiguration"]["cloudWatchLogGroupName"]
    assert statements["LogExecSessions"]["Resource"] == (
        f"arn:aws:logs:us-east-1:123456789012:log-group:{group}:*")
    assert sorted(statements["LogExecSessions"]["Action"]) == [
        "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    assert statements["DecryptExecSessions"] == {
        "Sid": "DecryptExecSessions", "Effect": "Allow", "Action": "kms:Decrypt",
        "Resource": exec_config["kmsKeyId"]}
    task = evaluation.one("aws:ecs/taskDefinition:TaskDefinition", "server-server-task").inputs
    role = evaluation.one("aws:iam/role:Role", "server-task")
    assert task["taskRoleArn"] == role.outputs["arn"]
    # Only the server task carries it.
    others = [t for t in evaluation.of_type("aws:ecs/taskDefinition:TaskDefinition")
              if t.name != "server-server-task"]
    assert all(t.inputs.get("taskRoleArn") != role.outputs["arn"] for t in others)


@pytest.mark.parametrize("stack", ["dev", *server_stack_names()])
def test_the_cluster_logs_exec_sessions_to_an_encrypted_group_and_encrypts_their_channel(
        evaluated, stack):
    evaluation = evaluated(stack)
    key_arn = evaluation.exports["stackKeyArn"]
    exec_config = evaluation.one("aws:ecs/cluster:Cluster").inputs["configuration"][
        "executeCommandConfiguration"]
    assert exec_config["logging"] == "OVERRIDE" and exec_config["kmsKeyId"] == key_arn
    log = exec_config["logConfiguration"]
    assert log["cloudWatchEncryptionEnabled"] is True
    group = next(g.inputs for g in evaluation.of_type("aws:cloudwatch/logGroup:LogGroup")
                 if g.inputs["name"] == log["cloudWatchLogGroupName"])
    assert group["kmsKeyId"] == key_arn
    key_policy = policy(evaluation.one("aws:kms/keyPolicy:KeyPolicy"))
    statements = {s["Sid"]: s for s in key_policy["Statement"]}
    logs_groups = statements["CloudWatchLogsUsesKeyForTheseLogGroups"]["Condition"][
        "ArnEquals"]["kms:EncryptionContext:aws:logs:arn"]
    assert (f"arn:aws:logs:us-east-1:123456789012:log-group:{group['name']}"
            in logs_groups)
    sessions = statements["EcsExecSessionsWithIam"]
    assert sessions["Condition"] == {"StringLike": {
        "kms:EncryptionContext:aws:ssm:SessionId": "*"}}
    assert sorted(sessions["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]


@pytest.mark.parametrize("stack", server_stack_names())
def test_generated_credentials_are_secret_inputs_and_nowhere_plain(evaluated, stack):
    evaluation = evaluated(stack)
    versions = evaluation.of_type(SECRET_VERSION)
    assert versions and all(is_secret_input(v.inputs["secretString"]) for v in versions)
    auth = [v for v in versions if v.name == "prefect-credential-version"]
    assert auth and auth[0].inputs["secretString"]["value"] == "prefect:" + GENERATED_PASSWORD[:40]
    plain = json.dumps([r.inputs for r in evaluation.resources
                        if r.type != SECRET_VERSION
                        and r.type != "aws:elasticache/replicationGroup:ReplicationGroup"])
    assert GENERATED_PASSWORD[:16] not in plain
    assert GENERATED_PASSWORD[:16] not in json.dumps(evaluation.exports)
    assert evaluation.secret_exports == set()


# Rotation redeploys the server.

SAMPLE_ROTATION = {
    "source": "aws.secretsmanager",
    "detail-type": "AWS Service Event via CloudTrail",
    "detail": {"eventSource": "secretsmanager.amazonaws.com", "eventName": "RotationSucceeded",
               "additionalEventData": {"SecretId": "SECRET"}},
}


def _event(secret_arn: str, name: str = "RotationSucceeded") -> dict:
    event = json.loads(json.dumps(SAMPLE_ROTATION).replace("SECRET", secret_arn))
    event["detail"]["eventName"] = name
    return event


@pytest.mark.parametrize("stack", server_stack_names())
def test_a_rotation_of_either_database_secret_redeploys_every_server_service(evaluated, stack):
    evaluation = evaluated(stack)
    secret, app_secret = (evaluation.exports["serverDbSecretArn"],
                          evaluation.exports["serverDbAppSecretArn"])
    assert secret != app_secret
    rule = evaluation.one("aws:cloudwatch/eventRule:EventRule", "server-rotation-rule").inputs
    pattern = json.loads(rule["eventPattern"])
    assert pattern == rotation_pattern([secret, app_secret])
    assert matches(pattern, _event(secret)) and matches(pattern, _event(app_secret))
    assert not matches(pattern, _event(secret, "RotationFailed"))
    assert not matches(pattern, _event(evaluation.exports["credentialSecretArn"]))

    machine = evaluation.one("aws:sfn/stateMachine:StateMachine").inputs
    definition = json.loads(machine["definition"])
    calls = [state for state in definition["States"].values()]
    assert {s["Resource"] for s in calls} == {UPDATE_SERVICE}
    services = {s.name: s for s in evaluation.of_type("aws:ecs/service:Service")
                if s.name.startswith("server-")}
    assert sorted(c["Parameters"]["Service"] for c in calls) == sorted(
        s.outputs["arn"] for s in services.values())
    assert all(c["Parameters"]["ForceNewDeployment"] is True for c in calls)
    assert all(c["Parameters"]["Cluster"] == evaluation.exports["clusterArn"] for c in calls)
    (target,) = [t for t in evaluation.of_type("aws:cloudwatch/eventTarget:EventTarget")
                 if t.name == "server-rotation-target"]
    assert target.inputs["arn"] == evaluation.exports["serverRedeployStateMachineArn"]

    statements = {s["Sid"]: s for s in policy(
        evaluation.one(ROLE_POLICY, "server-rotation-machine-policy"))["Statement"]}
    assert set(statements) == {"RedeployServerServices", "DeliverExecutionLogs", "SendTraces"}
    update = statements["RedeployServerServices"]
    # Execution history to the stack key's group, and X-Ray traces (CKV_AWS_285/284).
    assert machine["tracingConfiguration"] == {"enabled": True}
    logging = machine["loggingConfiguration"]
    assert (logging["level"], logging["includeExecutionData"]) == ("ALL", True)
    group = evaluation.one("aws:cloudwatch/logGroup:LogGroup", "server-rotation-logs")
    assert logging["logDestination"] == group.outputs["arn"] + ":*"
    assert group.inputs["kmsKeyId"] == evaluation.exports["stackKeyArn"]
    assert group.inputs["name"].startswith("/aws/vendedlogs/states/")
    assert update["Action"] == "ecs:UpdateService"
    assert sorted(update["Resource"]) == sorted(s.outputs["arn"] for s in services.values())
    (start,) = policy(evaluation.one(ROLE_POLICY, "server-rotation-events-policy"))["Statement"]
    assert (start["Action"], start["Resource"]) == (
        "states:StartExecution", evaluation.exports["serverRedeployStateMachineArn"])


# Alarms on the stack's topic.

@pytest.mark.parametrize("stack", server_stack_names())
def test_server_alarms_watch_database_load_balancer_and_redis(evaluated, stack):
    evaluation = evaluated(stack)
    topic = evaluation.exports["alarmTopicArn"]
    alarms = {a.name: a.inputs for a in evaluation.of_type(ALARM)
              if a.name.startswith("server-alarms-")}
    expected = {"db-cpu-high", "db-storage-low", "db-connections-high"}
    if stack == "selfhosted-prod":
        expected |= {"server-unhealthy-targets", "server-target-5xx", "server-lb-5xx",
                     "redis-cpu-high", "redis-memory-high"}
    assert set(alarms) == {f"server-alarms-{n}" for n in expected}
    for alarm in alarms.values():
        assert alarm["alarmActions"] == [topic] and alarm["okActions"] == [topic]
    db = evaluation.one("aws:rds/instance:Instance").inputs
    storage = alarms["server-alarms-db-storage-low"]
    assert storage["comparisonOperator"] == "LessThanThreshold"
    # A fifth of the allocation, or a week of growth at the stated load (whichever is more).
    week = ALARM_HEADROOM_DAYS * daily_bytes(STATED_RUNS_PER_DAY)
    assert week > 0
    assert storage["threshold"] == math.ceil(max(db["allocatedStorage"] * 1024 ** 3 * 0.2, week))
    assert alarms["server-alarms-db-connections-high"]["threshold"] == int(
        0.8 * max_connections(db["instanceClass"]))
    if stack == "selfhosted-prod":
        memory = alarms["server-alarms-redis-memory-high"]
        assert memory["metricName"] == "DatabaseMemoryUsagePercentage"
        assert memory["threshold"] == REDIS_MEMORY_HIGH_PERCENT != CPU_HIGH_PERCENT
        assert alarms["server-alarms-redis-cpu-high"]["threshold"] == CPU_HIGH_PERCENT


def test_max_connections_follow_rds_formula():
    assert max_connections("db.t4g.micro") == 112
    assert max_connections("db.r7g.large") == 1802  # 16 GiB
    assert max_connections("db.m7g.16xlarge") == 5000


# Cost.

def test_dev_with_its_own_server_costs_at_most_three_quarters_of_the_seed(evaluated):
    from tests.support.evaluations import evaluated_seed

    prices = PriceTable.load()
    dev = estimate(declared(evaluated("selfhosted-dev")), prices)
    seed = estimate(declared(evaluated_seed()), prices)
    assert dev.total <= 0.75 * seed.total
    items = items_by_name(dev)
    assert items["RDS PostgreSQL db.t4g.micro"].monthly == pytest.approx(730 * 0.016)
    assert items["RDS gp3 storage"].quantity == 20
    assert items["Secrets Manager secrets (RDS managed)"].quantity == 1
    assert items["Fargate server 0.25 vCPU / 1 GB X86_64 Spot"].quantity == 1
    assert "Route 53 private hosted zone (Cloud Map namespace)" in items
    assert "Application Load Balancer hours" not in items


def test_ha_prices_multi_az_database_redis_nodes_and_the_alb(evaluated):
    items = items_by_name(estimate(declared(evaluated("selfhosted-prod")), PriceTable.load()))
    assert items["RDS PostgreSQL db.t4g.medium Multi-AZ"].monthly == pytest.approx(730 * 0.065 * 2)
    assert items["RDS gp3 storage"].quantity == 100  # 50 GiB, twice
    assert items["ElastiCache cache.t4g.small nodes"].quantity == 2 * 730
    assert items["Application Load Balancer hours"].quantity == 730
    assert items["Cloud Map registered instances"].quantity == 2  # the API tasks
    assert items["Fargate server-api 1 vCPU / 2 GB ARM64 on demand"].quantity == 2
    assert items["Fargate server-services 1 vCPU / 2 GB ARM64 on demand"].quantity == 1


def test_an_unpriced_database_class_is_an_error_not_a_zero():
    with pytest.raises(KeyError, match="pricing has no rds_postgres_hour for db.x1.huge"):
        PriceTable.load().of("rds_postgres_hour", "db.x1.huge")


def test_backups_beyond_the_free_allowance_are_priced_from_the_retention():
    prices = PriceTable.load()
    db = ("aws:rds/instance:Instance", {"instanceClass": "db.t4g.micro", "allocatedStorage": 20,
                                        "backupRetentionPeriod": 35, "multiAz": False})
    items = items_by_name(estimate([db], prices))
    # 5% of 20 GiB changes a day, kept 35 days: 35 GiB, of which 20 are free.
    backups = items["RDS backup storage beyond the free allowance"]
    assert backups.quantity == pytest.approx(15)
    assert backups.monthly == pytest.approx(15 * 0.095)
    short = dict(db[1], backupRetentionPeriod=7)
    assert "RDS backup storage beyond the free allowance" not in items_by_name(
        estimate([(db[0], short)], prices))
