"""A refused config stops the program before any resource exists, with a message that names the
key, shows the value (never a secret's) and says what is accepted; a good one goes through."""

from __future__ import annotations

import json

import pytest

from tests.support.harness import (
    CLOUD_URL, PROJECT, TEST_API_KEY, evaluate, load_stack_config, read_settings,
    with_credentials, worker_container,
)
from tests.support.refusals import assert_refused_before_any_resource, refused

SELF_HOSTED_URL = "http://prefect.internal:4200/api"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prefect/api-key-Xy12Ab"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
SHOWN_AS_SECRET = "[secret]"


def dev_config(**overrides: str) -> dict[str, str]:
    return with_credentials(load_stack_config("dev"), **overrides)


def without(config: dict[str, str], *keys: str) -> dict[str, str]:
    return {k: v for k, v in config.items() if k.split(":", 1)[1] not in keys}


# (case id, config, key named, value shown, a phrase of what is accepted)
BAD_CONFIGS = [
    ("api-url-missing", without(dev_config(), "prefectApiUrl"),
     "prefectApiUrl", "null", "it is required"),
    ("api-url-not-http", dev_config(prefectApiUrl="ftp://prefect.internal/api"),
     "prefectApiUrl", '"ftp://prefect.internal/api"', "self-hosted server's http(s)://"),
    ("cloud-url-without-workspace", dev_config(prefectApiUrl="https://api.prefect.cloud/api"),
     "prefectApiUrl", '"https://api.prefect.cloud/api"', "/workspaces/<workspace uuid>"),
    ("cloud-url-over-http", dev_config(prefectApiUrl=CLOUD_URL.replace("https", "http")),
     "prefectApiUrl", json.dumps(CLOUD_URL.replace("https", "http")), "Prefect Cloud's https://"),
    ("self-hosted-url-without-api", dev_config(prefectApiUrl="http://prefect.internal:4200"),
     "prefectApiUrl", '"http://prefect.internal:4200"', "[:port]/api"),
    ("partial-secret-arn",
     without(dev_config(prefectApiKeySecretArn=SECRET_ARN[:-7]), "prefectApiKey"),
     "prefectApiKeySecretArn", json.dumps(SECRET_ARN[:-7]), "<name>-<6 characters>"),
    ("auth-string-arn-not-a-secret",
     without(dev_config(prefectApiUrl="http://prefect.internal:4200/api",
                        prefectApiAuthStringSecretArn="arn:aws:s3:::bucket/auth"), "prefectApiKey"),
     "prefectApiAuthStringSecretArn", '"arn:aws:s3:::bucket/auth"', "ARN of a Secrets Manager secret"),
    ("pool-name-reserved-prefix", dev_config(workPoolName="prefect-pool"),
     "workPoolName", '"prefect-pool"', "not starting with 'prefect'"),
    ("pool-name-banned-character", dev_config(workPoolName="team/ecs"),
     "workPoolName", '"team/ecs"', "without / % & > <"),
    ("queues-not-a-list", dev_config(workQueues="default"),
     "workQueues", '"default"', "a list of strings"),
    ("queues-duplicated", dev_config(workQueues='["a", "a"]'),
     "workQueues", '["a", "a"]', "without duplicates"),
    ("queue-banned-character", dev_config(workQueues='["50%"]'),
     "workQueues", '["50%"]', "without / % & > <"),
    ("image-latest", dev_config(workerImage="prefecthq/prefect-aws:latest"),
     "workerImage", '"prefecthq/prefect-aws:latest"', "pinned by tag or digest"),
    ("image-floating-latest", dev_config(workerImage="prefecthq/prefect:3-latest"),
     "workerImage", '"prefecthq/prefect:3-latest"', "not a tag containing 'latest'"),
    ("image-untagged", dev_config(workerImage="prefecthq/prefect-aws"),
     "workerImage", '"prefecthq/prefect-aws"', "pinned by tag or digest"),
    ("cpu-not-fargate-size", dev_config(workerCpu="300"),
     "workerCpu", "300", "256, 512, 1024"),
    ("memory-not-valid-for-cpu", dev_config(workerCpu="256", workerMemory="4096"),
     "workerMemory", "4096", "with workerCpu 256, Fargate accepts 512..2048"),
    ("count-zero", dev_config(workerCount="0"),
     "workerCount", "0", "a whole number from 1 to 10"),
    ("count-not-a-number", dev_config(workerCount="two"),
     "workerCount", '"two"', "a whole number"),
    ("architecture-lowercase", dev_config(cpuArchitecture="arm64"),
     "cpuArchitecture", '"arm64"', "one of X86_64, ARM64"),
    ("capacity-provider-ec2", dev_config(capacityProvider="EC2"),
     "capacityProvider", '"EC2"', "one of FARGATE, FARGATE_SPOT"),
    ("spot-on-arm64", dev_config(capacityProvider="FARGATE_SPOT", cpuArchitecture="ARM64"),
     "capacityProvider", '"FARGATE_SPOT"', "Fargate Spot runs X86_64 tasks only"),
    ("nat-mode-unknown", dev_config(natGateways="two"),
     "natGateways", '"two"', "one of none, single, per-az"),
    ("one-az", dev_config(availabilityZoneCount="1"),
     "availabilityZoneCount", "1", "a whole number from 2 to 6"),
    ("cidr-public-range", dev_config(vpcCidr="8.8.0.0/16"),
     "vpcCidr", '"8.8.0.0/16"', "inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"),
    ("cidr-host-bits-set", dev_config(vpcCidr="10.0.0.1/16"),
     "vpcCidr", '"10.0.0.1/16"', "written with its network address"),
    ("cidr-too-large", dev_config(vpcCidr="10.0.0.0/8"),
     "vpcCidr", '"10.0.0.0/8"', "a prefix from /16 to /24"),
    ("vpc-id-malformed", dev_config(vpcId="vpc-xyz", publicSubnetIds='["subnet-0123abcd"]'),
     "vpcId", '"vpc-xyz"', "vpc- and 8 or 17 hex digits"),
    ("subnets-without-vpc", dev_config(privateSubnetIds='["subnet-0123abcd"]'),
     "privateSubnetIds", '["subnet-0123abcd"]', "only together with vpcId"),
    ("adopted-vpc-one-subnet",
     dev_config(natGateways="single", vpcId="vpc-0123abcd", privateSubnetIds='["subnet-0123abcd"]'),
     "privateSubnetIds", '["subnet-0123abcd"]', "give at least 2, in different AZs"),
    ("subnet-id-malformed",
     dev_config(vpcId="vpc-0123abcd", publicSubnetIds='["subnet-1", "subnet-2"]'),
     "publicSubnetIds", '["subnet-1", "subnet-2"]', "subnet- and 8 or 17 hex digits"),
    ("retention-not-cloudwatch-value", dev_config(logRetentionDays="10"),
     "logRetentionDays", "10", "one of 1, 3, 5, 7, 14"),
    ("policy-arn-malformed", dev_config(flowRunPolicyArns='["s3-read-only"]'),
     "flowRunPolicyArns", '["s3-read-only"]', "arn:aws:iam::<account or aws>:policy/<name>"),
    ("policy-administrator", dev_config(flowRunPolicyArns=json.dumps([ADMIN])),
     "flowRunPolicyArns", json.dumps([ADMIN]), "narrower than AdministratorAccess"),
    ("tag-without-value", dev_config(tags='["team"]'),
     "tags", '["team"]', "Key=Value entries"),
    ("tag-reserved-prefix", dev_config(tags='["aws:owner=me"]'),
     "tags", '["aws:owner=me"]', "not starting with 'aws:'"),
    ("tag-key-twice", dev_config(tags='["team=a", "team=b"]'),
     "tags", '["team=a", "team=b"]', "each key once"),
]


