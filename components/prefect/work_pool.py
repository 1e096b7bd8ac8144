"""The Prefect work pool as a Pulumi resource: a dynamic provider over Prefect's REST API.

`WorkPool` creates, reads, updates and deletes one pool on Prefect Cloud or a self-hosted server.
Changing the template, description or concurrency limit is an update (PATCH); only the name, the
type or the API URL replace the pool. `read` (pulumi refresh) reports a pool edited behind Pulumi's
back, so the next `up` puts the declared template back, and drops a pool deleted behind its back.

The credential and the HTTP plumbing are components/prefect/api.py's, shared with the other
stack-owned Prefect objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import quote

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult

from components.prefect.api import (  # noqa: F401  (ATTEMPTS, PrefectApiError: re-exported)
    ATTEMPTS, PrefectApiError, PrefectApiProvider, canonical as _canonical, whole_numbers,
)

# Keys whose change makes a different pool; the others are patched in place.
REPLACE_KEYS = ("api_url", "name", "type")
UPDATE_KEYS = ("description", "base_job_template", "concurrency_limit")


class WorkPoolProvider(PrefectApiProvider):
    """CRUD for one Prefect work pool. Holds no state of its own in the program: see
    components/prefect/api.py for where the credential comes from."""

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
