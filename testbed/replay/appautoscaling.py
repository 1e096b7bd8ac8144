"""Application Auto Scaling targets and policies."""

from __future__ import annotations

from typing import Any

from tools.mock_engine import Declared
from tools.mock_engine import whole_numbers
from testbed.replay import aws_rules
from testbed.replay.core import HANDLERS, Inputs, Replay, _physical_name, pascal


def _api_fields(value: Any) -> Any:
    """A nested Pulumi input as the API's structure: camelCase keys to PascalCase, and whole
    numbers (the engine's floats) to integers; botocore then checks every key and type."""
    if isinstance(value, dict):
        return {k[0].upper() + k[1:]: _api_fields(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_api_fields(v) for v in value]
    return whole_numbers(value)


def scaling_target(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """RegisterScalableTarget: moto checks that the ECS service exists; AWS also refuses a minimum
    above the maximum."""
    low, high = inputs.integer("minCapacity"), inputs.integer("maxCapacity")
    aws_rules.scaling_capacity_range(resource, low, high)
    request: dict[str, Any] = {
        "ServiceNamespace": inputs.require("serviceNamespace"),
        "ResourceId": inputs.require("resourceId"),
        "ScalableDimension": inputs.require("scalableDimension"),
        "MinCapacity": low, "MaxCapacity": high,
        "RoleARN": inputs.get("roleArn"),
        "SuspendedState": _api_fields(inputs.get("suspendedState")),
        "Tags": inputs.get("tags"),
    }
    arn = replay.client("application-autoscaling").register_scalable_target(
        **{k: v for k, v in request.items() if v is not None})["ScalableTargetARN"]
    return {"arn": arn, "resource_id": request["ResourceId"]}


def scaling_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    scaling = replay.client("application-autoscaling")
    target = {"ServiceNamespace": inputs.require("serviceNamespace"),
              "ResourceId": inputs.require("resourceId"),
              "ScalableDimension": inputs.require("scalableDimension")}
    registered = scaling.describe_scalable_targets(
        ServiceNamespace=target["ServiceNamespace"], ResourceIds=[target["ResourceId"]],
        ScalableDimension=target["ScalableDimension"])["ScalableTargets"]
    aws_rules.scaling_policy_target_registered(resource, registered, target)
    request = {**target, "PolicyName": _physical_name(resource, inputs),
               "PolicyType": inputs.get("policyType") or "StepScaling"}
    inputs.copy(request, pascal("targetTrackingScalingPolicyConfiguration",
                                "stepScalingPolicyConfiguration",
                                "predictiveScalingPolicyConfiguration"), _api_fields)
    arn = scaling.put_scaling_policy(**request)["PolicyARN"]
    return {"arn": arn, "name": request["PolicyName"]}


HANDLERS.update({
    "aws:appautoscaling/target:Target": scaling_target,
    "aws:appautoscaling/policy:Policy": scaling_policy,
})
