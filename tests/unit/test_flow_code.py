"""The flow-code repository and bucket as declared: secure settings, lifecycle from config, who may
pull, push, read and write, the switches and adoption, and the pool's default image."""

from __future__ import annotations

import ast
import json

import pulumi
import pytest

from components.platform.flow_code import (
    PULL_ACTIONS, PUSH_ACTIONS, FlowCode, FlowCodeArgs, image_in_repository,
)
from components.config.flow_code import (
    FlowCodeBucketSettings, FlowCodeSettings, FlowImageSettings,
)
from components.platform.aws import AwsContext
from tests.support import flow_code_stack
from tests.support.harness import Evaluation
from tests.support.flow_code_stack import PUBLISHER
from tests.support.harness import ACCOUNT, REGION, ROOT, RecordingMocks, policy, stack_names

REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
PUBLIC_ACCESS = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
INLINE = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
FLOW_CODE_TYPES = {REPOSITORY, LIFECYCLE, REPOSITORY_POLICY, BUCKET, BUCKET_POLICY, PUBLIC_ACCESS,
                   ENCRYPTION, VERSIONING, BUCKET_LIFECYCLE, OWNERSHIP}


def flow_code_only(evaluation: Evaluation) -> Evaluation:
    """The flow-code component's resources (the stack's access-log bucket is another bucket)."""
    return Evaluation([r for r in evaluation.resources if r.name.startswith("flow-code")],
                      evaluation.calls, evaluation.exports)


def as_list(value):
    return value if isinstance(value, list) else [value]


def role_name(evaluation, export: str) -> str:
    return evaluation.exports[export].rsplit("/", 1)[1]


def statements(resource) -> dict[str, dict]:
    return {s["Sid"]: s for s in policy(resource)["Statement"]}


@pytest.fixture(scope="module")
def published(evaluated):
    """staging with a publisher and lifecycle values of its own (tests/support/flow_code_stack.py)."""
    return flow_code_stack.published(evaluated)


# --- the repository -----------------------------------------------------------------------------

