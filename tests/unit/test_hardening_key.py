"""The stack key: one customer managed key, rotating, encrypting the credential secret, the log
groups and the alarm topic; its policy lets the execution roles decrypt the secret on its own,
other principals only with IAM's grant too, all only through Secrets Manager for this secret, and
CloudWatch Logs use it for this stack's log groups only."""

from __future__ import annotations

import ast
import json

import pytest

from components.platform.stack_key import ADMINISTRATION_ACTIONS
from tests.support.harness import ACCOUNT, REGION, ROOT, evaluate_stack, policy, stack_names

KEY = "aws:kms/key:Key"
KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
SECRET = "aws:secretsmanager/secret:Secret"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
TOPIC = "aws:sns/topic:Topic"
ADOPTED_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prefect/api-key-Xy12Ab"
DATA_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncrypt", "kms:*",
                "kms:CreateGrant")


def statements(evaluation) -> dict[str, dict]:
    return {s["Sid"]: s for s in policy(evaluation.one(KEY_POLICY))["Statement"]}


@pytest.mark.parametrize("stack", stack_names())
def test_one_rotating_key_encrypts_secret_log_groups_and_topic(evaluated, stack):
    evaluation = evaluated(stack)
    key = evaluation.one(KEY)
    assert key.inputs["enableKeyRotation"] is True
    assert 7 <= key.inputs["deletionWindowInDays"] <= 30
    assert evaluation.one(KEY_POLICY).inputs["keyId"] == key.outputs["keyId"]
    arn = key.outputs["arn"]
    assert evaluation.exports["stackKeyArn"] == arn
    # The credential secret, and with a server its Redis token's (tests/unit/test_server_*.py).
    secrets = evaluation.of_type(SECRET)
    assert secrets and all(s.inputs["kmsKeyId"] == arn for s in secrets)
    groups = evaluation.of_type(LOG_GROUP)
    assert len(groups) >= 3 and all(g.inputs["kmsKeyId"] == arn for g in groups)
    assert evaluation.one("aws:sns/topic:Topic").inputs["kmsMasterKeyId"] == arn


def test_the_account_administers_the_key_but_cannot_use_it_through_iam(evaluated):
    root = statements(evaluated("prod"))["AccountAdministersKeyThroughIam"]
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    # AWS refuses a key policy that would not let the account change it (lockout check).
    assert "kms:PutKeyPolicy" in root["Action"]
    assert not [a for a in root["Action"] if a.startswith(DATA_ACTIONS)]
    assert "Condition" not in root


def test_decrypting_is_through_secrets_manager_for_this_secret_only(evaluated):
    evaluation = evaluated("prod")
    decrypt = statements(evaluation)["ExecutionRolesDecryptTheSecretViaSecretsManager"]
    assert sorted(decrypt["Principal"]["AWS"]) == sorted(
        [evaluation.exports["executionRoleArn"], evaluation.exports["flowRunExecutionRoleArn"]])
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Condition"] == {"StringEquals": {
        "kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com",
        "kms:EncryptionContext:SecretARN": evaluation.exports["credentialSecretArn"]}}
    # Every other decrypt grant is through Secrets Manager, for this secret, to the account's
    # principals that IAM also grants the key (the deployer: Pulumi reads the version back).
    decrypters = [s for s in statements(evaluation).values()
                  if "kms:Decrypt" in json.dumps(s["Action"]) and "AWS" in s["Principal"]]
    deployers = statements(evaluation)["DeployersUseTheSecretViaSecretsManagerWithIam"]
    exec_sessions = statements(evaluation)["EcsExecSessionsWithIam"]
    assert decrypters == [decrypt, deployers, exec_sessions]
    # ECS Exec's data channel: only with a Session Manager session id in the context.
    assert exec_sessions["Condition"] == {"StringLike": {
        "kms:EncryptionContext:aws:ssm:SessionId": "*"}}
    assert deployers["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert set(deployers["Action"]) == {"kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"}
    assert deployers["Condition"] == decrypt["Condition"]


@pytest.mark.parametrize("stack", stack_names())
def test_cloudwatch_logs_may_use_the_key_for_this_stacks_log_groups_only(evaluated, stack):
    evaluation = evaluated(stack)
    logs = statements(evaluation)["CloudWatchLogsUsesKeyForTheseLogGroups"]
    assert logs["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    names = sorted(g.inputs["name"] for g in evaluation.of_type(LOG_GROUP))
    assert names and sorted(logs["Condition"]["ArnEquals"][
        "kms:EncryptionContext:aws:logs:arn"]) == sorted(
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}" for name in names)
    assert list(logs["Condition"]) == ["ArnEquals"]


def test_alarm_publishers_keep_their_grants_on_the_stack_key(evaluated):
    found = statements(evaluated("dev"))
    assert found["CloudWatchAlarmsPublish"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert found["EventBridgeRulesPublish"]["Principal"] == {"Service": "events.amazonaws.com"}


def test_an_adopted_secret_gets_no_grant_on_the_stack_key():
    evaluation = evaluate_stack("dev", prefectApiKey="", prefectApiKeySecretArn=ADOPTED_SECRET)
    assert not evaluation.of_type(SECRET)
    assert not [sid for sid in statements(evaluation) if "Secret" in sid]


@pytest.mark.parametrize("stack", stack_names())
def test_what_the_key_encrypts_waits_for_the_key_policy(evaluated, stack):
    """CloudWatch Logs checks the key policy when a group is associated with the key (and SNS
    when it first uses it), so every log group and the alarm topic take the key's ARN from an
    Output that depends on the policy resource: Pulumi creates them after the policy."""
    evaluation = evaluated(stack)
    key_arn = evaluation.one(KEY).outputs["arn"]
    policy_urn = evaluation.one(KEY_POLICY).urn
    encrypted = [(r, prop) for r in evaluation.resources
                 for prop in ("kmsKeyId", "kmsMasterKeyId")
                 if r.type in (LOG_GROUP, TOPIC) and r.inputs.get(prop) == key_arn]
    assert policy_urn and {r.type for r, _ in encrypted} == {LOG_GROUP, TOPIC}
    early = [r.name for r, prop in encrypted if policy_urn not in r.dependencies.get(prop, [])]
    assert not early, f"declared without waiting for the key policy: {early}"


def test_the_key_passes_its_arn_on_without_declaring_in_an_apply():
    tree = ast.parse((ROOT / "components" / "platform" / "stack_key.py").read_text())
    lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
    assert lambdas and all(isinstance(n.body, ast.Subscript) for n in lambdas)


def test_administration_actions_never_grant_use_of_the_key():
    assert not [a for a in ADMINISTRATION_ACTIONS if a.startswith(DATA_ACTIONS) or a == "kms:*"]
