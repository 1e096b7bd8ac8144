"""The scaling, alarm and Container Insights keys: defaults per stack, and each bad value refused
with the key, the value and what is accepted, before any resource is declared."""

import pytest

from components.config.reader import ConfigError
from tests.support.harness import RecordingMocks, evaluate_stack
import tests.support.harness as harness


@pytest.mark.parametrize("key, value, accepted", [
    ("workerMinCount", "-1", "from 0 to 10"),
    ("workerMinCount", "11", "from 0 to 10"),
    ("workerMinCount", "two", "a whole number"),
    ("workerMaxCount", "11", "from 0 to 10"),
    ("workerMaxCount", "1.5", "a whole number"),
    ("scalingCpuTargetPercent", "95", "from 10 to 90"),
    ("scalingCpuTargetPercent", "5", "from 10 to 90"),
    ("scalingMemoryTargetPercent", "0", "from 10 to 90"),
    ("scalingMemoryTargetPercent", "high", "a whole number"),
    ("containerInsights", "enhanced", "one of enabled, disabled"),
    ("containerInsights", "true", "one of enabled, disabled"),
    ("alarmEmail", "oncall", "an email address"),
    ("alarmEmail", "oncall@example", "an email address"),
    ("alarmEmail", "a b@example.com", "an email address"),
    ("alarmCpuHighPercent", "0", "from 1 to 100"),
    ("alarmCpuHighPercent", "101", "from 1 to 100"),
    ("alarmMemoryHighPercent", "150", "from 1 to 100"),
    ("alarmMemoryHighPercent", "80%", "a whole number"),
    ("alarmEvaluationMinutes", "0", "from 1 to 60"),
    ("alarmEvaluationMinutes", "61", "from 1 to 60"),
])
def test_bad_operations_value_is_refused_with_key_value_and_what_is_accepted(key, value, accepted):
    with pytest.raises(ConfigError) as error:
        evaluate_stack("staging", **{key: value})
    message = str(error.value)
    assert message.startswith(f"prefect-ecs-worker:{key} = ")
    assert value.strip("%") in message or value in message
    assert accepted in message


def test_a_refused_value_declares_nothing(monkeypatch):
    recorded = []

    class Recording(RecordingMocks):
        def new_resource(self, args):
            recorded.append(args.typ)
            return super().new_resource(args)

    monkeypatch.setattr(harness, "RecordingMocks", Recording)
    with pytest.raises(ConfigError):
        evaluate_stack("prod", alarmEmail="not-an-address")
    assert recorded == []


def test_max_below_min_is_refused():
    with pytest.raises(ConfigError, match="workerMaxCount = 2 .*from workerMinCount \\(3\\)"):
        evaluate_stack("prod", workerMinCount="3", workerMaxCount="2", workerCount="3")


def test_worker_count_outside_the_scaling_range_is_refused():
    with pytest.raises(ConfigError, match="workerCount = 1 .*from workerMinCount \\(2\\) to "
                                          "workerMaxCount \\(4\\)"):
        evaluate_stack("prod", workerCount="1")


def test_unset_min_and_max_follow_worker_count_so_nothing_scales():
    evaluation = evaluate_stack("staging", workerMinCount="0", workerMaxCount="0", workerCount="3")
    assert evaluation.one("aws:ecs/service:Service").inputs["desiredCount"] == 3
    assert evaluation.of_type("aws:appautoscaling/target:Target") == []
