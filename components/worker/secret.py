"""The Prefect credential in Secrets Manager.

Given a value (a Pulumi secret), the stack creates the secret and its first version; the value is
encrypted in Pulumi state and reaches the container only through the task definition's `secrets`.
Given an ARN, the stack adopts that secret and the value never enters Pulumi state at all. A
created secret is encrypted with the stack key, whose policy lets it be decrypted only through
Secrets Manager: by the execution roles, or by principals IAM also grants the key.

For the stack's own server (`generate`), the value is a basic-auth string `prefect:<password>`
whose 40-character password Secrets Manager generates (`GetRandomPassword`, an invoke: the
deploying credentials need `secretsmanager:GetRandomPassword`). pulumi-random is not among the
project's packages, and Secrets Manager is where the value lives anyway. An invoke answers anew on
every run, so the version ignores later values: the first one stays until someone rotates it on
purpose (docs/self-hosted-server.md). The value is a Pulumi secret, encrypted in the state, and
reaches the server and the worker only through their task definitions' `secrets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.config.credential import PrefectCredential
from components.config.reader import NAMESPACE

# Days a deleted secret can still be restored; Secrets Manager accepts 7..30.
RECOVERY_WINDOW_DAYS = 7
# The user name of the generated basic-auth string; the password is what guards the server.
AUTH_USER = "prefect"
GENERATED_PASSWORD_LENGTH = 40


@dataclass(frozen=True)
class PrefectSecretArgs:
    credential: PrefectCredential
    description: str
    tags: Mapping[str, str]
    # The stack's KMS key (components/platform/stack_key.py); unused for an adopted secret.
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
            value: Optional[pulumi.Input[str]] = args.credential.value
            if args.credential.generate:
                value = pulumi.Output.concat(f"{AUTH_USER}:", generated_password(self))
            assert value is not None, "a credential has a value, a secret ARN or is generated"
            secret = secret_with_value(
                f"{name}-secret", f"{name}-version", description=args.description,
                value=lambda _: pulumi.Output.secret(value), kms_key_arn=args.kms_key_arn,
                tags=dict(args.tags), opts=pulumi.ResourceOptions(parent=self),
                keep_first_value=args.credential.generate)
            self.arn = secret.arn

        self.register_outputs({"arn": self.arn})


def generated_password(parent: pulumi.Resource, length: int = GENERATED_PASSWORD_LENGTH
                       ) -> pulumi.Output[str]:
    """A random password from Secrets Manager, letters and digits only (it goes into HTTP basic
    auth and Redis URLs unescaped), as a Pulumi secret."""
    return pulumi.Output.secret(aws.secretsmanager.get_random_password_output(
        password_length=length, exclude_punctuation=True, include_space=False,
        opts=pulumi.InvokeOptions(parent=parent)).random_password)


def secret_with_value(secret_name: str, version_name: str, *, description: str,
                      value: Callable[[aws.secretsmanager.Secret], pulumi.Input[str]],
                      kms_key_arn: Optional[pulumi.Input[str]], tags: Mapping[str, str],
                      opts: pulumi.ResourceOptions, keep_first_value: bool
                      ) -> aws.secretsmanager.Secret:
    """A secret under the stack's key and its value (`value(secret)`: a generated password may
    hang under the secret). `keep_first_value`: a generated value, which the invoke answers anew
    on every run, stays as first stored until changed on purpose."""
    secret = aws.secretsmanager.Secret(
        secret_name,
        description=description,
        recovery_window_in_days=RECOVERY_WINDOW_DAYS,
        kms_key_id=kms_key_arn,
        tags=tags,
        opts=opts,
    )
    aws.secretsmanager.SecretVersion(
        version_name,
        secret_id=secret.id,
        secret_string=value(secret),
        opts=pulumi.ResourceOptions(parent=secret,
                                    ignore_changes=["secretString"] if keep_first_value else None),
    )
    return secret
