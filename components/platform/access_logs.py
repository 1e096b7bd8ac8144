"""The stack's access-log bucket: the server ALB's access logs and the flow-code bucket's S3 server
access logs, in one private bucket per stack (`<project>-<stack>-logs-<account>`).

- Encrypted with SSE-S3 (AES256), not the stack key: Elastic Load Balancing writes access logs
  only to a bucket whose default encryption is Amazon S3-managed keys (ELB User Guide, "Access
  logs for your Application Load Balancer": SSE-KMS is not supported), and S3 server access
  logging does not deliver to a bucket whose default encryption is SSE-KMS (S3 User Guide,
  "Enabling Amazon S3 server access logging").
- Public access blocked, ACLs off (BucketOwnerEnforced; both log services are granted in the
  bucket policy, not by ACL), TLS only, and objects expire after `retention_days`.
- The policy lets each service write its own prefix only, for this account: ELB (`alb/`, as the
  region's ELB account, or the log-delivery service in regions opened since August 2022) and S3
  logging (`s3/<bucket>/`, from that bucket only).

The bucket does not log itself (a log bucket logging into itself loops), is not versioned (logs
are written once and expire) and not replicated: docs/hardening.md lists those findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.config.reader import NAMESPACE
from components.platform.aws import AwsContext, policy_document

ALB_PREFIX = "alb"
S3_PREFIX = "s3"
S3_LOGGING_SERVICE = "logging.s3.amazonaws.com"
ELB_LOG_DELIVERY_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"
ABORT_MULTIPART_DAYS = 1
# The Elastic Load Balancing account of each region opened before August 2022 (ELB User Guide,
# "Access logs for your Application Load Balancer", step 2: attach a policy to your bucket).
ELB_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "af-south-1": "098369216593", "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580", "ap-south-1": "718504428378",
    "ap-northeast-3": "383597477331", "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864", "ca-central-1": "985666609251",
    "eu-central-1": "054676820928", "eu-west-1": "156460612806", "eu-west-2": "652711504416",
    "eu-south-1": "635631232127", "eu-west-3": "009996457667", "eu-north-1": "897822967062",
    "me-south-1": "076674570225", "sa-east-1": "507241528517",
    "us-gov-west-1": "048591011584", "us-gov-east-1": "190560391635",
}


def log_bucket_name(prefix: str, account_id: str) -> str:
    return f"{prefix}-logs-{account_id}".lower()


def elb_principal(region: str, partition: str) -> dict[str, str]:
    """Who delivers ALB access logs in `region`."""
    account = ELB_ACCOUNTS.get(region)
    if account is None:
        return {"Service": ELB_LOG_DELIVERY_SERVICE}
    return {"AWS": f"arn:{partition}:iam::{account}:root"}


@dataclass(frozen=True)
class AccessLogsArgs:
    prefix: str
    context: AwsContext
    retention_days: int
    tags: Mapping[str, str]
    # The buckets whose S3 server access logs come here (each under `s3/<bucket>/`).
    s3_sources: Sequence[pulumi.Input[str]] = ()


class AccessLogs(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    # What writes into the bucket must wait for it: ELB checks the policy when logging is set.
    policy: aws.s3.BucketPolicy

    def __init__(self, name: str, args: AccessLogsArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:AccessLogs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ctx = args.context
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=ctx.account_id.apply(lambda account: log_bucket_name(args.prefix, account)),
            tags=dict(args.tags), opts=child)
        bucket = self.bucket.bucket
        public_access = owned_and_private(name, bucket, child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket,
            rules=[{
                "apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=child)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket,
            rules=[{
                "id": "expire-logs",
                "status": "Enabled",
                "filter": {"prefix": ""},
                "expiration": {"days": args.retention_days},
                "abort_incomplete_multipart_upload": {
                    "days_after_initiation": ABORT_MULTIPART_DAYS},
            }],
            opts=child)
        bucket_arn = pulumi.Output.format("arn:{0}:s3:::{1}", ctx.partition, bucket)
        everything = [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")]
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy", bucket=bucket,
            policy=policy_document([
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    # The same as "*" for AWS (IAM User Guide, "Principal": anonymous users
                    # included); moto's PutBucketLogging reads every principal as an object.
                    "Principal": {"AWS": "*"},
                    "Action": "s3:*",
                    "Resource": everything,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
                {
                    "Sid": "ElbDeliversAlbAccessLogs",
                    "Effect": "Allow",
                    "Principal": pulumi.Output.all(ctx.region, ctx.partition).apply(
                        lambda values: elb_principal(values[0], values[1])),
                    "Action": "s3:PutObject",
                    # AWS: ELB names each log object by date and load balancer under
                    # AWSLogs/<account>/, known only when it writes; the prefix pins the account.
                    "Resource": pulumi.Output.format("{0}/{1}/AWSLogs/{2}/*", bucket_arn,
                                                     ALB_PREFIX, ctx.account_id),
                },
                *({
                    "Sid": f"S3DeliversServerAccessLogs{index}",
                    "Effect": "Allow",
                    "Principal": {"Service": S3_LOGGING_SERVICE},
                    "Action": "s3:PutObject",
                    # AWS: S3 names each log object by time when it delivers; each source bucket
                    # writes its own prefix only (S3 User Guide, "Permissions for log delivery").
                    "Resource": pulumi.Output.format("{0}/{1}/{2}/*", bucket_arn, S3_PREFIX,
                                                     source),
                    # Confused deputy: only that bucket, of this account.
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": ctx.account_id},
                        "ArnLike": {"aws:SourceArn": pulumi.Output.format(
                            "arn:{0}:s3:::{1}", ctx.partition, source)},
                    },
                } for index, source in enumerate(args.s3_sources)),
            ]),
            # S3 checks a new policy against the public access block: put the block first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]))
        self.register_outputs({"bucket_name": bucket})


def owned_and_private(prefix: str, bucket: pulumi.Input[str], opts: pulumi.ResourceOptions
                      ) -> aws.s3.BucketPublicAccessBlock:
    """A bucket of the stack's own: objects owned by the bucket owner (ACLs off) and every public
    access blocked. Its `-ownership` and `-public-access` resources; the block is returned, for
    policies that must wait for it."""
    aws.s3.BucketOwnershipControls(
        f"{prefix}-ownership", bucket=bucket,
        rule={"object_ownership": "BucketOwnerEnforced"}, opts=opts)
    return aws.s3.BucketPublicAccessBlock(
        f"{prefix}-public-access", bucket=bucket,
        block_public_acls=True, block_public_policy=True,
        ignore_public_acls=True, restrict_public_buckets=True, opts=opts)
