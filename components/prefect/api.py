"""What every stack-owned Prefect object's dynamic provider shares: the credential, the HTTP call
with its retries, and the error that says what to check.

The credential is never an input, an output, or part of the serialized provider. Pulumi stores
a provider object in the state (`__provider`, pickled with dill); these carry no fields at all.
The provider process gets the stack's configuration through `configure` and reads the credential
from it when it calls the API: `prefectApiKey` (sent as a bearer token) or `prefectApiAuthString`
(HTTP basic auth), or for `prefectApiKeySecretArn` / `prefectApiAuthStringSecretArn`, the
secret's value read from Secrets Manager with the operator's AWS credentials. A rotated key
therefore needs no change to the objects. Preview (check, diff) makes no API call.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import httpx
from pulumi.dynamic import ConfigureRequest, ResourceProvider

from components.prefect import pool_bootstrap_program
from components.config.credential import API_KEY, AUTH_STRING
from components.config.reader import NAMESPACE

TIMEOUT_SECONDS = 30
# Rate limits (Prefect Cloud) and a busy server (a self-hosted one on SQLite answers 503 while
# another writer holds the database) pass; anything else is an answer. One list for the
# providers and the in-VPC bootstrap, which can import nothing of the stack, so it lives there.
RETRY_STATUSES = pool_bootstrap_program.RETRY_STATUSES
ATTEMPTS = 4


class PrefectApiError(Exception):
    """The Prefect API refused or could not be reached; the message says which and what to check."""


@dataclass(frozen=True)
class CredentialSource:
    """Where the credential comes from: a value from config, or a Secrets Manager ARN."""

    scheme: str  # "Bearer" for an API key, "Basic" for an auth string
    value: Optional[str] = None
    secret_arn: Optional[str] = None

    @classmethod
    def from_config(cls, get: Callable[[str], Optional[str]]) -> Optional["CredentialSource"]:
        for key, scheme in ((API_KEY, "Bearer"), (AUTH_STRING, "Basic")):
            if get(key):
                return cls(scheme, value=get(key))
            if get(f"{key}SecretArn"):
                return cls(scheme, secret_arn=get(f"{key}SecretArn"))
        return None

    def authorization(self) -> str:
        value = self.value
        if value is None:
            assert self.secret_arn is not None, "from_config sets a value or an ARN"
            value = _read_secret(self.secret_arn)
        if self.scheme == "Basic":
            return "Basic " + base64.b64encode(value.encode()).decode()
        return f"Bearer {value}"


def _read_secret(arn: str) -> str:
    import boto3  # only the secret-ARN modes need it

    region = arn.split(":")[3]
    try:
        return boto3.client("secretsmanager", region_name=region).get_secret_value(
            SecretId=arn)["SecretString"]
    except Exception as exc:  # botocore raises many kinds; the ARN is the useful part
        raise PrefectApiError(
            f"could not read the Prefect credential from {arn}: {type(exc).__name__}. The AWS "
            "credentials running Pulumi need secretsmanager:GetSecretValue on it."
        ) from None


def _retry_delay(response: httpx.Response, attempt: int) -> float:
    try:
        delay = float(response.headers.get("Retry-After", ""))
    except ValueError:
        delay = 0.5 * 2 ** attempt
    return min(max(delay, 0.0), 10.0)


def whole_numbers(value: Any) -> Any:
    """`value` with the engine's whole floats as integers: every number crosses the engine as a
    float, and Prefect and ECS want 1024, not 1024.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def canonical(value: Any) -> str:
    return json.dumps(whole_numbers(value), sort_keys=True)


class PrefectApiProvider(ResourceProvider):
    """A dynamic provider that calls the Prefect API with the stack's credential."""

    # Nothing secret is captured, so the serialized provider may stay readable in the state.
    serialize_as_secret_always = False

    def configure(self, req: ConfigureRequest) -> None:
        config = req.config
        self._credential = CredentialSource.from_config(
            lambda key: config.get(f"{NAMESPACE}:{key}"))

    def _request(self, api_url: str, method: str, path: str,
                 body: Optional[dict[str, Any]] = None) -> httpx.Response:
        credential: Optional[CredentialSource] = getattr(self, "_credential", None)
        headers = {"Authorization": credential.authorization()} if credential else {}
        url = api_url.rstrip("/") + path
        for attempt in range(ATTEMPTS):
            try:
                response = httpx.request(method, url, json=body, headers=headers,
                                         timeout=TIMEOUT_SECONDS)
            except httpx.HTTPError as exc:
                raise PrefectApiError(
                    f"cannot reach the Prefect API at {api_url} ({type(exc).__name__}: {exc}); "
                    "check prefectApiUrl and that the server is up"
                ) from None
            if response.status_code not in RETRY_STATUSES or attempt == ATTEMPTS - 1:
                break
            time.sleep(_retry_delay(response, attempt))
        if response.status_code in (401, 403):
            raise PrefectApiError(
                f"the Prefect API at {api_url} refused the credential (HTTP "
                f"{response.status_code}); check prefectApiKey or prefectApiAuthString"
            )
        return response

    @staticmethod
    def _fail(api_url: str, action: str, response: httpx.Response) -> PrefectApiError:
        hint = (" (is prefectApiUrl the API root, ending in /api or /workspaces/<id>?)"
                if response.status_code in (404, 405) else "")
        return PrefectApiError(
            f"Prefect API at {api_url}: {action} failed with HTTP {response.status_code}"
            f"{hint}: {response.text[:500]}"
        )
