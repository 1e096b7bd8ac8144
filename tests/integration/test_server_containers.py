"""The container harness (testbed/server_containers.py) starts a container as ECS would: these pin
the ECS behaviours it copies, so the server tests built on it mean what they say."""

from __future__ import annotations

import json

import pytest

from testbed.replay import Replay
from testbed.server_containers import (
    SecretResolutionError, _listen_locally, relocate_url, resolve_value_from,
)


def test_relocate_url_keeps_the_credentials_and_the_path():
    url = "rediss://:p%40ss@master.cache.amazonaws.com:6379/0"
    assert relocate_url(url, "127.0.0.1", 6400, scheme="redis") == "redis://:p%40ss@127.0.0.1:6400/0"
    assert relocate_url("http://server.internal:4200/api", "127.0.0.1", 5000) == \
        "http://127.0.0.1:5000/api"


@pytest.mark.parametrize("command, expected", [
    (["prefect", "server", "start", "--host", "0.0.0.0"],
     (["prefect", "server", "start", "--host", "127.0.0.1"], False)),
    (["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200", "--no-services"],
     (["prefect", "server", "start", "--host", "127.0.0.1", "--port", "5555", "--no-services"],
      True)),
    (["sh", "-c", "prefect server database upgrade -y && prefect server start --host=0.0.0.0 "
                  "--port 4200"],
     (["sh", "-c", "prefect server database upgrade -y && prefect server start --host=127.0.0.1 "
                   "--port 5555"], True)),
])
def test_the_listening_address_becomes_loopback_and_a_free_port(command, expected):
    assert _listen_locally(command, 5555) == expected


@pytest.mark.slow
def test_value_from_resolves_a_json_key_a_whole_secret_and_a_version_stage(moto):
    replayed = Replay(moto.url)
    sm = replayed.client("secretsmanager")
    arn = sm.create_secret(Name="rds-master",
                           SecretString=json.dumps({"username": "prefect", "password": "first",
                                                    "port": 5432}))["ARN"]
    assert resolve_value_from(replayed, f"{arn}:password::") == "first"
    assert resolve_value_from(replayed, f"{arn}:port::") == "5432"
    assert json.loads(resolve_value_from(replayed, arn))["username"] == "prefect"
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "second"}))
    assert resolve_value_from(replayed, f"{arn}:password::") == "second"
    assert resolve_value_from(replayed, f"{arn}:password:AWSPREVIOUS:") == "first"
    with pytest.raises(SecretResolutionError, match="no JSON key 'pasword'"):
        resolve_value_from(replayed, f"{arn}:pasword::")
    plain = sm.create_secret(Name="plain", SecretString="admin:pw")["ARN"]
    assert resolve_value_from(replayed, plain) == "admin:pw"
    with pytest.raises(SecretResolutionError, match="is not JSON"):
        resolve_value_from(replayed, f"{plain}:password::")
