"""The stack's one customer managed KMS key, and the key policy statements of each service using it.

One key per stack (a key costs $1 a month): the Prefect credential secret, the log groups and the
alarm topic are all encrypted with it. Its policy is composed of one statement list per use, so
another component adds its own (an S3 bucket, an ECR repository, a database) by passing more
statements to `StackKey.set_policy`; `StackKey.arn` is the key to encrypt with.

- The account administers the key through IAM: the root statement names administration actions
  only (AWS's lockout safety check needs `kms:PutKeyPolicy` there). Using the key is granted per
  service, each grant with a condition that pins the service and the resource: IAM alone, even
  `kms:*`, never lets a principal use the key outside Secrets Manager for the stack's secret.
- The key policy is its own resource (`aws.kms.KeyPolicy`): the roles it names need the secret's
  ARN, and the secret needs the key, so the key starts with AWS's default policy and this one
  replaces it once the roles exist (AWS refuses a policy naming a principal that does not exist).
  `arn_after_policy` is the key's ARN carrying a dependency on that policy: CloudWatch Logs checks
  the key policy when a log group is associated with the key, so log groups take that one.
- `retain`: `pulumi destroy` leaves the key in the account (Pulumi's `retainOnDelete`) instead of
  scheduling its deletion, for stacks whose database leaves a final snapshot and automated
  backups encrypted with it: once a key is deleted, nothing it encrypted can be read again. Its
  alias is deleted all the same, so the next `pulumi up` of the stack creates its own key and alias.
  Deleting a retained key on purpose: docs/self-hosted-server.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.config.reader import NAMESPACE
from components.platform.aws import AwsContext
from policies.worker_rules import SSM_SESSION_CONTEXT

Statement = Mapping[str, Any]

# What administering the key takes, and nothing that uses it: no Encrypt, Decrypt, ReEncrypt or
# GenerateDataKey, and no CreateGrant (a grant would let an IAM principal hand itself Decrypt).
ADMINISTRATION_ACTIONS = (
    "kms:Describe*", "kms:List*", "kms:Get*", "kms:PutKeyPolicy", "kms:CreateAlias",
    "kms:UpdateAlias", "kms:DeleteAlias", "kms:UpdateKeyDescription", "kms:EnableKey",
    "kms:DisableKey", "kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:RotateKeyOnDemand",
    "kms:TagResource", "kms:UntagResource", "kms:RevokeGrant", "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
)
# What CloudWatch Logs does with a log group's key (AWS: encrypt-log-data-kms.html).
LOGS_ACTIONS = ("kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                "kms:Describe*")


@dataclass(frozen=True)
class StackKeyArgs:
    prefix: str
    tags: Mapping[str, str]
    context: AwsContext
    # Kept by pulumi destroy: what it encrypted outlives the stack (a database's final snapshot).
    retain: bool


def administration_statement(ctx: AwsContext) -> dict[str, Any]:
    return {
        "Sid": "AccountAdministersKeyThroughIam",
        "Effect": "Allow",
        "Principal": {"AWS": pulumi.Output.format("arn:{0}:iam::{1}:root", ctx.partition,
                                                  ctx.account_id)},
        "Action": list(ADMINISTRATION_ACTIONS),
        # AWS: in a key policy "Resource" is always "*", which means this key.
        "Resource": "*",
    }


def secrets_manager_statements(ctx: AwsContext, reader_role_arns: Sequence[pulumi.Input[str]],
                               secret_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """The execution roles decrypt the secret through this key policy alone, and only when
    Secrets Manager asks on their behalf for this secret (GetSecretValue at task start).

    The account's other principals may use the key for this secret through Secrets Manager only
    if an IAM policy also grants them the KMS action on this key: the deployer writes the secret
    (PutSecretValue: GenerateDataKey) and Pulumi's provider reads the version back after writing
    and on refresh (GetSecretValue: Decrypt), so it cannot be left out. Anyone else needs both
    secretsmanager:GetSecretValue and kms:Decrypt on this key, where AWS's managed key would have
    asked for the first only."""
    via = ctx.service_host("secretsmanager")
    condition = {"StringEquals": {"kms:ViaService": via,
                                  "kms:EncryptionContext:SecretARN": secret_arn}}
    return [
        {
            "Sid": "ExecutionRolesDecryptTheSecretViaSecretsManager",
            "Effect": "Allow",
            "Principal": {"AWS": list(reader_role_arns)},
            "Action": "kms:Decrypt",
            # AWS: in a key policy "*" is this key; the condition pins service and secret.
            "Resource": "*",
            "Condition": condition,
        },
        {
            "Sid": "DeployersUseTheSecretViaSecretsManagerWithIam",
            "Effect": "Allow",
            "Principal": {"AWS": pulumi.Output.format("arn:{0}:iam::{1}:root", ctx.partition,
                                                      ctx.account_id)},
            "Action": ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"],
            # AWS: in a key policy "*" is this key; the condition pins service and secret.
            "Resource": "*",
            "Condition": condition,
        },
    ]


def log_group_arn(ctx: AwsContext, name: str) -> pulumi.Output[str]:
    """The ARN CloudWatch Logs puts in its encryption context: no trailing ":*"."""
    return ctx.arn("logs", f"log-group:{name}")


def logs_statement(ctx: AwsContext, log_group_names: Sequence[str]) -> dict[str, Any]:
    return {
        "Sid": "CloudWatchLogsUsesKeyForTheseLogGroups",
        "Effect": "Allow",
        "Principal": {"Service": ctx.service_host("logs")},
        "Action": list(LOGS_ACTIONS),
        # AWS: in a key policy "*" is this key; the condition names the log groups.
        "Resource": "*",
        "Condition": {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": [
            log_group_arn(ctx, name) for name in log_group_names]}},
    }


def exec_sessions_statement(ctx: AwsContext) -> dict[str, Any]:
    """ECS Exec's data channel: the person opening a session (GenerateDataKey) and the task's
    agent (Decrypt), each only if its IAM policy grants it on this key too, and only with a
    Session Manager session id in the encryption context."""
    return {
        "Sid": "EcsExecSessionsWithIam",
        "Effect": "Allow",
        "Principal": {"AWS": pulumi.Output.format("arn:{0}:iam::{1}:root", ctx.partition,
                                                  ctx.account_id)},
        "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
        # AWS: in a key policy "*" is this key. Session Manager (under ECS Exec) puts the
        # session id in the data key's encryption context (Systems Manager User Guide, "Turn on
        # KMS key encryption of session data"): the condition pins the use to exec sessions.
        "Resource": "*",
        "Condition": {"StringLike": {SSM_SESSION_CONTEXT: "*"}},
    }


class StackKey(pulumi.ComponentResource):
    key: aws.kms.Key
    arn: pulumi.Output[str]
    context: AwsContext

    def __init__(self, name: str, args: StackKeyArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:StackKey", name, None, opts)
        self._name = name
        self.context = args.context
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{args.prefix}: encrypts the Prefect credential, logs and alarm topic",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain),
        )
        # Never retained: a next life of the stack names its own key with it.
        aws.kms.Alias(f"{name}-alias", name=f"alias/{args.prefix}",
                      target_key_id=self.key.key_id,
                      opts=pulumi.ResourceOptions(parent=self.key, retain_on_delete=False))
        self.arn = self.key.arn
        self.key_id = self.key.key_id
        self.policy: Optional[aws.kms.KeyPolicy] = None
        self.register_outputs({"arn": self.arn})

    def set_policy(self, statements: Sequence[Statement]) -> aws.kms.KeyPolicy:
        """The key's policy: the account's administration statement, then `statements`. Call once,
        when every user's principals exist."""
        if self.policy is not None:
            raise ValueError("the stack key's policy is already set")
        self.policy = aws.kms.KeyPolicy(
            f"{self._name}-policy",
            key_id=self.key.key_id,
            policy=pulumi.Output.json_dumps({
                "Version": "2012-10-17",
                "Statement": [administration_statement(self.context), *statements],
            }),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return self.policy

    @property
    def arn_after_policy(self) -> pulumi.Output[str]:
        """The key's ARN, available once its policy is in place."""
        if self.policy is None:
            raise ValueError("set the stack key's policy first")
        return pulumi.Output.all(self.arn, self.policy.id).apply(lambda values: values[0])
