"""Where flow code comes from: an ECR repository for flow images and an S3 bucket for flow code
and results, each wired to the flow-run roles and nothing else.

- The repository (`flowImageRepository: create`): scan on push, immutable tags, KMS encryption, a
  lifecycle policy (keep the last N tagged images, expire untagged ones after D days), and a
  repository policy under which the flow-run execution role may pull, the publisher role
  (`flowPublisherRoleArn`) may push, and every other principal is denied a push.
- The bucket (`flowCodeBucket: create`): public access blocked, ACLs off, SSE-KMS with a bucket
  key, versioning, a policy that refuses anything but TLS 1.2+, and lifecycle rules: results
  (`results/`) expire after `flowResultRetentionDays`, old versions after 30 days, unfinished
  multipart uploads after 7.
- The flow-run execution role may pull from the repository; the flow-run task role may read and
  write the bucket (and nothing else). Adopted ones (`adopt`) get the same grants; their own
  settings stay their owner's.

Encryption uses the AWS-managed keys (`aws/ecr`, `aws/s3`) unless `kms_key_arn` names a customer
key, which then encrypts both and which the task role may use for the bucket's objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pulumi
import pulumi_aws as aws

# Image references are parsed by the policy pack's rule (stdlib only, shared with the config).
from policies.worker_rules import image_tag
from components.config.reader import NAMESPACE
from components.platform.access_logs import S3_PREFIX, owned_and_private
from components.config.flow_code import (
    CODE_PREFIX, RESULTS_PREFIX, FlowCodeSettings, default_bucket_name,
)
from components.platform.aws import AwsContext, policy_document

# What `docker pull` (and ECS, through the execution role) calls once it has a registry token.
PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                "ecr:BatchGetImage"]
# What `docker push` calls; the repository policy denies these to all but the publisher.
PUSH_ACTIONS = ["ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
                "ecr:PutImage"]
# A rollback window for flow code overwritten in place; results keep no old versions.
NONCURRENT_VERSION_DAYS = 30
ABORT_MULTIPART_DAYS = 7


@dataclass(frozen=True)
class FlowCodeArgs:
    settings: FlowCodeSettings
    # `<project>-<stack>`, for the bucket's default name.
    prefix: str
    context: AwsContext
    flow_run_execution_role_name: pulumi.Input[str]
    flow_run_execution_role_arn: pulumi.Input[str]
    flow_run_task_role_name: pulumi.Input[str]
    tags: Mapping[str, str]
    # A customer-managed key for the repository and the bucket; None: AWS-managed aws/ecr, aws/s3.
    kms_key_arn: Optional[pulumi.Input[str]] = None
    # The stack's access-log bucket (components/platform/access_logs.py): a created bucket's S3 server
    # access logs go there, under `s3/<bucket>/`, once its policy lets S3 logging write.
    access_log_bucket: Optional[pulumi.Input[str]] = None
    access_log_ready: Optional[pulumi.Resource] = None


def created_bucket_name(settings: FlowCodeSettings, prefix: str,
                        ctx: AwsContext) -> pulumi.Input[str]:
    """The name of the bucket the stack creates (`flowCodeBucket: create`): `flowCodeBucketName`,
    or `<project>-<stack>-flows-<account>`."""
    return settings.bucket.name or ctx.account_id.apply(
        lambda account: default_bucket_name(prefix, account))


def image_in_repository(image: str, repository_name: Optional[str]) -> Optional[str]:
    """The reference that puts `image` in this stack's repository, or None for an image used as
    written. `<repository name>:<tag>` and `<repository name>@<digest>` name the repository; the
    reference is `@<digest>` whenever there is one (it wins over a tag, as it does for ECS), else
    `:<tag>`. The repository URL goes before it."""
    name, tag, digest = image_tag(image)
    if name != repository_name:
        return None
    return f"@{digest}" if digest else f":{tag}" if tag is not None else None


def lifecycle_policy(keep_tagged: int, untagged_days: int) -> dict[str, Any]:
    return {"rules": [
        {
            "rulePriority": 1,
            "description": f"Expire untagged images {untagged_days} days after their push",
            "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                          "countUnit": "days", "countNumber": untagged_days},
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": f"Keep the {keep_tagged} most recent tagged images",
            "selection": {"tagStatus": "tagged", "tagPatternList": ["*"],
                          "countType": "imageCountMoreThan", "countNumber": keep_tagged},
            "action": {"type": "expire"},
        },
    ]}


class FlowCode(pulumi.ComponentResource):
    repository: Optional[aws.ecr.Repository] = None
    bucket: Optional[aws.s3.Bucket] = None
    # Set whenever the stack uses a repository / bucket, created or adopted.
    repository_name: Optional[str] = None
    repository_url: Optional[pulumi.Output[str]] = None
    bucket_name: Optional[pulumi.Output[str]] = None

    def __init__(self, name: str, args: FlowCodeArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:FlowCode", name, None, opts)
        self._name = name
        self._args = args
        settings = args.settings
        if settings.repository.mode != "none":
            self._repository()
        if settings.bucket.mode != "none":
            self._bucket()
        self.register_outputs({
            "repository_url": self.repository_url,
            "bucket_name": self.bucket_name,
        })

    # -- the repository -----------------------------------------------------------------------

    def _repository(self) -> None:
        args, ctx, settings = self._args, self._args.context, self._args.settings.repository
        child = pulumi.ResourceOptions(parent=self)
        self.repository_name = settings.name
        if settings.mode == "create":
            self.repository = aws.ecr.Repository(
                f"{self._name}-repository",
                name=settings.name,
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{
                    "encryption_type": "KMS",
                    **({"kms_key": args.kms_key_arn} if args.kms_key_arn is not None else {}),
                }],
                tags=dict(args.tags),
                opts=child,
            )
            # The URL and ARN through the resource's name, so users of them wait for it.
            name: pulumi.Input[str] = self.repository.name
        else:
            name = settings.name
        dns_suffix = aws.get_partition_output(opts=pulumi.InvokeOptions(parent=self)).dns_suffix
        self.repository_url = pulumi.Output.format(
            "{0}.dkr.ecr.{1}.{2}/{3}", ctx.account_id, ctx.region, dns_suffix, name)
        repository_arn = ctx.arn("ecr", pulumi.Output.concat("repository/", name))

        if self.repository is not None:
            aws.ecr.LifecyclePolicy(
                f"{self._name}-repository-lifecycle",
                repository=self.repository.name,
                policy=json.dumps(lifecycle_policy(settings.keep_tagged_count,
                                                   settings.untagged_expiry_days)),
                opts=child,
            )
            aws.ecr.RepositoryPolicy(
                f"{self._name}-repository-policy",
                repository=self.repository.name,
                policy=policy_document(self._repository_statements()),
                opts=child,
            )

        aws.iam.RolePolicy(
            f"{self._name}-image-pull",
            role=args.flow_run_execution_role_name,
            policy=policy_document([
                {
                    "Sid": "GetRegistryToken",
                    "Effect": "Allow",
                    "Action": "ecr:GetAuthorizationToken",
                    # AWS: ecr:GetAuthorizationToken has no resource type (the token is for the
                    # registry, not a repository), so it can only be granted on "*".
                    "Resource": "*",
                },
                {
                    "Sid": "PullFlowImages",
                    "Effect": "Allow",
                    "Action": PULL_ACTIONS,
                    "Resource": repository_arn,
                },
            ]),
            opts=child,
        )

    def _repository_statements(self) -> list[dict[str, Any]]:
        publisher = self._args.settings.repository.publisher_role_arn
        statements: list[dict[str, Any]] = [{
            "Sid": "FlowRunsPull",
            "Effect": "Allow",
            "Principal": {"AWS": self._args.flow_run_execution_role_arn},
            "Action": PULL_ACTIONS,
        }]
        deny_push: dict[str, Any] = {
            "Sid": "OnlyThePublisherPushes",
            "Effect": "Deny",
            "Principal": "*",
            "Action": PUSH_ACTIONS,
        }
        if publisher is not None:
            statements.append({
                "Sid": "PublisherPushes",
                "Effect": "Allow",
                "Principal": {"AWS": publisher},
                "Action": PUSH_ACTIONS + PULL_ACTIONS,
            })
            # aws:PrincipalArn is the role's ARN for any of its sessions.
            deny_push["Condition"] = {"ArnNotEquals": {"aws:PrincipalArn": publisher}}
        statements.append(deny_push)
        return statements

    # -- the bucket ---------------------------------------------------------------------------

    def _bucket(self) -> None:
        args, ctx, settings = self._args, self._args.context, self._args.settings.bucket
        child = pulumi.ResourceOptions(parent=self)
        if settings.mode == "create":
            bucket_name = created_bucket_name(args.settings, args.prefix, ctx)
            self.bucket = aws.s3.Bucket(
                f"{self._name}-bucket", bucket=bucket_name, tags=dict(args.tags), opts=child)
            self.bucket_name = self.bucket.bucket
        else:
            # Adopting requires the name (flow_code_settings refuses adopt without one).
            self.bucket_name = pulumi.Output.from_input(str(settings.name))
        bucket_arn = pulumi.Output.format("arn:{0}:s3:::{1}", ctx.partition, self.bucket_name)
        objects_arn = pulumi.Output.concat(bucket_arn, "/*")

        if self.bucket is not None:
            self._bucket_configuration(self.bucket, bucket_arn, objects_arn)

        statements: list[dict[str, Any]] = [
            {
                "Sid": "ListFlowCodeBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": bucket_arn,
            },
            {
                "Sid": "ReadWriteFlowCodeAndResults",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                           "s3:AbortMultipartUpload"],
                # Flows choose their object keys at run time (code folders, result hashes), so
                # the object part is "*"; the bucket part pins this bucket.
                "Resource": objects_arn,
            },
        ]
        if args.kms_key_arn is not None:
            statements.append({
                "Sid": "UseTheBucketKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": args.kms_key_arn,
            })
        aws.iam.RolePolicy(
            f"{self._name}-bucket-access",
            role=args.flow_run_task_role_name,
            policy=policy_document(statements),
            opts=child,
        )

    def _bucket_configuration(self, created: aws.s3.Bucket, bucket_arn: pulumi.Output[str],
                              objects_arn: pulumi.Output[str]) -> None:
        args, settings = self._args, self._args.settings
        child = pulumi.ResourceOptions(parent=self)
        bucket = created.bucket
        public_access = owned_and_private(f"{self._name}-bucket", bucket, child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{self._name}-bucket-encryption", bucket=bucket,
            rules=[{  # type: ignore[list-item]
                "apply_server_side_encryption_by_default": {
                    "sse_algorithm": "aws:kms",
                    **({"kms_master_key_id": args.kms_key_arn}
                       if args.kms_key_arn is not None else {}),
                },
                # One data key per bucket instead of a KMS call per object.
                "bucket_key_enabled": True,
            }],
            opts=child)
        versioning = aws.s3.BucketVersioning(
            f"{self._name}-bucket-versioning", bucket=bucket,
            versioning_configuration={"status": "Enabled"}, opts=child)
        aws.s3.BucketLifecycleConfiguration(
            f"{self._name}-bucket-lifecycle", bucket=bucket,
            rules=[
                {
                    "id": "expire-results",
                    "status": "Enabled",
                    "filter": {"prefix": RESULTS_PREFIX},
                    "expiration": {"days": settings.bucket.result_retention_days},
                    "noncurrent_version_expiration": {"noncurrent_days": 1},
                },
                {
                    "id": "expire-old-versions",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"expired_object_delete_marker": True},
                    "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSION_DAYS},
                    "abort_incomplete_multipart_upload": {
                        "days_after_initiation": ABORT_MULTIPART_DAYS},
                },
            ],
            # Noncurrent-version rules mean something once versioning is on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))

        everything = [bucket_arn, objects_arn]
        statements: list[dict[str, Any]] = [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": everything,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "DenyTlsBelow12",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": everything,
                "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
            },
        ]
        publisher = settings.repository.publisher_role_arn
        if publisher is not None:
            statements += [
                {
                    "Sid": "PublisherWritesFlowCode",
                    "Effect": "Allow",
                    "Principal": {"AWS": publisher},
                    "Action": ["s3:PutObject", "s3:GetObject"],
                    # AWS: S3 grants objects by key, and flow code is any key under flows/ of
                    # this bucket, so the object part ends in "*".
                    "Resource": pulumi.Output.concat(bucket_arn, "/", CODE_PREFIX, "*"),
                },
                {
                    "Sid": "PublisherListsFlowCode",
                    "Effect": "Allow",
                    "Principal": {"AWS": publisher},
                    "Action": "s3:ListBucket",
                    "Resource": bucket_arn,
                    "Condition": {"StringLike": {"s3:prefix": [f"{CODE_PREFIX}*"]}},
                },
            ]
        aws.s3.BucketPolicy(
            f"{self._name}-bucket-policy", bucket=bucket, policy=policy_document(statements),
            # S3 checks a new policy against the public access block: put the block first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]))
        if args.access_log_bucket is not None:
            # Who read or wrote which object, and from where (CIS AWS 3.6 / checkov CKV_AWS_18).
            # Server access logs rather than CloudTrail data events: delivery is free (only the
            # log bucket's storage), where data events cost $0.10 per 100,000 requests.
            aws.s3.BucketLogging(
                f"{self._name}-bucket-logging", bucket=bucket,
                target_bucket=args.access_log_bucket,
                target_prefix=pulumi.Output.concat(S3_PREFIX, "/", bucket, "/"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[
                    r for r in (args.access_log_ready,) if r is not None]))

    # -- for the stack ------------------------------------------------------------------------

    def flow_run_image(self, image: str) -> pulumi.Input[str]:
        """`flowRunImage` as the job template's default: see `image_in_repository`."""
        if self.repository_url is None:
            return image
        reference = image_in_repository(image, self.repository_name)
        return image if reference is None else pulumi.Output.concat(self.repository_url, reference)

    def exports(self) -> dict[str, Any]:
        return {
            **({"flowImageRepositoryUrl": self.repository_url}
               if self.repository_url is not None else {}),
            **({"flowCodeBucketName": self.bucket_name} if self.bucket_name is not None else {}),
        }
