"""The flow-code keys: defaults, and every bad value refused with the key, the value and what is
accepted, before any resource is declared."""

import pytest

from components.config.flow_code import bucket_name_problem, repository_name_problem
from components.config.reader import ConfigError
from tests.support.harness import (RecordingMocks, evaluate, load_stack_config, read_settings,
                                  with_credentials)

PUBLISHER = "arn:aws:iam::123456789012:role/ci/flow-publisher"


def refused(stack: str = "dev", **overrides: str) -> tuple[ConfigError, RecordingMocks]:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        evaluate(with_credentials(load_stack_config(stack), **overrides), stack=stack,
                 mocks=mocks)
    return raised.value, mocks


@pytest.mark.parametrize("key, value, accepted", [
    ("flowImageRepository", "yes", "one of create, adopt, none"),
    ("flowImageRepository", "Create", "one of create, adopt, none"),
    ("flowImageRepositoryName", "Flows", "lowercase letters and digits"),
    ("flowImageRepositoryName", "flows//images", "lowercase letters and digits"),
    ("flowImageRepositoryName", "f", "2-256 characters"),
    ("flowImageRepositoryName", "flows-", "separated by single"),
    ("flowImageKeepTaggedCount", "0", "from 1 to 10000"),
    ("flowImageKeepTaggedCount", "10001", "from 1 to 10000"),
    ("flowImageKeepTaggedCount", "many", "a whole number"),
    ("flowImageUntaggedExpiryDays", "0", "from 1 to 3650"),
    ("flowImageUntaggedExpiryDays", "1.5", "a whole number"),
    ("flowPublisherRoleArn", "arn:aws:iam::123456789012:user/ci", "an IAM role ARN"),
    ("flowPublisherRoleArn", "flow-publisher", "an IAM role ARN"),
    ("flowCodeBucket", "off", "one of create, adopt, none"),
    ("flowCodeBucketName", "Flow-Code", "3-63 characters of lowercase letters"),
    ("flowCodeBucketName", "ab", "3-63 characters"),
    ("flowCodeBucketName", "x" * 64, "3-63 characters"),
    ("flowCodeBucketName", "flow_code", "3-63 characters"),
    ("flowCodeBucketName", "-flow-code", "starting and ending with a letter or digit"),
    ("flowCodeBucketName", "flow..code", "no two adjacent periods"),
    ("flowCodeBucketName", "192.168.5.4", "not formatted as an IP address"),
    ("flowCodeBucketName", "xn--flow-code", "S3 reserves them"),
    ("flowCodeBucketName", "flow-code-s3alias", "S3 reserves them"),
    ("flowResultRetentionDays", "0", "from 1 to 3650"),
    ("flowResultRetentionDays", "3651", "from 1 to 3650"),
    ("flowResultRetentionDays", "a month", "a whole number"),
])
def test_bad_flow_code_value_is_refused_before_any_resource(key, value, accepted):
    error, mocks = refused(**{key: value})
    assert error.key == f"prefect-ecs-worker:{key}"
    assert str(error).startswith(f"prefect-ecs-worker:{key} = ")
    assert value in str(error) and accepted in str(error)
    assert mocks.resources == []


@pytest.mark.parametrize("switch, name_key", [
    ("flowImageRepository", "flowImageRepositoryName"),
    ("flowCodeBucket", "flowCodeBucketName"),
])
def test_adopting_needs_the_existing_name(switch, name_key):
    error, mocks = refused(**{switch: "adopt"})
    assert error.key == f"prefect-ecs-worker:{name_key}"
    assert f"{switch} is adopt" in str(error) and mocks.resources == []


@pytest.mark.parametrize("switch, name_key, name", [
    ("flowImageRepository", "flowImageRepositoryName", "team/flows"),
    ("flowCodeBucket", "flowCodeBucketName", "team-flow-code"),
])
def test_a_name_with_the_switch_off_is_refused_as_a_contradiction(switch, name_key, name):
    error, _ = refused(**{switch: "none", name_key: name})
    assert error.key == f"prefect-ecs-worker:{name_key}"
    assert f"unset while {switch} is none" in str(error)


def test_a_stack_name_too_long_for_the_default_bucket_name_asks_for_one():
    """<project>-<stack>-flows-<12-digit account> must fit S3's 63 characters."""
    long_stack = "a-very-long-stack-name-for-buckets"
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        evaluate(with_credentials(load_stack_config("dev")), stack=long_stack, mocks=mocks)
    assert raised.value.key == "prefect-ecs-worker:flowCodeBucketName"
    assert "a name for the bucket" in str(raised.value) and "3-63 characters" in str(raised.value)
    assert mocks.resources == []
    # Naming the bucket, or not creating one, is the way out.
    named = read_settings(with_credentials(load_stack_config("dev"), flowCodeBucketName="team-flow-code"),
                          stack=long_stack)
    assert named.flow_code.bucket.name == "team-flow-code"
    read_settings(with_credentials(load_stack_config("dev"), flowCodeBucket="none"), stack=long_stack)


@pytest.mark.parametrize("name", ["abc", "flow-code.team-1", "1" * 63, "a.b-c"])
def test_names_s3_accepts_pass(name):
    assert bucket_name_problem(name) is None


@pytest.mark.parametrize("name", ["ab", "team/flows", "flows", "a" * 256, "a.b_c-d/e"])
def test_repository_names_ecr_accepts_pass(name):
    assert repository_name_problem(name) is None


def test_a_stack_name_ecr_would_refuse_in_the_default_repository_name_asks_for_one():
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        evaluate(with_credentials(load_stack_config("dev"), flowCodeBucketName="team-flow-code"),
                 stack="dev__eu", mocks=mocks)
    assert raised.value.key == "prefect-ecs-worker:flowImageRepositoryName"
    assert "the default 'prefect-ecs-worker-dev__eu-flows'" in str(raised.value)
    assert mocks.resources == []
