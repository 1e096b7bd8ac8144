"""The Prefect credential in Secrets Manager.

Given a value (a Pulumi secret), the stack creates the secret and its first version; the value is
encrypted in Pulumi state and reaches the container only through the task definition's `secrets`.
Given an ARN, the stack adopts that secret and the value never enters Pulumi state at all. A
created secret is encrypted with the stack key, whose policy lets it be decrypted only through
Secrets Manager: by the execution roles, or by principals IAM also grants the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.settings import NAMESPACE, PrefectCredential

# Days a deleted secret can still be restored; Secrets Manager accepts 7..30.
RECOVERY_WINDOW_DAYS = 7


@dataclass(frozen=True)
class PrefectSecretArgs:
    credential: PrefectCredential
    description: str
    tags: Mapping[str, str]
    # The stack's KMS key (components/stack_key.py); unused for an adopted secret.
    kms_key_arn: Optional[pulumi.Input[str]] = None


class PrefectSecret(pulumi.ComponentResource):
    arn: pulumi.Output[str]
    env_name: str
    # Whether the stack created (and encrypts) the secret, or adopted someone else's.
    created: bool

    def __init__(self, name: str, args: PrefectSecretArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(f"{NAMESPACE}:index:PrefectSecret", name, None, opts)
        self.env_name = args.credential.env_name
        self.created = args.credential.secret_arn is None

        if args.credential.secret_arn is not None:
            self.arn = pulumi.Output.from_input(args.credential.secret_arn)
        else:
            secret = aws.secretsmanager.Secret(
                f"{name}-secret",
                description=args.description,
                recovery_window_in_days=RECOVERY_WINDOW_DAYS,
                kms_key_id=args.kms_key_arn,
                tags=dict(args.tags),
                opts=pulumi.ResourceOptions(parent=self),
            )
            assert args.credential.value is not None, "a credential has a value or a secret ARN"
            aws.secretsmanager.SecretVersion(
                f"{name}-version",
                secret_id=secret.id,
                # The SDK annotates Output.secret's argument too narrowly for an Output[str].
                secret_string=pulumi.Output.secret(args.credential.value),  # type: ignore[arg-type]
                opts=pulumi.ResourceOptions(parent=secret),
            )
            self.arn = secret.arn

        self.register_outputs({"arn": self.arn})
