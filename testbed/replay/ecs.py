"""The ECS cluster, its capacity providers, the task definition and the service."""

from __future__ import annotations

import json
from typing import Any

from components.prefect.work_pool import whole_numbers
from tools.mock_engine import Declared
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError, _physical_name, ecs_tags


# ExecuteCommandConfiguration (ECS API Reference): logging DEFAULT, NONE or OVERRIDE, and a log
# configuration only with OVERRIDE, where it must name a destination.
EXEC_LOGGING = ("DEFAULT", "NONE", "OVERRIDE")


def _exec_configuration(resource: Declared, declared: dict[str, Any]) -> dict[str, Any]:
    logging = declared.get("logging", "DEFAULT")
    log = declared.get("logConfiguration") or {}
    if logging not in EXEC_LOGGING:
        raise ReplayError(resource, f"InvalidParameterException: logging {logging!r} is not one "
                                    f"of {', '.join(EXEC_LOGGING)}")
    if log and logging != "OVERRIDE":
        raise ReplayError(resource, "InvalidParameterException: logConfiguration is only "
                                    "valid with logging OVERRIDE")
    if logging == "OVERRIDE" and not (log.get("cloudWatchLogGroupName")
                                      or log.get("s3BucketName")):
        raise ReplayError(resource, "InvalidParameterException: logging OVERRIDE needs a "
                                    "CloudWatch log group or an S3 bucket")
    configuration: dict[str, Any] = {"logging": logging}
    if declared.get("kmsKeyId"):
        configuration["kmsKeyId"] = declared["kmsKeyId"]
    if log:
        configuration["logConfiguration"] = {
            key: log[key] for key in ("cloudWatchLogGroupName", "cloudWatchEncryptionEnabled",
                                      "s3BucketName", "s3EncryptionEnabled", "s3KeyPrefix")
            if key in log}
    return configuration