@pytest.mark.parametrize("config,key,shown,accepted",
                         [case[1:] for case in BAD_CONFIGS], ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_is_refused_before_any_resource_with_key_value_and_what_is_accepted(
        config, key, shown, accepted):
    assert_refused_before_any_resource(config, key, shown, accepted)


def test_bad_config_cases_are_distinct_and_at_least_twenty():
    ids = [case[0] for case in BAD_CONFIGS]
    assert len(set(ids)) == len(ids) >= 20
    assert len({case[2:] for case in BAD_CONFIGS}) == len(BAD_CONFIGS)


# Credential mistakes: the message names the keys but never shows a secret's value.

def test_missing_credential_names_the_key_and_how_to_set_it_as_a_secret():
    message, mocks = refused(without(dev_config(), "prefectApiKey"))
    assert f"{PROJECT}:prefectApiKey = null" in message
    assert "pulumi config set --secret prefectApiKey" in message
    assert mocks.resources == []


def test_key_and_secret_arn_together_are_refused_without_showing_the_key():
    message, mocks = refused(dev_config(prefectApiKeySecretArn=SECRET_ARN))
    assert f"{PROJECT}:prefectApiKey + prefectApiKeySecretArn = {SHOWN_AS_SECRET}" in message
    assert "set exactly one of" in message
    assert TEST_API_KEY not in message and mocks.resources == []


def test_key_set_without_secret_flag_is_refused_without_showing_it():
    message, mocks = refused(dev_config(), secret_keys=())
    assert f"{PROJECT}:prefectApiKey = {SHOWN_AS_SECRET}" in message
    assert "pulumi config set --secret prefectApiKey" in message
    assert TEST_API_KEY not in message and mocks.resources == []


def test_auth_string_is_refused_for_prefect_cloud_without_showing_it():
    config = without(dev_config(prefectApiAuthString="admin:hunter2"), "prefectApiKey")
    message, mocks = refused(config)
    assert f"{PROJECT}:prefectApiAuthString = {SHOWN_AS_SECRET}" in message
    assert "Prefect Cloud authenticates with an API key" in message
    assert "hunter2" not in message and mocks.resources == []


# Good configs go through and mean what they say.

def test_self_hosted_server_with_auth_string_reaches_the_container_as_that_variable():
    config = without(dev_config(prefectApiUrl=SELF_HOSTED_URL + "/",
                                prefectApiAuthString="admin:hunter2"), "prefectApiKey")
    evaluation = evaluate(config)
    container = worker_container(evaluation)
    assert [s["name"] for s in container["secrets"]] == ["PREFECT_API_AUTH_STRING"]
    assert {"name": "PREFECT_API_URL", "value": SELF_HOSTED_URL} in container["environment"]
    assert "prefect_api_auth_string_secret_arn" in evaluation.exports["workPoolJobVariables"]


def test_image_pinned_by_digest_is_accepted():
    image = "prefecthq/prefect-aws@sha256:" + "ab" * 32
    assert read_settings(dev_config(workerImage=image)).worker_image == image


def test_image_from_a_registry_with_a_port_and_a_version_tag_is_accepted():
    image = "registry.internal:5000/platform/prefect-aws:0.7.12-python3.12"
    assert read_settings(dev_config(workerImage=image)).worker_image == image


@pytest.mark.parametrize("cpu,memory", [("256", "2048"), ("512", "4096"), ("4096", "30720"),
                                        ("16384", "122880")])
def test_every_fargate_size_at_the_edge_of_the_table_is_accepted(cpu, memory):
    settings = read_settings(dev_config(workerCpu=cpu, workerMemory=memory))
    assert (settings.worker_cpu, settings.worker_memory) == (int(cpu), int(memory))


def test_user_tags_join_the_default_tags():
    tags = read_settings(dev_config(tags='["environment=dev", "team=data", "cost-center=42"]')).tags
    assert tags == {"project": PROJECT, "stack": "test", "managed-by": "pulumi",
                    "environment": "dev", "team": "data", "cost-center": "42"}
