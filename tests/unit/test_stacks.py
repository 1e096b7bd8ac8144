"""Every stack file in the repo, loaded the way the CLI loads it (project defaults, then the stack
file), declares a complete stack: only declared keys of the declared types, no credential in any
file, the tags on every taggable resource, every export present and none secret, and the job
variables a work pool needs."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
from pathlib import Path

import pytest

from components.config.credential import CREDENTIAL_KEYS
from components.composition import CONDITIONAL_EXPORTS
from components.server.composition import SERVER_EXPORTS
from components.composition import EXPORTS as STACK_EXPORTS
from tests.support.harness import (
    PROJECT, REGION, ROOT, TEST_API_KEY, load_stack_config, project_defaults, read_yaml,
    runs_server, stack_file_values, stack_names,
)

YAML_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list}
# The one spec of the outputs, which also feeds the README's exports table.
EXPORTS = set(STACK_EXPORTS) - CONDITIONAL_EXPORTS
SCALING_TARGET = "aws:appautoscaling/target:Target"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
PREFECT_AWS = Path(importlib.util.find_spec("prefect_aws").origin).parent


def declared_config() -> dict[str, dict]:
    return read_yaml(ROOT / "Pulumi.yaml")["config"]


def is_taggable(type_token: str) -> bool:
    """Whether the provider resource behind a type token takes `tags`."""
    package, module_path, class_name = type_token.split(":")
    if package not in ("aws", "awsx"):
        return False  # this program's own components are not cloud resources
    module = importlib.import_module(
        f"pulumi_{package}.{module_path.split('/')[0]}")
    resource_class = getattr(module, class_name)
    return "tags" in inspect.signature(resource_class._internal_init).parameters


def ecs_job_variables() -> set[str]:
    """The variables of prefect-aws's ECS work pool template, read from its source."""
    tree = ast.parse((PREFECT_AWS / "workers" / "ecs_worker.py").read_text())
    (variables,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ECSVariables"]
    return {n.target.id for n in variables.body if isinstance(n, ast.AnnAssign)}


def test_every_stack_file_is_found():
    assert {"dev", "staging", "prod"} <= set(stack_names())


@pytest.mark.parametrize("stack", stack_names())
def test_stack_file_sets_only_declared_keys_with_their_declared_types(stack):
    declared = declared_config()
    for key, value in stack_file_values(stack).items():
        assert key in declared, f"Pulumi.{stack}.yaml sets undeclared {PROJECT}:{key}"
        assert isinstance(value, YAML_TYPES[declared[key]["type"]]), key


@pytest.mark.parametrize("stack", stack_names())
def test_no_stack_file_holds_a_credential(stack):
    assert not set(CREDENTIAL_KEYS) & set(stack_file_values(stack))
    text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
    assert "pnu_" not in text and "secure:" not in text


def test_config_is_project_defaults_overlaid_by_the_stack_file():
    config = load_stack_config("dev")
    assert config[f"{PROJECT}:natGateways"] == "none"  # from the stack file
    assert config[f"{PROJECT}:vpcCidr"] == declared_config()["vpcCidr"]["default"]  # default
    assert json.loads(config[f"{PROJECT}:tags"]) == ["environment=dev"]  # arrays as JSON


@pytest.mark.parametrize("stack", stack_names())
def test_stack_declares_the_worker_service(evaluated, stack):
    evaluation = evaluated(stack)
    service = evaluation.one("aws:ecs/service:Service", "worker-service")
    assert service.inputs["desiredCount"] >= 1
    assert evaluation.exports["workPoolName"] == f"ecs-{stack}"


@pytest.mark.parametrize("stack", stack_names())
def test_every_taggable_resource_carries_the_stack_tags(evaluated, stack):
    expected = {"project": PROJECT, "stack": stack, "managed-by": "pulumi",
                **dict(tag.split("=", 1) for tag in stack_file_values(stack)["tags"])}
    taggable = [r for r in evaluated(stack).resources if is_taggable(r.type)]
    assert len({r.type for r in taggable}) >= 7
    for resource in taggable:
        assert expected.items() <= (resource.inputs.get("tags") or {}).items(), resource.name


def test_untaggable_types_are_the_ones_aws_cannot_tag(evaluated):
    untaggable = {r.type for r in evaluated("prod").resources
                  if r.type.startswith("aws:") and not is_taggable(r.type)}
    assert untaggable == {
        "aws:appautoscaling/policy:Policy",
        "aws:cloudwatch/eventTarget:EventTarget",
        "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:kms/alias:Alias",
        "aws:kms/keyPolicy:KeyPolicy",
        "aws:secretsmanager/secretVersion:SecretVersion",
        "aws:sns/topicPolicy:TopicPolicy",
        "aws:sqs/queuePolicy:QueuePolicy",
        "aws:ecr/lifecyclePolicy:LifecyclePolicy",
        "aws:ecr/repositoryPolicy:RepositoryPolicy",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketLogging:BucketLogging",
    }


@pytest.mark.parametrize("stack", stack_names())
def test_every_export_is_present_and_none_is_secret(evaluated, stack):
    evaluation = evaluated(stack)
    # Each conditional export, and the resource whose presence it follows.
    conditional = {"workerScalingResourceId": SCALING_TARGET,
                   "defaultSecurityGroupId": "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
                   "vpcFlowLogGroupName": "aws:ec2/flowLog:FlowLog",
                   "flowImageRepositoryUrl": "aws:ecr/repository:Repository",
                   "flowCodeBucketName": "aws:s3/bucket:Bucket",
                   **{name: "aws:rds/instance:Instance" for name in SERVER_EXPORTS
                      if name != "serverUrl"},
                   "serverUrl": LOAD_BALANCER}
    assert set(conditional) == CONDITIONAL_EXPORTS
    present = {name for name, type_ in conditional.items() if evaluation.of_type(type_)}
    assert set(evaluation.exports) == EXPORTS | present
    assert set(evaluation.exports) <= set(STACK_EXPORTS)
    assert bool(evaluation.of_type("aws:rds/instance:Instance")) == runs_server(stack)
    assert evaluation.secret_exports == set()
    assert all(value not in (None, "") for value in evaluation.exports.values())
    assert TEST_API_KEY not in json.dumps(evaluation.exports)


@pytest.mark.parametrize("stack", stack_names())
def test_job_variables_put_flow_runs_in_this_stack(evaluated, stack):
    exports = evaluated(stack).exports
    values = {**project_defaults(), **stack_file_values(stack)}
    no_nat = values["natGateways"] == "none"
    assert exports["workPoolJobVariables"] == {
        "cluster": exports["clusterArn"],
        "vpc_id": exports["vpcId"],
        "network_configuration": {
            "subnets": exports["workerSubnetIds"],
            "securityGroups": [exports["flowRunSecurityGroupId"]],
            "assignPublicIp": "ENABLED" if no_nat else "DISABLED",
        },
        "execution_role_arn": exports["flowRunExecutionRoleArn"],
        "task_role_arn": exports["flowRunTaskRoleArn"],
        ("prefect_api_auth_string_secret_arn" if runs_server(stack)
         else "prefect_api_key_secret_arn"): exports["credentialSecretArn"],
        "configure_cloudwatch_logs": True,
        "cloudwatch_logs_options": {"awslogs-group": exports["logGroupName"],
                                    "awslogs-region": REGION,
                                    "awslogs-stream-prefix": "flow-run",
                                    "awslogs-create-group": "false"},
        "match_latest_revision_in_family": True,
        "capacity_provider_strategy": [
            {"capacityProvider": values["capacityProvider"], "weight": 1, "base": 0}],
        "cpu": values["flowRunCpu"],
        "memory": values["flowRunMemory"],
        "image": values["flowRunImage"],
    }


def test_job_variables_are_variables_of_prefect_aws_ecs_pools(evaluated):
    names = set(evaluated("dev").exports["workPoolJobVariables"])
    known = ecs_job_variables()
    assert {"cluster", "vpc_id", "network_configuration"} <= known  # the source scan works
    assert names <= known
