"""Hardening keys: bad values stop preview with the key, the value and what is accepted, before
any resource is declared."""

from __future__ import annotations

import pytest

from components.config.reader import ConfigError
from tests.support.harness import RecordingMocks, evaluate, load_stack_config, with_credentials


@pytest.mark.parametrize("key, value, accepted", [
    ("vpcFlowLogs", "yes", "true or false"),
    ("vpcFlowLogRetentionDays", "10", "one of 1, 3, 5, 7, 14, 30"),
    ("vpcFlowLogRetentionDays", "ninety", "a whole number"),
    ("flowRunEgress", "http", "one of any, https"),
])
def test_bad_value_names_key_value_and_accepted_before_any_resource(key, value, accepted):
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        evaluate(with_credentials(load_stack_config("dev"), **{key: value}), mocks=mocks)
    message = str(raised.value)
    assert message.startswith(f"prefect-ecs-worker:{key} = ")
    assert value in message and accepted in message
    assert [r for r in mocks.resources if r.type.startswith("aws:")] == []


@pytest.mark.parametrize("image", ["prefecthq/prefect:3-latest", "prefecthq/prefect:LATEST",
                                   "prefecthq/prefect:latest", "prefecthq/prefect"])
def test_config_refuses_what_the_policy_pack_flags(image):
    """One rule (policies/worker_rules.image_is_pinned) for both: 3-latest and LATEST included."""
    from policies.worker_rules import image_is_pinned

    assert not image_is_pinned(image)
    with pytest.raises(ConfigError, match="workerImage"):
        evaluate(with_credentials(load_stack_config("dev"), workerImage=image))
