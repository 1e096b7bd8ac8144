"""The Prefect credential lives in Secrets Manager: a new secret with a recovery window whose value
arrives only as a Pulumi secret, or an adopted secret the stack never reads."""

from __future__ import annotations

import json

from components.worker.secret import RECOVERY_WINDOW_DAYS
from policies.worker_rules import SECRETS_MANAGER_RECOVERY_DAYS
from tests.support.harness import (
    TEST_API_KEY, evaluate, is_secret_input, load_stack_config, with_credentials, worker_container,
)

SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
ADOPTED_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prefect/api-key-Xy12Ab"


def adopted_config() -> dict[str, str]:
    config = with_credentials(load_stack_config("prod"), prefectApiKeySecretArn=ADOPTED_ARN)
    del config["prefect-ecs-worker:prefectApiKey"]
    return config


def test_secret_can_be_restored_for_a_week_after_deletion(evaluated):
    secret = evaluated("prod").one(SECRET).inputs
    assert secret["recoveryWindowInDays"] == RECOVERY_WINDOW_DAYS
    assert RECOVERY_WINDOW_DAYS in SECRETS_MANAGER_RECOVERY_DAYS  # what Secrets Manager accepts


def test_secret_version_holds_the_key_as_a_pulumi_secret(evaluated):
    evaluation = evaluated("prod")
    version = evaluation.one(SECRET_VERSION).inputs
    assert is_secret_input(version["secretString"])
    assert version["secretString"]["value"] == TEST_API_KEY
    assert version["secretId"] == evaluation.exports["credentialSecretArn"]


def test_key_appears_in_no_other_input_and_no_export(evaluated):
    evaluation = evaluated("prod")
    others = [r.inputs for r in evaluation.resources if r.type != SECRET_VERSION]
    assert TEST_API_KEY not in json.dumps(others)
    assert TEST_API_KEY not in json.dumps(evaluation.exports)
    assert evaluation.secret_exports == set()


def test_secret_description_names_the_variable_not_the_value(evaluated):
    description = evaluated("prod").one(SECRET).inputs["description"]
    assert "PREFECT_API_KEY" in description and TEST_API_KEY not in description


def test_adopted_secret_arn_creates_no_secret_and_is_used_everywhere():
    evaluation = evaluate(adopted_config())
    assert evaluation.of_type(SECRET) == [] and evaluation.of_type(SECRET_VERSION) == []
    assert evaluation.exports["credentialSecretArn"] == ADOPTED_ARN
    assert worker_container(evaluation)["secrets"] == [
        {"name": "PREFECT_API_KEY", "valueFrom": ADOPTED_ARN}]
    assert evaluation.exports["workPoolJobVariables"]["prefect_api_key_secret_arn"] == ADOPTED_ARN
    readers = [r for r in evaluation.resources if r.name.endswith("-secret")
               and r.type == "aws:iam/rolePolicy:RolePolicy"]
    assert [json.loads(r.inputs["policy"])["Statement"][0]["Resource"] for r in readers] == [
        ADOPTED_ARN, ADOPTED_ARN]
