"""Rung 2 for flow-code delivery: the repository, the bucket and their policies, replayed into moto
with the checks AWS makes that moto skips, then read back and compared with the declaration. Each
broken declaration below is one AWS would refuse; the replay must refuse it, naming the resource.

The refusals that the replay decides before its first API call run without a server (fast tier);
the ones that need what moto stored (roles, the public access block) and the read-back are slow."""

from __future__ import annotations

import copy
import json

import pytest

from tests.support import flow_code_stack
from tests.support.flow_code_stack import PUBLISHER, create_publisher
from tests.support.harness import Declared, Evaluation
from testbed.replay import Replay, ReplayError, real_exports
from testbed.replay.ecr import lifecycle_problems

# Refusals checked before any call reach no server: nothing listens here.
NOWHERE = "http://127.0.0.1:9"

REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"


@pytest.fixture(scope="module")
def published(evaluated) -> Evaluation:
    return flow_code_stack.published(evaluated)


def flow_code_part(evaluation: Evaluation) -> list[Declared]:
    """The flow-code component's resources and the two roles it grants to, in declaration order
    (every stack file is replayed whole in tests/integration/test_moto_replay.py)."""
    roles = ("iam-flow-run-execution", "iam-flow-run-task")
    # The access-log bucket receives the flow-code bucket's server access logs.
    return [r for r in evaluation.resources
            if r.name.startswith(("flow-code", "access-logs")) or r.name in roles]


def subset(evaluation: Evaluation, *types: str) -> list[Declared]:
    """The flow-code resources of these types, in declaration order, as copies a test may break."""
    return [copy.deepcopy(r) for r in evaluation.resources
            if r.type in types and r.name.startswith("flow-code")]


@pytest.mark.slow
def test_repository_and_bucket_are_stored_as_declared(moto, published):
    create_publisher(moto.url)
    replayed = Replay(moto.url).run(flow_code_part(published))
    exports = real_exports(published, replayed)
    ecr, s3 = replayed.client("ecr"), replayed.client("s3")

    created = replayed.created[(REPOSITORY, "flow-code-repository")]
    assert exports["flowImageRepositoryUrl"] == created["uri"]
    (repository,) = ecr.describe_repositories(repositoryNames=[created["name"]])["repositories"]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository["encryptionConfiguration"]["encryptionType"] == "KMS"
    stored = ecr.get_lifecycle_policy(repositoryName=created["name"])["lifecyclePolicyText"]
    assert json.loads(stored) == json.loads(published.one(LIFECYCLE).inputs["policy"])
    stored = ecr.get_repository_policy(repositoryName=created["name"])["policyText"]
    assert json.loads(stored) == json.loads(
        replayed.real(published.one(REPOSITORY_POLICY).inputs["policy"]))

    bucket = exports["flowCodeBucketName"]
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True)
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["expire-results"]["Expiration"] == {"Days": 45}
    assert rules["expire-results"]["Filter"] == {"Prefix": "results/"}
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(
        replayed.real(published.one(BUCKET_POLICY, "flow-code-bucket-policy").inputs["policy"]))
    # Its server access logs go to the stack's access-log bucket, under its own prefix.
    logging = s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]
    assert logging["TargetPrefix"] == f"s3/{bucket}/" and logging["TargetBucket"] != bucket
    assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]


@pytest.mark.slow
def test_a_publisher_that_does_not_exist_is_refused_by_both_policies(moto, published):
    """The stack's own roles exist (replayed first); the publisher role was never created."""
    with pytest.raises(ReplayError) as refused:
        Replay(moto.url).run(flow_code_part(published))
    assert refused.value.resource.type in (REPOSITORY_POLICY, BUCKET_POLICY)
    assert f"the principal {PUBLISHER} does not exist" in str(refused.value)
    moto.reset()
    bucket_only = subset(published, BUCKET, PUBLIC_ACCESS, BUCKET_POLICY)
    with pytest.raises(ReplayError, match="Invalid principal in policy") as refused:
        Replay(moto.url).run(bucket_only)
    assert refused.value.resource.type == BUCKET_POLICY


