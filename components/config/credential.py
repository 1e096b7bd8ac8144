"""The Prefect API the worker talks to and the one credential it sends: `prefectApiUrl` and the
four credential keys (a value set with --secret, or the ARN of an existing secret holding it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional
from urllib.parse import urlparse

import pulumi

from components.config.reader import ConfigError, Reader
from components.config.server import ServerSettings

CredentialEnvName = Literal["PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"]

# The credential keys: a value set with --secret, or the ARN of an existing secret holding it.
API_KEY, AUTH_STRING = "prefectApiKey", "prefectApiAuthString"
SECRET_VALUE_KEYS = (API_KEY, AUTH_STRING)
CREDENTIAL_KEYS = (*SECRET_VALUE_KEYS, f"{API_KEY}SecretArn", f"{AUTH_STRING}SecretArn")

PREFECT_CLOUD_HOST = "api.prefect.cloud"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CLOUD_PATH = re.compile(rf"^/api/accounts/{UUID}/workspaces/{UUID}/?$")
# The complete ARN, with the six characters Secrets Manager appends to the name: IAM matches the
# execution role's Resource against it exactly, so a partial ARN would deny the read at task start.
SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$"
)


@dataclass(frozen=True)
class PrefectCredential:
    """The one credential the worker sends to the Prefect API.

    `env_name` is the variable the container gets it as; exactly one of `value` (a secret Output that
    the stack stores in a new Secrets Manager secret) and `secret_arn` (an existing secret) is set.
    """

    env_name: CredentialEnvName
    value: Optional[pulumi.Output[str]] = None
    secret_arn: Optional[str] = None
    # The stack's own server: the secret's value is generated in AWS (components/worker/secret.py).
    generate: bool = False


def parse_api_url(url: str) -> str:
    parsed = urlparse(url)
    accepted = (
        "Prefect Cloud's https://api.prefect.cloud/api/accounts/<account uuid>/workspaces/"
        "<workspace uuid>, or a self-hosted server's http(s)://<host>[:port]/api"
    )
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query or parsed.fragment:
        raise ConfigError("prefectApiUrl", url, accepted)
    if parsed.hostname == PREFECT_CLOUD_HOST:
        if parsed.scheme != "https" or not CLOUD_PATH.match(parsed.path):
            raise ConfigError("prefectApiUrl", url, accepted)
    elif not parsed.path.rstrip("/").endswith("/api"):
        raise ConfigError("prefectApiUrl", url, accepted)
    return url.rstrip("/")


def parse_credential(config: pulumi.Config, reader: Reader, api_url: str) -> PrefectCredential:
    """Exactly one of the four credential keys; Prefect Cloud takes an API key only."""
    present = [key for key in CREDENTIAL_KEYS if reader.optional(key) is not None]
    cloud = urlparse(api_url).hostname == PREFECT_CLOUD_HOST
    accepted = (
        "set exactly one of prefectApiKey (pulumi config set --secret prefectApiKey) or "
        "prefectApiKeySecretArn"
        + ("" if cloud else ", or for a self-hosted server prefectApiAuthString or "
           "prefectApiAuthStringSecretArn")
    )
    if len(present) != 1:
        raise ConfigError(" + ".join(present) or "prefectApiKey", None, accepted,
                          secret=bool(present))
    key = present[0]
    if cloud and key.startswith(AUTH_STRING):
        raise ConfigError(key, None, "Prefect Cloud authenticates with an API key: " + accepted,
                          secret=True)
    env_name: CredentialEnvName = (
        "PREFECT_API_KEY" if key.startswith(API_KEY) else "PREFECT_API_AUTH_STRING")
    if key in SECRET_VALUE_KEYS:
        # A value set without --secret sits in plain text in the stack file: refuse it.
        if not pulumi.runtime.is_config_secret(config.full_key(key)):
            raise ConfigError(key, None, f"a secret: pulumi config set --secret {key}", secret=True)
        return PrefectCredential(env_name=env_name, value=config.get_secret(key))
    arn = reader.required(key)
    if not SECRET_ARN.match(arn):
        raise ConfigError(key, arn, "the complete ARN of a Secrets Manager secret, "
                          "arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>")
    return PrefectCredential(env_name=env_name, secret_arn=arn)


def parse_server_credential(config: pulumi.Config, reader: Reader, server: ServerSettings,
                       api_url: str) -> PrefectCredential:
    """With the stack's own server: no external URL, no API key (a self-hosted server has none);
    the basic-auth string is generated, or adopted from a secret, or set with --secret."""
    if reader.optional("prefectApiUrl") is not None:
        raise ConfigError("prefectApiUrl", reader.optional("prefectApiUrl"),
                          f"unset with prefectServer {server.mode}: the worker uses the stack's "
                          "own server (pulumi config rm prefectApiUrl)")
    for key in ("prefectApiKey", "prefectApiKeySecretArn"):
        if reader.optional(key) is not None:
            raise ConfigError(key, None, f"unset with prefectServer {server.mode}: a self-hosted "
                              "server has no API keys; it uses a basic-auth string the stack "
                              "generates, or prefectApiAuthStringSecretArn", secret=True)
    if reader.optional("prefectApiAuthString") is None and reader.optional(
            "prefectApiAuthStringSecretArn") is None:
        return PrefectCredential(env_name="PREFECT_API_AUTH_STRING", generate=True)
    return parse_credential(config, reader, api_url)
