"""Replay what the program declared, under mocks, into a moto server through boto3.

Mocks only record what the program asks for; this asks the AWS API (as moto implements it, with
botocore's client-side validation in front) to accept it. Every resource is read from an
`Evaluation`, never retyped: each declared input is either turned into the API call the provider
would make or named as engine-side (`waitForSteadyState`), and an input nobody translated fails
the replay, so a new argument cannot slip past unchecked.

Resources replay in declaration order: the engine registers a resource only once the outputs it
depends on exist, so that order is already a dependency order. Ids and ARNs the mocks invented
(`vpc-000…7`, `sg-000…f`, the secret's ARN) are mapped to the ones moto returns, and any mock id
left unmapped in a later resource's inputs is an error.

`HANDLERS` maps a Pulumi type token to one function; a resource of a type with no handler fails
the replay before anything is created, listing every such type.

The work pool is not an AWS resource. Its handler always runs the provider's own `check` (what the
engine runs at preview); given a Prefect server (`prefect_api_url`), it creates the pool there
through the provider, as `pulumi up` would on the declared server. Without one, the pool is listed
in `Replay.not_created` with where its creation is tested instead: never skipped silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Optional
import boto3
import botocore.exceptions
from botocore.config import Config
from components.prefect.work_pool import PrefectApiError, WorkPoolProvider

from tools.mock_engine import PROJECT, WORK_POOL, Declared, Evaluation, is_secret_input


# This program's own components group resources; AWS never sees them.
COMPONENT_PREFIX = f"{PROJECT}:"


# Ids the mocks invent are zero-padded counters (see RecordingMocks._id); moto's are random.
MOCK_ID = re.compile(r"\b(vpc|subnet|sg|key)-0{8,}[0-9a-f]*\b")


AWS_MANAGED_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(?:(.*)/)?([^/]+)$")


class ReplayError(AssertionError):
    """The AWS API (or what awsx would check) refused a declared resource."""

    def __init__(self, resource: Declared, message: str):
        self.resource = resource
        super().__init__(f"{resource.type} {resource.name!r}: {message}")


class UnknownResourceTypes(AssertionError):
    def __init__(self, unknown: dict[str, list[str]]):
        self.types = sorted(unknown)
        listed = "; ".join(f"{t} ({', '.join(names)})" for t, names in sorted(unknown.items()))
        super().__init__(f"no replay handler for: {listed}. Add one to testbed/replay/ (HANDLERS).")


class Inputs:
    """A resource's declared inputs, with mock ids replaced by moto's; tracks what was read."""

    def __init__(self, resource: Declared, values: dict[str, Any]):
        self._resource = resource
        self._values = values
        self._read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        return self._values.get(key, default)

    def require(self, key: str) -> Any:
        self._read.add(key)
        if key not in self._values:
            raise ReplayError(self._resource, f"declares no {key!r}")
        return self._values[key]

    def integer(self, key: str, default: Any = None) -> Optional[int]:
        """The engine carries numbers as floats; the provider sends the schema's integer."""
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not float(value).is_integer():
            raise ReplayError(self._resource, f"{key} = {value!r} is not an integer")
        return int(value)

    def secret(self, key: str) -> Any:
        value = self.require(key)
        return value["value"] if is_secret_input(value) else value

    def copy(self, request: dict[str, Any], fields: dict[str, str],
             convert: Callable[[Any], Any] = lambda value: value) -> dict[str, Any]:
        """Each declared input of `fields` (input -> API name) into `request`, when it is set."""
        for key, api_key in fields.items():
            value = self.get(key)
            if value is not None:
                request[api_key] = convert(value)
        return request

    def engine_side(self, *keys: str) -> None:
        """Inputs the provider acts on itself (waiting, deleting), with no create-time API field."""
        self._read.update(keys)

    def unread(self) -> list[str]:
        return sorted(set(self._values) - self._read)


def pascal(*keys: str) -> dict[str, str]:
    """Inputs whose API name is the input's name capitalised (`roleArn` -> `RoleArn`)."""
    return {key: key[0].upper() + key[1:] for key in keys}


def aws_tags(tags: Optional[dict[str, str]], key: str = "Key", value: str = "Value"
             ) -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in (tags or {}).items()]


def ecs_tags(tags: Optional[dict[str, str]]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in (tags or {}).items()]


