"""Work pool and flow-run config keys: bad values stop preview with the key, value and what is accepted."""

import pytest

from components.config.reader import ConfigError
from tests.support.harness import evaluate_stack


def error_of(**overrides):
    with pytest.raises(ConfigError) as raised:
        evaluate_stack("dev", **overrides)
    return raised.value


@pytest.mark.parametrize("overrides, key, accepted", [
    ({"workPoolConcurrencyLimit": "-1"}, "workPoolConcurrencyLimit", "from 0 to 10000"),
    ({"workPoolConcurrencyLimit": "ten"}, "workPoolConcurrencyLimit", "a whole number"),
    ({"flowRunCpu": "300"}, "flowRunCpu", "one of Fargate's CPU sizes"),
    ({"flowRunCpu": "256", "flowRunMemory": "4096"}, "flowRunMemory", "with flowRunCpu 256"),
    ({"flowRunImage": "prefecthq/prefect:latest"}, "flowRunImage", "pinned by tag or digest"),
    ({"flowRunImage": "prefecthq/prefect"}, "flowRunImage", "pinned by tag or digest"),
    ({"manageWorkPool": "yes"}, "manageWorkPool", "true or false"),
])
def test_bad_value_names_key_and_accepted(overrides, key, accepted):
    error = error_of(**overrides)
    assert error.key == f"prefect-ecs-worker:{key}"
    assert accepted in str(error)
    assert str(error).startswith(f"prefect-ecs-worker:{key} = ")


def test_worker_size_errors_still_name_worker_keys():
    assert error_of(workerCpu="300").key == "prefect-ecs-worker:workerCpu"
    assert error_of(workerImage="x:latest").key == "prefect-ecs-worker:workerImage"
