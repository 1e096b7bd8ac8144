"""Replay handlers for an S3 bucket and its configuration resources (Pulumi AWS v7: `Bucket`, and one
resource per configuration, each calling one Put* API).

moto checks a bucket name's length only and stores encryption, lifecycle and policy documents
largely as given. AWS also refuses, and these handlers check:
- a bucket name outside S3's naming rules (S3 User Guide, "General purpose bucket naming rules";
  the rule lives in components/config/flow_code.py, which the config checks use too);
- a bucket policy naming a principal that does not exist, or a public policy while the bucket's
  public access block has BlockPublicPolicy (S3 User Guide, "Blocking public access", "The meaning
  of public");
- a KMS key with a non-KMS algorithm (PutBucketEncryption);
- versioning states other than Enabled / Suspended (PutBucketVersioning);
- lifecycle rules with duplicate or over-long ids, no action, non-positive days, or Days together
  with ExpiredObjectDeleteMarker (PutBucketLifecycleConfiguration);
- server access logging into a bucket that does not exist, into itself, or into one whose default
  encryption is SSE-KMS (PutBucketLogging; S3 User Guide, "Enabling Amazon S3 server access
  logging": the destination must use SSE-S3).
"""

from __future__ import annotations

import json
from typing import Any

from components.config.flow_code import bucket_name_problem
from tools.mock_engine import Declared
from testbed.replay.appautoscaling import _api_fields
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError, aws_tags
from testbed.replay.resource_policy import check_resource_policy

POLICY_REFUSAL = "MalformedPolicy: Invalid principal in policy"
SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")
OWNERSHIP = ("BucketOwnerPreferred", "ObjectWriter", "BucketOwnerEnforced")
LIFECYCLE_ACTIONS = ("Expiration", "Transitions", "NoncurrentVersionExpiration",
                     "NoncurrentVersionTransitions", "AbortIncompleteMultipartUpload")
MAX_RULES, MAX_ID = 1000, 255


def s3_bucket(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    name = inputs.require("bucket")
    problem = bucket_name_problem(name)
    if problem:
        raise ReplayError(resource, f"InvalidBucketName: {name!r}: {problem}")
    s3 = replay.client("s3")
    request: dict[str, Any] = {"Bucket": name}
    if replay.region != "us-east-1":
        request["CreateBucketConfiguration"] = {"LocationConstraint": replay.region}
    inputs.copy(request, {"objectLockEnabled": "ObjectLockEnabledForBucket"})
    s3.create_bucket(**request)
    tags = aws_tags(inputs.get("tags"))
    if tags:
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags})
    # Applies when the bucket is deleted (empty it first), not at create.
    inputs.engine_side("forceDestroy")
    replay.map(resource.id, name)
    return {"name": name}


def s3_public_access_block(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    configuration = {key[0].upper() + key[1:]: bool(inputs.get(key, False)) for key in flags}
    bucket = inputs.require("bucket")
    replay.client("s3").put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration=configuration)
    return {"bucket": bucket, **configuration}