def ecs_cluster(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    configuration = (inputs.get("configuration") or {}).get("executeCommandConfiguration")
    cluster = replay.client("ecs").create_cluster(
        clusterName=_physical_name(resource, inputs),
        settings=inputs.get("settings") or [],
        tags=ecs_tags(inputs.get("tags")),
        **({"configuration": {"executeCommandConfiguration": _exec_configuration(
            resource, configuration)}} if configuration else {}),
    )["cluster"]
    replay.map(resource.id, cluster["clusterArn"])
    replay.map(resource.outputs.get("arn"), cluster["clusterArn"])
    return {"arn": cluster["clusterArn"], "name": cluster["clusterName"]}


def ecs_cluster_capacity_providers(replay: Replay, resource: Declared, inputs: Inputs) -> dict:
    replay.client("ecs").put_cluster_capacity_providers(
        cluster=inputs.require("clusterName"),
        capacityProviders=inputs.require("capacityProviders"),
        defaultCapacityProviderStrategy=[
            {"capacityProvider": s["capacityProvider"], "weight": int(s.get("weight", 0)),
             "base": int(s.get("base", 0))}
            for s in inputs.get("defaultCapacityProviderStrategies") or []],
    )
    return {}


def ecs_task_definition(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """RegisterTaskDefinition with the container definitions exactly as declared: botocore checks
    every key and type against the ECS API model."""
    try:
        containers = json.loads(inputs.require("containerDefinitions"))
    except json.JSONDecodeError as error:
        raise ReplayError(resource, f"containerDefinitions is not JSON: {error}") from error
    optional = {
        "cpu": inputs.get("cpu"),
        "memory": inputs.get("memory"),
        "networkMode": inputs.get("networkMode"),
        "requiresCompatibilities": inputs.get("requiresCompatibilities"),
        "runtimePlatform": inputs.get("runtimePlatform"),
        "executionRoleArn": inputs.get("executionRoleArn"),
        "taskRoleArn": inputs.get("taskRoleArn"),
        "volumes": inputs.get("volumes"),
        "ephemeralStorage": inputs.get("ephemeralStorage"),
        "tags": ecs_tags(inputs.get("tags")) or None,
    }
    # Provider-side: keep old revisions on replace, and track the latest revision in state.
    inputs.engine_side("skipDestroy", "trackLatest")
    definition = replay.client("ecs").register_task_definition(
        family=inputs.require("family"), containerDefinitions=containers,
        **{k: v for k, v in optional.items() if v is not None},
    )["taskDefinition"]
    replay.map(resource.outputs.get("arn"), definition["taskDefinitionArn"])
    return {"arn": definition["taskDefinitionArn"]}


def _api_camel(block: dict[str, Any]) -> dict[str, Any]:
    """A nested block whose API keys are the input's own (camelCase), numbers as integers."""
    return {k: whole_numbers(v) for k, v in block.items() if v is not None}


def ecs_service(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    request: dict[str, Any] = {
        "cluster": inputs.require("cluster"),
        "serviceName": _physical_name(resource, inputs),
        "taskDefinition": inputs.require("taskDefinition"),
        "desiredCount": inputs.integer("desiredCount", 0),
        "tags": ecs_tags(inputs.get("tags")),
    }
    if inputs.get("launchType"):
        request["launchType"] = inputs.get("launchType")
    strategies = inputs.get("capacityProviderStrategies") or []
    if strategies:
        request["capacityProviderStrategy"] = [
            {"capacityProvider": s["capacityProvider"], "weight": int(s.get("weight", 0)),
             "base": int(s.get("base", 0))} for s in strategies]
    if inputs.get("platformVersion"):
        request["platformVersion"] = inputs.get("platformVersion")
    network = inputs.get("networkConfiguration")
    if network is not None:
        public_ip = network.get("assignPublicIp", False)
        if not isinstance(public_ip, bool):
            raise ReplayError(resource, f"assignPublicIp = {public_ip!r} is not a boolean")
        request["networkConfiguration"] = {"awsvpcConfiguration": {
            "subnets": network.get("subnets"),
            "securityGroups": network.get("securityGroups") or [],
            "assignPublicIp": "ENABLED" if public_ip else "DISABLED",
        }}
    deployment: dict[str, Any] = {}
    breaker = inputs.get("deploymentCircuitBreaker")
    if breaker is not None:
        deployment["deploymentCircuitBreaker"] = dict(breaker)
    for key, api_key in (("deploymentMinimumHealthyPercent", "minimumHealthyPercent"),
                         ("deploymentMaximumPercent", "maximumPercent")):
        value = inputs.integer(key)
        if value is not None:
            deployment[api_key] = value
    if deployment:
        request["deploymentConfiguration"] = deployment
    inputs.copy(request, {"enableExecuteCommand": "enableExecuteCommand",
                          "enableEcsManagedTags": "enableECSManagedTags",
                          "propagateTags": "propagateTags",
                          "healthCheckGracePeriodSeconds": "healthCheckGracePeriodSeconds",
                          "schedulingStrategy": "schedulingStrategy"}, whole_numbers)
    registry = inputs.get("serviceRegistries")  # one block in the provider, a list in the API
    if registry is not None:
        request["serviceRegistries"] = [_api_camel(registry)]
    if inputs.get("loadBalancers"):
        request["loadBalancers"] = [_api_camel(lb) for lb in inputs.get("loadBalancers")]
    # The provider polls DescribeServices until steady; AWS sees no such field.
    inputs.engine_side("waitForSteadyState", "forceDelete", "forceNewDeployment", "triggers")
    service = replay.client("ecs").create_service(**request)["service"]
    replay.map(resource.id, service["serviceArn"])
    return {"arn": service["serviceArn"], "name": service["serviceName"],
            "cluster": request["cluster"], "request": request}


HANDLERS.update({
    "aws:ecs/cluster:Cluster": ecs_cluster,
    "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders": ecs_cluster_capacity_providers,
    "aws:ecs/taskDefinition:TaskDefinition": ecs_task_definition,
    "aws:ecs/service:Service": ecs_service,
})
