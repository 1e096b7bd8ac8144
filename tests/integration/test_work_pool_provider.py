"""The work pool provider against a real Prefect server, used the way Pulumi uses it.

The provider goes through the SDK's own serialization (`serialize_provider` under `_serialize`, as
`pulumi.dynamic.Resource` stores it in `__provider`) and is restored with `dill.loads` under
`_deserialize` and configured with the stack's config, as the provider process does. Properties
pass through the engine's wire format (numbers become floats) before each call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid

import boto3
import dill
import httpx
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime._serialization import _deserialize, _serialize

from components.prefect.job_template import base_job_template
from components.prefect.work_pool import PrefectApiError, WorkPoolProvider
from tests.support.harness import PROJECT, ROOT, TEST_AUTH_STRING
from testbed.servers import free_port

pytestmark = pytest.mark.slow

API_KEY = "pnu_provider_test_key_000000000000000000"


def serialized_provider() -> str:
    """What `pulumi.dynamic.Resource` puts in `__provider`."""
    serialized, contains_secrets = _serialize(True, serialize_provider, WorkPoolProvider())
    assert contains_secrets is False
    return serialized


def restored_provider(config: dict[str, str]) -> WorkPoolProvider:
    """What the provider process does with `__provider`: load it, then configure it."""
    encoded = serialized_provider()
    provider = _deserialize(lambda: dill.loads(base64.b64decode(encoded)))
    provider.configure(ConfigureRequest(Config(
        {f"{PROJECT}:{key}": value for key, value in config.items()}, PROJECT)))
    return provider


def over_the_wire(props: dict) -> dict:
    """Properties as the engine hands them to the provider: serialized, then deserialized."""
    struct = asyncio.run(rpc.serialize_properties(props, {}))
    return rpc.deserialize_properties(struct)


def desired(api_url: str, name: str, *, cpu: int = 512, limit=3, description="managed") -> dict:
    template = base_job_template({"cpu": cpu, "memory": 1024,
                                  "cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/c"})
    return over_the_wire({
        "api_url": api_url, "name": name, "type": "ecs", "description": description,
        "base_job_template": template, "concurrency_limit": limit, "pool_id": None,
    })


def live(api_url: str, name: str, auth: tuple[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{api_url}/work_pools/{name}", auth=auth, timeout=10)


def unique_name() -> str:
    return f"pool-{uuid.uuid4().hex[:8]}"


def test_restored_provider_creates_reads_updates_and_deletes(prefect_server):
    api = prefect_server.api_url
    provider = restored_provider({"prefectApiKey": API_KEY, "prefectApiUrl": api})
    name = unique_name()
    news = desired(api, name)
    assert provider.check({}, news).failures == []

    created = provider.create(news)
    pool = live(api, name).json()
    assert created.id == pool["id"]
    assert pool["type"] == "ecs" and pool["concurrency_limit"] == 3
    assert pool["base_job_template"]["variables"]["properties"]["cpu"]["default"] == 512
    # Integral numbers go to Prefect as integers, not the engine's floats.
    assert json.dumps(pool["base_job_template"]).count("512.0") == 0

    state = over_the_wire(created.outs)
    read = provider.read(created.id, state)
    assert read.id == created.id
    assert provider.diff(created.id, over_the_wire(read.outs), news).changes is False

    bigger = desired(api, name, cpu=1024, limit=None, description="bigger")
    diff = provider.diff(created.id, state, bigger)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(created.id, state, bigger)
    pool = live(api, name).json()
    assert pool["id"] == created.id, "an update keeps the pool"
    assert pool["base_job_template"]["variables"]["properties"]["cpu"]["default"] == 1024
    assert pool["concurrency_limit"] is None and pool["description"] == "bigger"
    state = over_the_wire(updated.outs)

    provider.delete(created.id, state)
    assert live(api, name).status_code == 404
    provider.delete(created.id, state)  # already gone is fine


def test_only_name_and_type_force_a_replacement(prefect_server):
    provider = restored_provider({})
    api = prefect_server.api_url
    olds = desired(api, "a")
    assert provider.diff("id", olds, desired(api, "b")).replaces == ["name"]
    assert provider.diff("id", olds, {**olds, "type": "process"}).replaces == ["type"]
    for changed in (desired(api, "a", cpu=2048), desired(api, "a", limit=9),
                    desired(api, "a", description="other")):
        diff = provider.diff("id", olds, changed)
        assert diff.changes is True and diff.replaces == []


def test_refresh_sees_edits_and_deletion_behind_pulumis_back(prefect_server):
    api = prefect_server.api_url
    provider = restored_provider({"prefectApiKey": API_KEY})
    name = unique_name()
    news = desired(api, name)
    created = provider.create(news)
    state = over_the_wire(created.outs)

    drifted = json.loads(json.dumps(news["base_job_template"]))
    drifted["variables"]["properties"]["cpu"]["default"] = 4096
    response = httpx.patch(f"{api}/work_pools/{name}", timeout=10,
                           json={"base_job_template": drifted, "description": "edited by hand"})
    assert response.status_code == 204

    refreshed = provider.read(created.id, state)
    assert refreshed.outs["description"] == "edited by hand"
    assert refreshed.outs["base_job_template"]["variables"]["properties"]["cpu"]["default"] == 4096
    diff = provider.diff(created.id, over_the_wire(refreshed.outs), news)
    assert diff.changes is True and diff.replaces == []
    provider.update(created.id, over_the_wire(refreshed.outs), news)
    restored = live(api, name).json()
    assert restored["description"] == "managed"
    assert restored["base_job_template"]["variables"]["properties"]["cpu"]["default"] == 512

    assert httpx.delete(f"{api}/work_pools/{name}", timeout=10).status_code == 204
    gone = provider.read(created.id, state)
    assert gone.id is None

    recreated = provider.create(news)
    assert recreated.id != created.id
    assert live(api, name).status_code == 200
    provider.delete(recreated.id, over_the_wire(recreated.outs))


def test_creating_over_an_existing_pool_is_refused_clearly(prefect_server):
    api = prefect_server.api_url
    provider = restored_provider({})
    name = unique_name()
    created = provider.create(desired(api, name))
    with pytest.raises(PrefectApiError, match=f"work pool named '{name}' already exists.*manageWorkPool false"):
        provider.create(desired(api, name))
    provider.delete(created.id, over_the_wire(created.outs))


def test_wrong_url_is_a_clear_error_not_a_deleted_pool(prefect_server):
    provider = restored_provider({"prefectApiKey": API_KEY})
    nowhere = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(PrefectApiError, match="cannot reach the Prefect API at .*check prefectApiUrl"):
        provider.create(desired(nowhere, "p"))
    not_the_api = prefect_server.api_url.removesuffix("/api") + "/not-api"
    with pytest.raises(PrefectApiError, match="HTTP 404.*is prefectApiUrl the API root"):
        provider.read("id", desired(not_the_api, "p"))


def test_outputs_hold_no_credential(prefect_server):
    api = prefect_server.api_url
    provider = restored_provider({"prefectApiKey": API_KEY})
    created = provider.create(desired(api, unique_name()))
    read = provider.read(created.id, over_the_wire(created.outs))
    for outputs in (created.outs, read.outs):
        assert API_KEY not in json.dumps(outputs)
        assert set(outputs) == {"api_url", "name", "type", "description", "base_job_template",
                                "concurrency_limit", "pool_id"}
    assert API_KEY.encode() not in base64.b64decode(serialized_provider())
    provider.delete(created.id, over_the_wire(created.outs))


def test_serialized_provider_loads_in_a_fresh_process(prefect_server):
    """The provider process is a new interpreter started in the project directory."""
    name = unique_name()
    script = f"""