def s3_ownership_controls(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    ownership = inputs.require("rule").get("objectOwnership")
    if ownership not in OWNERSHIP:
        raise ReplayError(resource, f"MalformedXML: objectOwnership {ownership!r} is not one of "
                                    f"{', '.join(OWNERSHIP)}")
    bucket = inputs.require("bucket")
    replay.client("s3").put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": ownership}]})
    return {"bucket": bucket}


def s3_encryption(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    rules = []
    for rule in inputs.require("rules"):
        default = rule.get("applyServerSideEncryptionByDefault") or {}
        algorithm, key = default.get("sseAlgorithm"), default.get("kmsMasterKeyId")
        if algorithm not in SSE_ALGORITHMS:
            raise ReplayError(resource, f"MalformedXML: sseAlgorithm {algorithm!r}")
        if key and not algorithm.startswith("aws:kms"):
            raise ReplayError(resource, "InvalidArgument: a KMSMasterKeyID is only for aws:kms "
                                        "or aws:kms:dsse")
        api_rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": algorithm, **({"KMSMasterKeyID": key} if key else {})}}
        if rule.get("bucketKeyEnabled") is not None:
            api_rule["BucketKeyEnabled"] = bool(rule["bucketKeyEnabled"])
        rules.append(api_rule)
    bucket = inputs.require("bucket")
    replay.client("s3").put_bucket_encryption(
        Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
    return {"bucket": bucket}


def s3_versioning(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    configuration = inputs.require("versioningConfiguration")
    status = configuration.get("status")
    # The provider takes "Disabled" for a bucket that never had versioning, and calls nothing.
    if status not in ("Enabled", "Suspended"):
        raise ReplayError(resource, f"MalformedXML: versioning status {status!r} is not Enabled "
                                    f"or Suspended")
    request: dict[str, Any] = {"Status": status}
    if configuration.get("mfaDelete"):
        request["MFADelete"] = configuration["mfaDelete"]
    bucket = inputs.require("bucket")
    replay.client("s3").put_bucket_versioning(Bucket=bucket, VersioningConfiguration=request)
    return {"bucket": bucket}


def lifecycle_rule(resource: Declared, rule: dict[str, Any]) -> dict[str, Any]:
    api = _api_fields(rule)
    api["ID"] = api.pop("Id", None)
    if api["ID"] is None:
        api.pop("ID")
    elif len(api["ID"]) > MAX_ID:
        raise ReplayError(resource, f"InvalidArgument: rule id longer than {MAX_ID} characters")
    if api.get("Status") not in ("Enabled", "Disabled"):
        raise ReplayError(resource, f"MalformedXML: rule status {api.get('Status')!r}")
    if not any(api.get(action) for action in LIFECYCLE_ACTIONS):
        raise ReplayError(resource, f"InvalidRequest: rule {api.get('ID')!r} has no action")
    expiration = api.get("Expiration") or {}
    if expiration.get("ExpiredObjectDeleteMarker") and ("Days" in expiration
                                                        or "Date" in expiration):
        raise ReplayError(resource, "MalformedXML: ExpiredObjectDeleteMarker cannot be specified "
                                    "with Days or Date in a Lifecycle Expiration Policy")
    for value, what in ((expiration.get("Days"), "Expiration Days"),
                        ((api.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays"),
                         "NoncurrentDays"),
                        ((api.get("AbortIncompleteMultipartUpload") or {}).get(
                            "DaysAfterInitiation"), "DaysAfterInitiation")):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ReplayError(resource, f"InvalidArgument: {what} must be a positive integer, "
                                        f"not {value!r}")
    return api


def s3_lifecycle(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    rules = [lifecycle_rule(resource, rule) for rule in inputs.require("rules")]
    ids = [rule.get("ID") for rule in rules if rule.get("ID")]
    if len(set(ids)) != len(ids):
        raise ReplayError(resource, f"InvalidArgument: rule ids must be unique: {ids}")
    if not 1 <= len(rules) <= MAX_RULES:
        raise ReplayError(resource, f"MalformedXML: 1 to {MAX_RULES} rules, not {len(rules)}")
    bucket = inputs.require("bucket")
    replay.client("s3").put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    return {"bucket": bucket}


def is_public(document: dict[str, Any]) -> bool:
    """S3's "meaning of public", for what this stack can write: an Allow to everyone ("*") with no
    condition that fixes the caller (a source ARN, account, VPC endpoint or IP)."""
    for statement in document.get("Statement", []):
        principal = statement.get("Principal")
        everyone = principal == "*" or (isinstance(principal, dict)
                                        and "*" in ([principal.get("AWS")]
                                                    if isinstance(principal.get("AWS"), str)
                                                    else principal.get("AWS") or []))
        if statement.get("Effect") == "Allow" and everyone and not statement.get("Condition"):
            return True
    return False


def s3_bucket_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    text, bucket = inputs.require("policy"), inputs.require("bucket")
    check_resource_policy(replay, resource, text, POLICY_REFUSAL)
    s3 = replay.client("s3")
    try:
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except s3.exceptions.ClientError:
        block = {}
    if block.get("BlockPublicPolicy") and is_public(json.loads(text)):
        raise ReplayError(resource, "AccessDenied: the bucket's public access block refuses a "
                                    "public policy (BlockPublicPolicy)")
    s3.put_bucket_policy(Bucket=bucket, Policy=text)
    return {"bucket": bucket}


def s3_logging(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    bucket, target = inputs.require("bucket"), inputs.require("targetBucket")
    prefix = inputs.get("targetPrefix") or ""
    if target == bucket:
        raise ReplayError(resource, "InvalidTargetBucketForLogging: a bucket logging into "
                                    "itself logs its own log writes without end")
    s3 = replay.client("s3")
    try:
        rules = s3.get_bucket_encryption(Bucket=target)[
            "ServerSideEncryptionConfiguration"]["Rules"]
    except s3.exceptions.ClientError as error:
        code = error.response["Error"]["Code"]
        if code == "NoSuchBucket":
            raise ReplayError(resource, f"InvalidTargetBucketForLogging: {target!r} does not "
                                        "exist") from error
        rules = []
    algorithms = {r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules}
    if any(a.startswith("aws:kms") for a in algorithms):
        raise ReplayError(resource, f"InvalidTargetBucketForLogging: {target!r} encrypts with "
                                    "SSE-KMS by default; server access logs need SSE-S3")
    s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={"LoggingEnabled": {
        "TargetBucket": target, "TargetPrefix": prefix}})
    return {"bucket": bucket, "target_bucket": target, "target_prefix": prefix}


HANDLERS.update({
    "aws:s3/bucketLogging:BucketLogging": s3_logging,
    "aws:s3/bucket:Bucket": s3_bucket,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": s3_public_access_block,
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": s3_ownership_controls,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
        s3_encryption,
    "aws:s3/bucketVersioning:BucketVersioning": s3_versioning,
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": s3_lifecycle,
    "aws:s3/bucketPolicy:BucketPolicy": s3_bucket_policy,
})