@lru_cache(maxsize=1)
def aws_managed_policies() -> dict[str, Any]:
    """moto's copy of AWS's managed policies (name -> path, document), read from the moto package.
    Loading them into the server instead (MOTO_IAM_LOAD_MANAGED_POLICIES) costs ~2 s per reset."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return json.loads(aws_managed_policies_data)


@dataclass
class Replay:
    """One replay into one moto server: the clients, the id map, and what was created."""

    endpoint_url: str
    region: str = "us-east-1"
    # The Prefect server that stands in for the declared API URL; None: pools are checked only.
    prefect_api_url: Optional[str] = None
    ids: dict[str, str] = field(default_factory=dict)
    # (type, logical name) -> what moto returned; a name alone is not unique across types.
    created: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # (type, logical name) -> why it was checked but not created, and where creating it is tested.
    not_created: dict[tuple[str, str], str] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service, endpoint_url=self.endpoint_url, region_name=self.region,
                aws_access_key_id="testing", aws_secret_access_key="testing",
                # One attempt: a refusal should fail at once, not after botocore's retries.
                config=Config(retries={"max_attempts": 1}),
            )
        return self._clients[service]

    def account(self) -> str:
        """The account the replay deploys as (moto's), the caller AWS checks policies against."""
        return self.client("sts").get_caller_identity()["Account"]

    def map(self, mock_value: Any, real_value: Any) -> None:
        if isinstance(mock_value, str) and mock_value and mock_value != real_value:
            self.ids[mock_value] = real_value

    def real(self, value: Any) -> Any:
        """`value` with every mock id or ARN (also inside JSON strings) replaced by moto's."""
        if isinstance(value, dict):
            return {k: self.real(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.real(v) for v in value]
        if isinstance(value, str) and self.ids:
            pattern = re.compile("|".join(re.escape(k) for k in sorted(self.ids, key=len, reverse=True)))
            return pattern.sub(lambda m: self.ids[m.group(0)], value)
        return value

    def run(self, evaluation: Evaluation | Iterable[Declared]) -> "Replay":
        resources = evaluation.resources if isinstance(evaluation, Evaluation) else list(evaluation)
        unknown: dict[str, list[str]] = {}
        for resource in resources:
            if not resource.type.startswith(COMPONENT_PREFIX) and resource.type not in HANDLERS:
                unknown.setdefault(resource.type, []).append(resource.name)
        if unknown:
            raise UnknownResourceTypes(unknown)
        for resource in resources:
            if resource.type.startswith(COMPONENT_PREFIX):
                continue
            self.replay_one(resource)
        return self

    def replay_one(self, resource: Declared) -> None:
        values = self.real(resource.inputs)
        leftover = sorted({m.group(0) for m in MOCK_ID.finditer(json.dumps(values))})
        if leftover:
            raise ReplayError(resource, f"references {leftover}, which no replayed resource created")
        inputs = Inputs(resource, values)
        try:
            created = HANDLERS[resource.type](self, resource, inputs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError,
                PrefectApiError) as error:
            raise ReplayError(resource, f"{type(error).__name__}: {error}") from error
        unread = inputs.unread()
        if unread:
            raise ReplayError(resource, f"inputs not replayed: {unread}; translate them in "
                                        f"testbed/replay/ or name them engine-side")
        self.created[(resource.type, resource.name)] = created or {}

    def delete_work_pools(self) -> None:
        """Delete the pools this replay created on the Prefect server (it outlives the test)."""
        for (type_, _), created in self.created.items():
            if type_ == WORK_POOL and created.get("created"):
                WorkPoolProvider().delete(created["id"], created["outs"])


Handler = Callable[[Replay, Declared, Inputs], Optional[dict[str, Any]]]

# Type token -> handler; each service module of this package adds its own.
HANDLERS: dict[str, Handler] = {}


def _physical_name(resource: Declared, inputs: Inputs) -> str:
    """The declared name, else the auto-name the mock gave (logical name plus a suffix)."""
    return inputs.get("name") or resource.outputs["name"]


def replay(evaluation: Evaluation, endpoint_url: str, prefect_api_url: Optional[str] = None) -> Replay:
    return Replay(endpoint_url, prefect_api_url=prefect_api_url).run(evaluation)


def real_exports(evaluation: Evaluation, replayed: Replay) -> dict[str, Any]:
    """The stack's exports as they would read after this deployment: mock ids replaced by moto's."""
    return replayed.real(evaluation.exports)


def start_service_tasks(replayed: Replay, service: dict[str, Any]) -> list[dict[str, Any]]:
    """Stand in for ECS's scheduler, which moto lacks: start the service's desired tasks with the
    service's own network configuration, grouped and tagged as ECS groups a service's tasks."""
    request = service["request"]
    return replayed.client("ecs").run_task(
        cluster=request["cluster"], taskDefinition=request["taskDefinition"],
        count=request["desiredCount"], group=f"service:{service['name']}",
        startedBy="ecs-svc/replay", networkConfiguration=request["networkConfiguration"],
        capacityProviderStrategy=request.get("capacityProviderStrategy", []),
    )["tasks"]