@pytest.mark.parametrize("stack", stack_names())
def test_every_stack_has_a_scanned_immutable_kms_encrypted_repository(evaluated, stack):
    repository = evaluated(stack).one(REPOSITORY).inputs
    assert repository["name"] == f"prefect-ecs-worker-{stack}-flows"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
    assert evaluated(stack).exports["flowImageRepositoryUrl"] == (
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/prefect-ecs-worker-{stack}-flows")


def test_lifecycle_keeps_the_last_n_tagged_and_expires_untagged_after_d_days(published):
    rules = json.loads(published.one(LIFECYCLE).inputs["policy"])["rules"]
    by_status = {r["selection"]["tagStatus"]: r for r in rules}
    assert by_status["tagged"]["selection"] == {
        "tagStatus": "tagged", "tagPatternList": ["*"], "countType": "imageCountMoreThan",
        "countNumber": 12}
    assert by_status["untagged"]["selection"] == {
        "tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
        "countNumber": 3}
    assert all(r["action"] == {"type": "expire"} for r in rules)
    assert sorted(r["rulePriority"] for r in rules) == [1, 2]


def test_only_the_publisher_may_push_and_the_flow_run_execution_role_may_pull(published):
    document = statements(published.one(REPOSITORY_POLICY))
    execution_role = published.exports["flowRunExecutionRoleArn"]
    allows = [s for s in document.values() if s["Effect"] == "Allow"]
    assert {s["Principal"]["AWS"] for s in allows} == {execution_role, PUBLISHER}
    assert document["FlowRunsPull"]["Principal"] == {"AWS": execution_role}
    assert set(as_list(document["FlowRunsPull"]["Action"])) == set(PULL_ACTIONS)
    assert document["PublisherPushes"]["Principal"] == {"AWS": PUBLISHER}
    assert set(PUSH_ACTIONS) <= set(document["PublisherPushes"]["Action"])
    # An identity policy elsewhere in the account (an admin's ecr:*) cannot push either.
    deny = document["OnlyThePublisherPushes"]
    assert (deny["Effect"], deny["Principal"]) == ("Deny", "*")
    assert set(deny["Action"]) == set(PUSH_ACTIONS)
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": PUBLISHER}}
    # Pulling is all the execution role gets: no push action anywhere but the publisher's.
    for statement in allows:
        if statement["Principal"]["AWS"] != PUBLISHER:
            assert not set(as_list(statement["Action"])) & set(PUSH_ACTIONS)


def test_without_a_publisher_nobody_may_push(evaluated):
    document = statements(evaluated("dev").one(REPOSITORY_POLICY))
    assert set(document) == {"FlowRunsPull", "OnlyThePublisherPushes"}
    assert "Condition" not in document["OnlyThePublisherPushes"]


def test_flow_run_execution_role_may_pull_this_repository_only(evaluated):
    evaluation = evaluated("prod")
    pull = evaluation.one(INLINE, "flow-code-image-pull")
    assert pull.inputs["role"] == role_name(evaluation, "flowRunExecutionRoleArn")
    document = statements(pull)
    assert document["GetRegistryToken"]["Action"] == "ecr:GetAuthorizationToken"
    assert document["GetRegistryToken"]["Resource"] == "*"
    assert set(document["PullFlowImages"]["Action"]) == set(PULL_ACTIONS)
    assert document["PullFlowImages"]["Resource"] == (
        f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/prefect-ecs-worker-prod-flows")


# --- the bucket ---------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", stack_names())
def test_every_stack_has_a_private_encrypted_versioned_bucket(evaluated, stack):
    evaluation = evaluated(stack)
    name = f"prefect-ecs-worker-{stack}-flows-{ACCOUNT}"
    assert flow_code_only(evaluation).one(BUCKET).inputs["bucket"] == name
    assert evaluation.exports["flowCodeBucketName"] == name
    block = flow_code_only(evaluation).one(PUBLIC_ACCESS).inputs
    assert {k: block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                  "restrictPublicBuckets")} == dict.fromkeys(
        ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True)
    assert flow_code_only(evaluation).one(OWNERSHIP).inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    (rule,) = flow_code_only(evaluation).one(ENCRYPTION).inputs["rules"]
    assert rule == {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"},
                    "bucketKeyEnabled": True}
    assert flow_code_only(evaluation).one(VERSIONING).inputs["versioningConfiguration"] == {"status": "Enabled"}
    for type_ in FLOW_CODE_TYPES - {REPOSITORY, LIFECYCLE, REPOSITORY_POLICY, BUCKET}:
        assert flow_code_only(evaluation).one(type_).inputs["bucket"] == name, type_


@pytest.mark.parametrize("stack", stack_names())
def test_the_flow_code_bucket_logs_its_requests_to_the_stacks_log_bucket(evaluated, stack):
    evaluation = evaluated(stack)
    logging = evaluation.one("aws:s3/bucketLogging:BucketLogging").inputs
    name = evaluation.exports["flowCodeBucketName"]
    log_bucket = evaluation.one(BUCKET, "access-logs-bucket").inputs["bucket"]
    assert (logging["bucket"], logging["targetBucket"]) == (name, log_bucket) and name != log_bucket
    assert logging["targetPrefix"] == f"s3/{name}/"
    statements = {s["Sid"]: s for s in json.loads(evaluation.one(
        BUCKET_POLICY, "access-logs-policy").inputs["policy"])["Statement"]}
    delivery = statements["S3DeliversServerAccessLogs0"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT},
                                     "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{name}"}}
    assert delivery["Resource"] == f"arn:aws:s3:::{log_bucket}/s3/{name}/*"
    assert [s for s in statements if s.startswith("S3Delivers")] == ["S3DeliversServerAccessLogs0"]


def test_bucket_refuses_anything_but_tls(evaluated):
    evaluation = evaluated("prod")
    name = evaluation.exports["flowCodeBucketName"]
    document = statements(flow_code_only(evaluation).one(BUCKET_POLICY))
    for sid, condition in (("DenyInsecureTransport", {"Bool": {"aws:SecureTransport": "false"}}),
                           ("DenyTlsBelow12", {"NumericLessThan": {"s3:TlsVersion": "1.2"}})):
        deny = document[sid]
        assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "s3:*")
        assert deny["Resource"] == [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]
        assert deny["Condition"] == condition
    assert [s for s in document.values() if s["Effect"] == "Allow"] == []