import base64, dill, json, sys
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
provider = dill.loads(base64.b64decode(sys.argv[1]))
provider.configure(ConfigureRequest(Config({{}}, "{PROJECT}")))
props = json.loads(sys.argv[2])
created = provider.create(props)
print(json.dumps({{"id": created.id, "read": provider.read(created.id, created.outs).id}}))
provider.delete(created.id, created.outs)
"""
    result = subprocess.run(
        [sys.executable, "-c", script, serialized_provider(),
         json.dumps(desired(prefect_server.api_url, name))],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert result.returncode == 0, result.stderr
    ids = json.loads(result.stdout.strip().splitlines()[-1])
    assert ids["id"] == ids["read"]
    assert live(prefect_server.api_url, name).status_code == 404


def test_auth_string_is_sent_as_basic_auth(prefect_server_with_auth):
    api = prefect_server_with_auth.api_url
    provider = restored_provider({"prefectApiAuthString": TEST_AUTH_STRING})
    name = unique_name()
    created = provider.create(desired(api, name))
    assert live(api, name, auth=tuple(TEST_AUTH_STRING.split(":"))).json()["id"] == created.id
    provider.delete(created.id, over_the_wire(created.outs))


@pytest.mark.parametrize("config", [
    {"prefectApiAuthString": "admin:wrong"},
    {"prefectApiKey": API_KEY},
    {},
])
def test_a_refused_credential_is_a_clear_error_without_the_credential(prefect_server_with_auth, config):
    provider = restored_provider(config)
    with pytest.raises(PrefectApiError) as raised:
        provider.create(desired(prefect_server_with_auth.api_url, unique_name()))
    message = str(raised.value)
    assert "refused the credential (HTTP 401)" in message
    assert "check prefectApiKey or prefectApiAuthString" in message
    for value in config.values():
        assert value not in message


def test_credential_from_a_secret_arn_is_read_at_call_time(prefect_server_with_auth, moto_server, monkeypatch):
    moto_server.reset()
    for key, value in moto_server.client_env().items():
        monkeypatch.setenv(key, value)
    arn = boto3.client("secretsmanager").create_secret(
        Name="prefect-auth", SecretString=TEST_AUTH_STRING)["ARN"]
    provider = restored_provider({"prefectApiAuthStringSecretArn": arn})
    assert TEST_AUTH_STRING.encode() not in base64.b64decode(serialized_provider())
    name = unique_name()
    created = provider.create(desired(prefect_server_with_auth.api_url, name))
    assert TEST_AUTH_STRING not in json.dumps(created.outs)
    provider.delete(created.id, over_the_wire(created.outs))

    missing = restored_provider({"prefectApiKeySecretArn": arn.replace("prefect-auth", "absent")})
    with pytest.raises(PrefectApiError, match="could not read the Prefect credential from arn:"):
        missing.create(desired(prefect_server_with_auth.api_url, unique_name()))
