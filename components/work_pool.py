"""The Prefect work pool as a Pulumi resource: a dynamic provider over Prefect's REST API.

`WorkPool` creates, reads, updates and deletes one pool on Prefect Cloud or a self-hosted server.
Changing the template, description or concurrency limit is an update (PATCH); only the name, the
type or the API URL replace the pool. `read` (pulumi refresh) reports a pool edited behind Pulumi's
back, so the next `up` puts the declared template back, and drops a pool deleted behind its back.

The credential is never an input, an output, or part of the serialized provider. Pulumi stores
the provider object in the state (`__provider`, pickled with dill); this one carries no fields at
all. The provider process gets the stack's configuration through `configure` and reads the
credential from it when it calls the API: `prefectApiKey` (sent as a bearer token) or
`prefectApiAuthString` (HTTP basic auth), or for `prefectApiKeySecretArn` /
`prefectApiAuthStringSecretArn`, the secret's value read from Secrets Manager with the operator's
AWS credentials. A rotated key therefore needs no change to the pool. Preview (check, diff) makes
no API call.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import quote

import httpx
import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from components.settings import API_KEY, AUTH_STRING, NAMESPACE

# Keys whose change makes a different pool; the others are patched in place.
REPLACE_KEYS = ("api_url", "name", "type")
UPDATE_KEYS = ("description", "base_job_template", "concurrency_limit")
TIMEOUT_SECONDS = 30
# Rate limits (Prefect Cloud) and a busy server (a self-hosted one on SQLite answers 503 while
# another writer holds the database) pass; anything else is an answer.
RETRY_STATUSES = (429, 502, 503, 504)
ATTEMPTS = 4


class PrefectApiError(Exception):
    """The Prefect API refused or could not be reached; the message says which and what to check."""


@dataclass(frozen=True)
class _CredentialSource:
    """Where the credential comes from: a value from config, or a Secrets Manager ARN."""

    scheme: str  # "Bearer" for an API key, "Basic" for an auth string
    value: Optional[str] = None
    secret_arn: Optional[str] = None

    @classmethod
    def from_config(cls, get: Callable[[str], Optional[str]]) -> Optional["_CredentialSource"]:
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


def _canonical(value: Any) -> str:
    return json.dumps(whole_numbers(value), sort_keys=True)


class WorkPoolProvider(ResourceProvider):
    """CRUD for one Prefect work pool. Holds no state of its own in the program: see the module
    docstring for where the credential comes from."""

    # Nothing secret is captured, so the serialized provider may stay readable in the state.
    serialize_as_secret_always = False

    def configure(self, req: ConfigureRequest) -> None:
        config = req.config
        self._credential = _CredentialSource.from_config(
            lambda key: config.get(f"{NAMESPACE}:{key}"))

    # -- the API ----------------------------------------------------------------------------

    def _request(self, api_url: str, method: str, path: str,
                 body: Optional[dict[str, Any]] = None) -> httpx.Response:
        credential: Optional[_CredentialSource] = getattr(self, "_credential", None)
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

    def _find(self, api_url: str, name: str) -> Optional[dict[str, Any]]:
        """The pool, or None if none has this name. A filter (not GET by name) so that a wrong
        URL is an error instead of a pool that seems deleted."""
        response = self._request(api_url, "POST", "/work_pools/filter",
                                 {"work_pools": {"name": {"any_": [name]}}})
        if response.status_code != 200:
            raise self._fail(api_url, f"reading work pool {name!r}", response)
        pools = [pool for pool in response.json() if pool["name"] == name]
        return pools[0] if pools else None

    @staticmethod
    def _outputs(api_url: str, pool: dict[str, Any]) -> dict[str, Any]:
        return {
            "api_url": api_url,
            "name": pool["name"],
            "type": pool["type"],
            "description": pool.get("description"),
            "base_job_template": pool.get("base_job_template"),
            "concurrency_limit": pool.get("concurrency_limit"),
            "pool_id": pool["id"],
        }

    # -- the provider interface -----------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if not isinstance(news.get("name"), str) or not news["name"]:
            failures.append(CheckFailure("name", "a non-empty work pool name"))
        if not isinstance(news.get("api_url"), str) or not news["api_url"].startswith("http"):
            failures.append(CheckFailure("api_url", "the Prefect API URL, http(s)://..."))
        template = news.get("base_job_template")
        if isinstance(template, dict) and not {"job_configuration", "variables"} <= set(template):
            failures.append(CheckFailure(
                "base_job_template", "a template with job_configuration and variables"))
        limit = news.get("concurrency_limit")
        if limit is not None and (not isinstance(limit, (int, float)) or limit < 0):
            failures.append(CheckFailure("concurrency_limit", "empty, or a whole number >= 0"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in REPLACE_KEYS if olds.get(key) != news.get(key)]
        updates = [key for key in UPDATE_KEYS
                   if _canonical(olds.get(key)) != _canonical(news.get(key))]
        return DiffResult(
            changes=bool(replaces or updates),
            replaces=replaces,
            # Same name on the same server: the old pool must go before the new one can exist.
            delete_before_replace="name" not in replaces,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        api_url, name = props["api_url"], props["name"]
        body = whole_numbers({
            "name": name,
            "type": props["type"],
            "description": props.get("description"),
            "base_job_template": props["base_job_template"],
            "concurrency_limit": props.get("concurrency_limit"),
        })
        response = self._request(api_url, "POST", "/work_pools/", body)
        if response.status_code == 409:
            raise PrefectApiError(
                f"a work pool named {name!r} already exists at {api_url}; the stack creates its "
                "own. Delete it (prefect work-pool delete), choose another workPoolName, or set "
                "manageWorkPool false to leave it alone"
            )
        if response.status_code not in (200, 201):
            raise self._fail(api_url, f"creating work pool {name!r}", response)
        pool = response.json()
        return CreateResult(pool["id"], self._outputs(api_url, pool))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        pool = self._find(props["api_url"], props["name"])
        if pool is None:
            return ReadResult(None, {})
        return ReadResult(pool["id"], self._outputs(props["api_url"], pool))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        api_url, name = news["api_url"], news["name"]
        body = whole_numbers({key: news.get(key) for key in UPDATE_KEYS})
        response = self._request(api_url, "PATCH", f"/work_pools/{quote(name, safe='')}", body)
        if response.status_code == 404:
            raise PrefectApiError(
                f"work pool {name!r} is gone from {api_url}; run pulumi refresh, then pulumi up "
                "to create it again"
            )
        if response.status_code not in (200, 204):
            raise self._fail(api_url, f"updating work pool {name!r}", response)
        pool = self._find(api_url, name)
        if pool is None:
            raise PrefectApiError(f"work pool {name!r} vanished from {api_url} during the update")
        return UpdateResult(self._outputs(api_url, pool))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        api_url, name = props["api_url"], props["name"]
        response = self._request(api_url, "DELETE", f"/work_pools/{quote(name, safe='')}")
        # Already gone is the state delete wants.
        if response.status_code not in (200, 204, 404):
            raise self._fail(api_url, f"deleting work pool {name!r}", response)


@dataclass(frozen=True)
class WorkPoolArgs:
    api_url: str
    name: str
    base_job_template: pulumi.Input[dict[str, Any]]
    description: str
    concurrency_limit: Optional[int] = None
    type: str = "ecs"


class WorkPool(pulumi.dynamic.Resource, module="prefect", name="WorkPool"):
    """A Prefect work pool owned by the stack (type token `pulumi-python:dynamic/prefect:WorkPool`)."""

    pool_id: pulumi.Output[str]
    base_job_template: pulumi.Output[dict[str, Any]]

    def __init__(self, resource_name: str, args: WorkPoolArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(WorkPoolProvider(), resource_name, {
            "api_url": args.api_url,
            "name": args.name,
            "type": args.type,
            "description": args.description,
            "base_job_template": args.base_job_template,
            "concurrency_limit": args.concurrency_limit,
            "pool_id": None,
        }, opts)