def test_publisher_may_write_flow_code_only_under_flows(published):
    name = published.exports["flowCodeBucketName"]
    document = statements(flow_code_only(published).one(BUCKET_POLICY))
    allows = [s for s in document.values() if s["Effect"] == "Allow"]
    assert {s["Principal"]["AWS"] for s in allows} == {PUBLISHER}
    assert document["PublisherWritesFlowCode"]["Resource"] == f"arn:aws:s3:::{name}/flows/*"
    assert document["PublisherListsFlowCode"]["Condition"] == {
        "StringLike": {"s3:prefix": ["flows/*"]}}


def test_results_expire_after_the_configured_days_and_old_versions_go_too(published):
    rules = {r["id"]: r for r in flow_code_only(published).one(BUCKET_LIFECYCLE).inputs["rules"]}
    results = rules["expire-results"]
    assert results["filter"] == {"prefix": "results/"} and results["status"] == "Enabled"
    assert results["expiration"] == {"days": 45}
    everything = rules["expire-old-versions"]
    assert everything["filter"] == {"prefix": ""}
    assert everything["noncurrentVersionExpiration"] == {"noncurrentDays": 30}
    assert everything["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}


def test_flow_run_task_role_may_read_and_write_this_bucket_and_nothing_else(evaluated):
    evaluation = evaluated("prod")
    task_role = role_name(evaluation, "flowRunTaskRoleArn")
    name = evaluation.exports["flowCodeBucketName"]
    (grant,) = [r for r in evaluation.of_type(INLINE) if r.inputs["role"] == task_role]
    assert not [r for r in evaluation.of_type(ATTACHMENT) if r.inputs["role"] == task_role]
    document = statements(grant)
    resources = {res for s in document.values() for res in as_list(s["Resource"])}
    assert resources == {f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"}
    assert {"s3:GetObject", "s3:PutObject"} <= set(document["ReadWriteFlowCodeAndResults"]["Action"])
    assert "s3:ListBucket" in document["ListFlowCodeBucket"]["Action"]
    assert all(a.startswith("s3:") and "*" not in a
               for s in document.values() for a in as_list(s["Action"]))
    # The execution role, not the task role, pulls images.
    assert "ecr:" not in json.dumps(document)


# --- switches, adoption, the pool's image -------------------------------------------------------

def test_both_switches_off_declare_nothing_grant_nothing_export_nothing(evaluated):
    evaluation = evaluated("dev", flowImageRepository="none", flowCodeBucket="none")
    assert not {r.type for r in evaluation.resources} & FLOW_CODE_TYPES
    assert not [r for r in evaluation.of_type(INLINE) if r.name.startswith("flow-code")]
    assert not {"flowImageRepositoryUrl", "flowCodeBucketName"} & set(evaluation.exports)


def test_adopted_repository_and_bucket_are_granted_not_managed(evaluated):
    evaluation = evaluated("dev", flowImageRepository="adopt", flowImageRepositoryName="team/flows",
                           flowCodeBucket="adopt", flowCodeBucketName="team-flow-code")
    assert not {r.type for r in evaluation.resources} & FLOW_CODE_TYPES
    assert evaluation.exports["flowImageRepositoryUrl"] == (
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/flows")
    assert evaluation.exports["flowCodeBucketName"] == "team-flow-code"
    pull = statements(evaluation.one(INLINE, "flow-code-image-pull"))
    assert pull["PullFlowImages"]["Resource"] == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/flows"
    access = statements(evaluation.one(INLINE, "flow-code-bucket-access"))
    assert access["ReadWriteFlowCodeAndResults"]["Resource"] == "arn:aws:s3:::team-flow-code/*"


def test_a_named_bucket_is_created_under_that_name(evaluated):
    evaluation = evaluated("dev", flowCodeBucketName="team-flow-code")
    assert flow_code_only(evaluation).one(BUCKET).inputs["bucket"] == "team-flow-code"


REPOSITORY_NAME = "prefect-ecs-worker-dev-flows"


@pytest.mark.parametrize("image, reference", [
    (f"{REPOSITORY_NAME}:2026.11.28", ":2026.11.28"),
    (f"{REPOSITORY_NAME}@sha256:" + "a" * 64, "@sha256:" + "a" * 64),
    # A digest pins the image; the tag beside it is a label.
    (f"{REPOSITORY_NAME}:2026.11.28@sha256:" + "b" * 64, "@sha256:" + "b" * 64),
    # Any other image is used as written.
    ("prefecthq/prefect:3.9.1-python3.12", None),
    (f"ghcr.io/team/{REPOSITORY_NAME}:1", None),
    (REPOSITORY_NAME, None),
])
def test_flow_run_image_may_name_the_repository_by_tag(image, reference):
    assert image_in_repository(image, REPOSITORY_NAME) == reference
    assert image_in_repository(image, None) is None


def test_the_pools_image_is_the_repository_url_with_the_reference(evaluated):
    image = f"{REPOSITORY_NAME}:2026.11.28@sha256:" + "b" * 64
    evaluation = evaluated("dev", flowRunImage=image)
    pinned = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY_NAME}@sha256:" + "b" * 64
    assert evaluation.exports["workPoolJobVariables"]["image"] == pinned
    assert evaluation.exports["flowImageRepositoryUrl"] + "@sha256:" + "b" * 64 == pinned


def test_an_adopted_repository_named_by_tag_is_the_pools_image_too(evaluated):
    evaluation = evaluated("dev", flowImageRepository="adopt", flowImageRepositoryName="team/flows",
                           flowRunImage="team/flows:v3")
    assert evaluation.exports["workPoolJobVariables"]["image"] == (
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/flows:v3")


def test_the_repository_name_means_docker_hub_once_the_repository_is_off(evaluated):
    image = "prefect-ecs-worker-dev-flows:v1"
    evaluation = evaluated("dev", flowImageRepository="none", flowRunImage=image)
    assert evaluation.exports["workPoolJobVariables"]["image"] == image


# --- a customer key later: one argument ---------------------------------------------------------

KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def declared_with_key() -> RecordingMocks:
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="prefect-ecs-worker", stack="keyed", preview=False)

    @pulumi.runtime.test
    def run():
        context = AwsContext.current(pulumi.InvokeOptions())
        settings = FlowCodeSettings(
            FlowImageSettings("create", "flows", 10, 7, None),
            FlowCodeBucketSettings("create", "keyed-flow-code", 30))
        FlowCode("flow-code", FlowCodeArgs(
            settings, "prefect-ecs-worker-keyed", context, "exec-role",
            f"arn:aws:iam::{ACCOUNT}:role/exec-role", "task-role", {}, kms_key_arn=KEY_ARN))
        return pulumi.Output.from_input(None)

    run()
    return mocks


def test_a_customer_key_encrypts_both_and_the_task_role_may_use_it():
    mocks = declared_with_key()
    by_type = {r.type: r for r in mocks.resources}
    assert by_type[REPOSITORY].inputs["encryptionConfigurations"] == [
        {"encryptionType": "KMS", "kmsKey": KEY_ARN}]
    (rule,) = by_type[ENCRYPTION].inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms",
                                                         "kmsMasterKeyId": KEY_ARN}
    access = next(r for r in mocks.resources if r.name == "flow-code-bucket-access")
    key_use = statements(access)["UseTheBucketKey"]
    assert key_use["Resource"] == KEY_ARN
    assert set(key_use["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}


# --- the source ---------------------------------------------------------------------------------

SOURCE = (ROOT / "components" / "platform" / "flow_code.py").read_text()


def test_no_resource_is_declared_inside_an_apply():
    tree = ast.parse(SOURCE)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "apply":
            inner = [n for arg in node.args for n in ast.walk(arg)
                     if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute)
                     and getattr(n.value.value, "id", None) == "aws"]
            assert inner == [], ast.unparse(node)
