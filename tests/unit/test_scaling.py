"""Worker autoscaling: on only where a stack asks for a range, and never fought by `pulumi up`."""

import json

import pytest

from components.worker.scaling import SCALE_IN_COOLDOWN_SECONDS, SCALE_OUT_COOLDOWN_SECONDS
from tests.support.evaluations import evaluated
from tests.support.harness import evaluate_stack, stack_names

TARGET = "aws:appautoscaling/target:Target"
POLICY = "aws:appautoscaling/policy:Policy"


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_dev_and_staging_run_one_worker_without_autoscaling(stack):
    evaluation = evaluated(stack)
    assert evaluation.of_type(TARGET) == []
    assert evaluation.one("aws:ecs/service:Service", "worker-service").inputs["desiredCount"] == 1


def test_prod_scales_its_worker_service_from_two_to_four():
    evaluation = evaluated("prod")
    target = evaluation.one(TARGET).inputs
    assert (target["minCapacity"], target["maxCapacity"]) == (2, 4)
    assert target["scalableDimension"] == "ecs:service:DesiredCount"
    assert target["serviceNamespace"] == "ecs"
    service_name = evaluation.exports["serviceName"]
    assert target["resourceId"] == f"service/{evaluation.exports['clusterName']}/{service_name}"
    assert evaluation.one("aws:ecs/service:Service", "worker-service").inputs["desiredCount"] == 2


def test_prod_tracks_both_cpu_and_memory_targets():
    policies = {
        p.inputs["targetTrackingScalingPolicyConfiguration"]["predefinedMetricSpecification"][
            "predefinedMetricType"]: p.inputs["targetTrackingScalingPolicyConfiguration"]
        for p in evaluated("prod").of_type(POLICY)
    }
    assert set(policies) == {"ECSServiceAverageCPUUtilization", "ECSServiceAverageMemoryUtilization"}
    assert policies["ECSServiceAverageCPUUtilization"]["targetValue"] == 60
    assert policies["ECSServiceAverageMemoryUtilization"]["targetValue"] == 70


def test_scale_in_is_slower_than_scale_out_so_a_submitting_worker_is_not_stopped_mid_burst():
    policys = evaluated("prod").of_type(POLICY)
    assert policys
    for policy in policys:
        config = policy.inputs["targetTrackingScalingPolicyConfiguration"]
        assert config["scaleInCooldown"] == SCALE_IN_COOLDOWN_SECONDS >= 600
        assert config["scaleOutCooldown"] == SCALE_OUT_COOLDOWN_SECONDS <= 300
        assert config["disableScaleIn"] is False


def test_worker_stop_timeout_leaves_time_for_an_in_flight_submission():
    definition = json.loads(evaluated("prod").one("aws:ecs/taskDefinition:TaskDefinition", "worker-task")
                            .inputs["containerDefinitions"])[0]
    # Fargate caps stopTimeout at 120 s; the init process forwards SIGTERM to the worker.
    assert 30 <= definition["stopTimeout"] <= 120
    assert definition["linuxParameters"]["initProcessEnabled"] is True


def test_scaling_targets_come_from_config():
    evaluation = evaluate_stack("prod", scalingCpuTargetPercent="45", scalingMemoryTargetPercent="55",
                                workerMaxCount="6")
    assert evaluation.one(TARGET).inputs["maxCapacity"] == 6
    values = sorted(p.inputs["targetTrackingScalingPolicyConfiguration"]["targetValue"]
                    for p in evaluation.of_type(POLICY))
    assert values == [45, 55]


@pytest.mark.parametrize("stack", stack_names())
def test_service_ignores_desired_count_drift_exactly_when_autoscaling_owns_it(evaluated, stack):
    evaluation = evaluated(stack)
    service = evaluation.one("aws:ecs/service:Service", "worker-service")
    autoscaled = bool(evaluation.of_type(TARGET))
    assert ("desiredCount" in service.ignore_changes) == autoscaled
    if stack in ("dev", "staging", "prod"):
        assert autoscaled == (stack == "prod")