def with_lifecycle(evaluation: Evaluation, edit) -> Declared:
    (lifecycle,) = subset(evaluation, LIFECYCLE)
    policy = json.loads(lifecycle.inputs["policy"])
    edit(policy["rules"])
    lifecycle.inputs["policy"] = json.dumps(policy)
    return lifecycle


@pytest.mark.parametrize("edit, problem", [
    (lambda rules: rules[1]["selection"].pop("tagPatternList"),
     "tagStatus tagged needs tagPrefixList or tagPatternList"),
    (lambda rules: rules[1].update(rulePriority=1), "rulePriority values must be unique"),
    (lambda rules: rules[0]["selection"].pop("countUnit"),
     "countType sinceImagePushed needs countUnit days"),
    (lambda rules: rules[1]["selection"].update(countUnit="days"),
     "countType imageCountMoreThan takes no countUnit"),
    (lambda rules: rules[0]["selection"].update(tagStatus="any"),
     "a tagStatus any rule must have the highest rulePriority"),
    (lambda rules: rules[1]["selection"].update(tagPrefixList=["v"]),
     "tagPrefixList and tagPatternList exclude each other"),
    (lambda rules: rules[1].update(rulePriority=0), "rulePriority must be a whole number of 1"),
])
def test_a_lifecycle_policy_aws_would_refuse_is_refused(evaluated, edit, problem):
    with pytest.raises(ReplayError, match="Lifecycle policy validation failure") as refused:
        Replay(NOWHERE).replay_one(with_lifecycle(evaluated("dev"), edit))
    assert refused.value.resource.type == LIFECYCLE and problem in str(refused.value)


def test_the_declared_lifecycle_policy_passes_the_same_checks(evaluated):
    assert lifecycle_problems(json.loads(evaluated("dev").one(LIFECYCLE).inputs["policy"])) == []


def test_a_bucket_name_s3_would_refuse_is_refused(evaluated):
    (bucket,) = subset(evaluated("dev"), BUCKET)
    bucket.inputs["bucket"] = "Flow_Code"
    with pytest.raises(ReplayError, match="InvalidBucketName") as refused:
        Replay(NOWHERE).replay_one(bucket)
    assert refused.value.resource.name == "flow-code-bucket"


@pytest.mark.slow
def test_a_public_policy_on_a_blocked_bucket_is_refused(moto, evaluated):
    resources = subset(evaluated("dev"), BUCKET, PUBLIC_ACCESS, BUCKET_POLICY)
    policy = json.loads(resources[-1].inputs["policy"])
    policy["Statement"].append({"Sid": "Everyone", "Effect": "Allow", "Principal": "*",
                                "Action": "s3:GetObject",
                                "Resource": policy["Statement"][0]["Resource"][1]})
    resources[-1].inputs["policy"] = json.dumps(policy)
    with pytest.raises(ReplayError, match="BlockPublicPolicy"):
        Replay(moto.url).run(resources)


@pytest.mark.parametrize("edit, problem", [
    (lambda rules: rules[1]["expiration"].update(days=5.0),
     "ExpiredObjectDeleteMarker cannot be specified with Days"),
    (lambda rules: rules[0].update(id=rules[1]["id"]), "rule ids must be unique"),
    (lambda rules: rules[0]["expiration"].update(days=0.0), "must be a positive integer"),
])
def test_a_bucket_lifecycle_aws_would_refuse_is_refused(evaluated, edit, problem):
    (lifecycle,) = subset(evaluated("dev"), BUCKET_LIFECYCLE)
    edit(lifecycle.inputs["rules"])
    with pytest.raises(ReplayError) as refused:
        Replay(NOWHERE).replay_one(lifecycle)
    assert refused.value.resource.type == BUCKET_LIFECYCLE and problem in str(refused.value)


def test_a_kms_key_with_aes256_is_refused(evaluated):
    (encryption,) = subset(evaluated("dev"), ENCRYPTION)
    encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"] = {
        "sseAlgorithm": "AES256", "kmsMasterKeyId": "arn:aws:kms:us-east-1:123456789012:key/x"}
    with pytest.raises(ReplayError, match="only for aws:kms"):
        Replay(NOWHERE).replay_one(encryption)
