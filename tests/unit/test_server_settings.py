"""The self-hosted server's keys: each bad value or combination is refused before any resource,
with the key, the value (never a secret's) and what is accepted; `prefectServer: none` (the
default) leaves every existing stack as it was."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from components.config.server import (
    SERVER_ACCESS, SERVER_MODES, ServerAccess, ServerMode, physical_name,
)
from tests.support.harness import (
    PROJECT, ROOT, TEST_API_KEY, evaluate, load_stack_config, read_yaml,
    stack_file_values, with_credentials, worker_only_stack_names,
)
from tests.support.refusals import assert_refused_before_any_resource, refused
from tools.mock_engine import CLOUD_URL, GENERATED_PASSWORD, PLACEHOLDER_API_KEY

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prefect/auth-Xy12Ab"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0b1a4c3e-3d8c-4a1e-9f34-6f2b8c1d2e3f"
SERVER_TYPES = ("aws:rds/", "aws:elasticache/", "aws:lb/", "aws:servicediscovery/", "aws:sfn/",
                "aws:acm/", "aws:route53/", "aws:vpc/securityGroupIngressRule")


def single(**overrides: str) -> dict[str, str]:
    return with_credentials(load_stack_config("selfhosted-dev"), **overrides)


def ha(**overrides: str) -> dict[str, str]:
    return with_credentials(load_stack_config("selfhosted-prod"), **overrides)


def public(**overrides: str) -> dict[str, str]:
    values = {"serverAccess": "public", "serverDomainName": "prefect.example.com",
              "serverHostedZoneId": "Z0123456789EXAMPLE",
              "serverAllowedCidrs": '["203.0.113.0/24"]', **overrides}
    return single(**values)


def without(config: dict[str, str], *keys: str) -> dict[str, str]:
    return {k: v for k, v in config.items() if k.split(":", 1)[1] not in keys}


SECRET = "[secret]"
# (case id, config, key named, value shown, a phrase of what is accepted)
BAD_SERVER_CONFIGS = [
    ("server-with-api-url", single(prefectApiUrl="http://prefect.internal:4200/api"),
     "prefectApiUrl", '"http://prefect.internal:4200/api"', "the worker uses the stack's own server"),
    ("server-with-api-key", single(prefectApiKey=PLACEHOLDER_API_KEY),
     "prefectApiKey", SECRET, "a self-hosted server has no API keys"),
    ("server-with-api-key-arn", single(prefectApiKeySecretArn=SECRET_ARN),
     "prefectApiKeySecretArn", SECRET, "a self-hosted server has no API keys"),
    ("server-mode-unknown", single(prefectServer="cluster"),
     "prefectServer", '"cluster"', "one of none, single, ha"),
    ("access-unknown", single(serverAccess="vpn"),
     "serverAccess", '"vpn"', "one of internal, public"),
    ("public-without-domain", single(serverAccess="public", serverCertificateArn=CERT,
                                     serverAllowedCidrs='["203.0.113.0/24"]'),
     "serverAccess", '"public"', "public needs HTTPS for a name"),
    ("public-without-certificate-or-zone",
     without(public(), "serverHostedZoneId"),
     "serverDomainName", '"prefect.example.com"', "public access is HTTPS only"),
    ("public-open-to-the-internet", public(serverAllowedCidrs='["0.0.0.0/0"]'),
     "serverAllowedCidrs", '["0.0.0.0/0"]', "never 0.0.0.0/0"),
    ("public-without-allowed-cidrs", without(public(), "serverAllowedCidrs"),
     "serverAllowedCidrs", "[]", "required with serverAccess public"),
    ("public-allowed-cidr-too-wide", public(serverAllowedCidrs='["0.0.0.0/1"]'),
     "serverAllowedCidrs", '["0.0.0.0/1"]', "a prefix of /8 or longer"),
    ("public-allowed-cidr-malformed", public(serverAllowedCidrs='["office"]'),
     "serverAllowedCidrs", '["office"]', "IPv4 networks"),
    ("ha-in-one-az", ha(availabilityZoneCount="1"),
     "availabilityZoneCount", "1", "at least 2 with prefectServer ha"),
    ("db-class-unknown", single(serverDbInstanceClass="db.x9.huge"),
     "serverDbInstanceClass", '"db.x9.huge"', "an RDS for PostgreSQL instance class"),
    ("db-class-not-rds", single(serverDbInstanceClass="t4g.micro"),
     "serverDbInstanceClass", '"t4g.micro"', "such as db.t4g.micro"),
    ("ha-on-a-micro-database", ha(serverDbInstanceClass="db.t4g.micro"),
     "serverDbInstanceClass", '"db.t4g.micro"', "db.t4g.small or larger with prefectServer ha"),
    ("retention-above-35", single(serverDbBackupRetentionDays="36"),
     "serverDbBackupRetentionDays", "36", "from 0 (no automated backups) to 35"),
    ("retention-negative", single(serverDbBackupRetentionDays="-1"),
     "serverDbBackupRetentionDays", "-1", "from 0 (no automated backups) to 35"),
    ("ha-without-backups", ha(serverDbBackupRetentionDays="0"),
     "serverDbBackupRetentionDays", "0", "at least 1 with prefectServer ha"),
    ("storage-below-gp3-minimum", single(serverDbAllocatedStorageGb="10"),
     "serverDbAllocatedStorageGb", "10", "from 20 to 65536"),
    ("ha-one-api-task", ha(serverApiCount="1"),
     "serverApiCount", "1", "one API task is not highly available"),
    ("server-memory-too-small", single(serverCpu="256", serverMemory="512"),
     "serverMemory", "512", "at least 1024 MiB"),
    ("server-size-not-fargate", single(serverCpu="300"),
     "serverCpu", "300", "one of Fargate's CPU sizes"),
    ("server-image-latest", single(serverImage="prefecthq/prefect:3-latest"),
     "serverImage", '"prefecthq/prefect:3-latest"', "pinned by tag or digest"),
    ("server-in-an-adopted-vpc",
     single(vpcId="vpc-0123abcd", publicSubnetIds='["subnet-0123abcd", "subnet-0123abce"]'),
     "vpcId", '"vpc-0123abcd"', "isolated subnets of the stack's own VPC"),
    ("domain-without-server", with_credentials(load_stack_config("dev"),
                                               serverDomainName="prefect.example.com"),
     "serverDomainName", '"prefect.example.com"', "only with prefectServer single or ha"),
    ("internal-with-allowed-cidrs", single(serverAllowedCidrs='["203.0.113.0/24"]'),
     "serverAllowedCidrs", '["203.0.113.0/24"]', "an internal server takes no traffic"),
    ("internal-with-domain", single(serverDomainName="prefect.example.com"),
     "serverDomainName", '"prefect.example.com"', "only with serverAccess public"),
    ("domain-malformed", public(serverDomainName="Prefect_Example"),
     "serverDomainName", '"Prefect_Example"', "a lower-case DNS name"),
    ("certificate-arn-malformed", public(serverCertificateArn="arn:aws:iam::1:server-certificate/x"),
     "serverCertificateArn", '"arn:aws:iam::1:server-certificate/x"', "an ACM certificate ARN"),
    ("hosted-zone-malformed", public(serverHostedZoneId="example.com"),
     "serverHostedZoneId", '"example.com"', "a Route 53 hosted zone id"),
    ("redis-node-unknown", ha(serverRedisNodeType="cache.x1.huge"),
     "serverRedisNodeType", '"cache.x1.huge"', "an ElastiCache node type"),
    ("events-retention-zero", single(serverEventsRetentionDays="0"),
     "serverEventsRetentionDays", "0", "from 1 to 365"),
    ("events-retention-not-a-number", single(serverEventsRetentionDays="3d"),
     "serverEventsRetentionDays", '"3d"', "a whole number"),
    ("flow-run-retention-negative", single(serverFlowRunRetentionDays="-1"),
     "serverFlowRunRetentionDays", "-1", "0 (keep every flow run)"),
    ("flow-run-retention-above-ten-years", ha(serverFlowRunRetentionDays="3651"),
     "serverFlowRunRetentionDays", "3651", "from 1 to 3650"),
    ("max-storage-below-the-allocation", single(serverDbMaxAllocatedStorageGb="20"),
     "serverDbMaxAllocatedStorageGb", "20", "from 22 (10% above serverDbAllocatedStorageGb 20"),
    ("max-storage-above-gp3", ha(serverDbMaxAllocatedStorageGb="70000"),
     "serverDbMaxAllocatedStorageGb", "70000", "to 65536"),
    ("vpc-too-small-for-three-tiers", single(natGateways="single", availabilityZoneCount="6"),
     "availabilityZoneCount", "6", "3 subnet tier(s)"),
    # serverDbRestoreSnapshot: RDS's identifier rules, the stack's region, instance snapshots only.
    ("restore-snapshot-in-another-region",
     single(serverDbRestoreSnapshot="arn:aws:rds:eu-west-1:123456789012:snapshot:prod-db-final"),
     "serverDbRestoreSnapshot", '"arn:aws:rds:eu-west-1:123456789012:snapshot:prod-db-final"',
     "a snapshot in the stack's region us-east-1 (aws:region)"),
    ("restore-snapshot-starting-with-a-digit", single(serverDbRestoreSnapshot="1-db-final"),
     "serverDbRestoreSnapshot", '"1-db-final"', "starting with a letter"),
    ("restore-snapshot-double-hyphen", single(serverDbRestoreSnapshot="prod--final"),
     "serverDbRestoreSnapshot", '"prod--final"', "no double or trailing hyphen"),
    ("restore-snapshot-trailing-hyphen", single(serverDbRestoreSnapshot="prod-final-"),
     "serverDbRestoreSnapshot", '"prod-final-"', "no double or trailing hyphen"),
    ("restore-snapshot-underscore", single(serverDbRestoreSnapshot="prod_final"),
     "serverDbRestoreSnapshot", '"prod_final"', "letters, digits and hyphens"),
    ("restore-snapshot-too-long", single(serverDbRestoreSnapshot="a" * 256),
     "serverDbRestoreSnapshot", json.dumps("a" * 256), "1-255 letters"),
    ("restore-snapshot-arn-malformed-name",
     single(serverDbRestoreSnapshot="arn:aws:rds:us-east-1:123456789012:snapshot:prod_final"),
     "serverDbRestoreSnapshot", '"arn:aws:rds:us-east-1:123456789012:snapshot:prod_final"',
     "arn:aws:rds:<region>:<account>:snapshot:<name>"),
    ("restore-snapshot-arn-short-account",
     single(serverDbRestoreSnapshot="arn:aws:rds:us-east-1:1234:snapshot:prod-final"),
     "serverDbRestoreSnapshot", '"arn:aws:rds:us-east-1:1234:snapshot:prod-final"',
     "arn:aws:rds:<region>:<account>:snapshot:<name>"),
    ("restore-cluster-snapshot",
     single(serverDbRestoreSnapshot="arn:aws:rds:us-east-1:123456789012:cluster-snapshot:c1"),
     "serverDbRestoreSnapshot", '"arn:aws:rds:us-east-1:123456789012:cluster-snapshot:c1"',
     "a DB instance snapshot"),
    ("restore-snapshot-without-server", with_credentials(load_stack_config("dev"),
                                                         serverDbRestoreSnapshot="prod-final"),
     "serverDbRestoreSnapshot", '"prod-final"', "only with prefectServer single or ha"),
    ("restore-replaces-another-snapshot",
     single(serverDbRestoreSnapshot="prod-final", serverDbRestoreReplaces="prod-final-2"),
     "serverDbRestoreReplaces", '"prod-final-2"', "the same value as serverDbRestoreSnapshot"),
    ("restore-replaces-without-a-restore", single(serverDbRestoreReplaces="prod-final"),
     "serverDbRestoreReplaces", '"prod-final"', "the same value as serverDbRestoreSnapshot"),
    ("restore-replaces-without-server", with_credentials(load_stack_config("dev"),
                                                         serverDbRestoreReplaces="prod-final"),
     "serverDbRestoreReplaces", '"prod-final"', "only with prefectServer single or ha"),
]


@pytest.mark.parametrize("config,key,shown,accepted",
                         [case[1:] for case in BAD_SERVER_CONFIGS],
                         ids=[case[0] for case in BAD_SERVER_CONFIGS])
def test_bad_server_config_is_refused_before_any_resource(config, key, shown, accepted):
    assert_refused_before_any_resource(config, key, shown, accepted,
                                       secret_keys=(f"{PROJECT}:prefectApiKey",))


def test_at_least_fifteen_distinct_server_refusals():
    ids = [case[0] for case in BAD_SERVER_CONFIGS]
    assert len(set(ids)) == len(ids) >= 15
    assert len({case[2:] for case in BAD_SERVER_CONFIGS}) == len(BAD_SERVER_CONFIGS)


def test_every_new_key_has_a_bad_value_case():
    declared = read_yaml(ROOT / "Pulumi.yaml")["config"]
    server_keys = {k for k in declared if k == "prefectServer" or k.startswith("server")}
    covered = {case[2] for case in BAD_SERVER_CONFIGS}
    boolean = {"serverDbDeletionProtection", "serverDbFinalSnapshot",
               "serverLbDeletionProtection"}  # test_server_database
    assert server_keys - covered == boolean


@pytest.mark.parametrize("key", ["serverDbDeletionProtection", "serverDbFinalSnapshot",
                                 "serverLbDeletionProtection"])
def test_boolean_server_keys_refuse_anything_but_true_or_false(key):
    message, mocks = refused(single(**{key: "yes"}))
    assert f"{PROJECT}:{key} = \"yes\" is not valid: true or false" in message
    assert mocks.resources == []


def test_allowed_values_come_from_the_literal_types():
    assert SERVER_MODES == get_args(ServerMode) == ("none", "single", "ha")
    assert SERVER_ACCESS == get_args(ServerAccess) == ("internal", "public")


# prefectServer none is today's stack, exactly.

@pytest.mark.parametrize("stack", worker_only_stack_names())
def test_stacks_without_a_server_declare_nothing_of_one(evaluated, stack):
    assert stack_file_values(stack).get("prefectServer", "none") == "none"
    evaluation = evaluated(stack)
    assert not [r.name for r in evaluation.resources if r.type.startswith(SERVER_TYPES)]
    assert [r.name for r in evaluation.of_type("aws:ecs/service:Service")] == ["worker-service"]
    assert "aws:secretsmanager/getRandomPassword:getRandomPassword" not in evaluation.calls
    assert not any(key.startswith("server") for key in evaluation.exports)


def test_a_server_stack_needs_no_prefect_api_url_or_key(evaluated):
    config = single()
    assert not config.get(f"{PROJECT}:prefectApiUrl") and not config.get(f"{PROJECT}:prefectApiKey")
    evaluation = evaluated("selfhosted-dev")  # that config, evaluated once for the run
    assert evaluation.exports["serverApiUrl"] == (
        f"http://server.{PROJECT}-selfhosted-dev.internal:4200/api")
    assert "aws:secretsmanager/getRandomPassword:getRandomPassword" in evaluation.calls
    assert GENERATED_PASSWORD[:40] not in json.dumps(evaluation.exports)


def test_an_adopted_auth_string_secret_is_used_and_nothing_generated(evaluated):
    evaluation = evaluated("selfhosted-dev", prefectApiAuthStringSecretArn=SECRET_ARN)
    assert evaluation.exports["credentialSecretArn"] == SECRET_ARN
    # The one generated value is the database role's password (components/server/database.py).
    assert [v.name for v in evaluation.of_type("aws:secretsmanager/secretVersion:SecretVersion")
            ] == ["server-db-app-secret-version"]
    assert list(evaluation.calls).count(
        "aws:secretsmanager/getRandomPassword:getRandomPassword") == 1


def test_public_access_with_an_own_certificate_issues_none():
    evaluation = evaluate(without(public(serverCertificateArn=CERT), "serverHostedZoneId"))
    assert not evaluation.of_type("aws:acm/certificate:Certificate")
    assert not evaluation.of_type("aws:route53/record:Record")
    (https,) = [lst for lst in evaluation.of_type("aws:lb/listener:Listener")
                if lst.inputs["port"] == 443]
    assert https.inputs["certificateArn"] == CERT


def test_long_stack_names_stay_within_aws_name_limits():
    name = physical_name("prefect-ecs-worker-a-very-long-stack-name", "redis", 40)
    other = physical_name("prefect-ecs-worker-a-very-long-stack-name-2", "redis", 40)
    assert len(name) <= 40 and name.endswith("-redis") and name != other
    assert physical_name("short", "alb", 32) == "short-alb"


def test_cloud_url_is_still_refused_with_an_auth_string_when_no_server():
    config = without(with_credentials(load_stack_config("dev"), prefectApiUrl=CLOUD_URL,
                                      prefectApiAuthStringSecretArn=SECRET_ARN), "prefectApiKey")
    message, _ = refused(config)
    assert "Prefect Cloud authenticates with an API key" in message
    assert TEST_API_KEY not in message
