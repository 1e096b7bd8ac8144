"""The policy pack's hardening rules: each holds on every stack file (tests/unit/test_policies.py runs
every rule there) and each fails on a resource that breaks it."""

from __future__ import annotations

import copy
import json

import pytest

from tests.support.evaluations import evaluated
from tests.support.harness import stack_names

import worker_rules as rules

HARDENING_RULES = {"read-only-root-filesystem", "encrypted-with-customer-key",
                   "kms-key-rotation-on", "kms-key-use-scoped", "register-task-definition-scoped",
                   "default-security-group-closed", "vpc-has-flow-logs",
                   "vpc-default-security-group-declared"}


def resources(stack):
    return [(r.type, copy.deepcopy(r.inputs)) for r in evaluated(stack).resources]


def props(stack, type_, name=None):
    return copy.deepcopy(evaluated(stack).one(type_, name).inputs)


def edit_json(value, edit):
    document = json.loads(value)
    edit(document)
    return json.dumps(document)


def test_every_hardening_rule_is_in_the_pack():
    names = {r.name for r in (*rules.RESOURCE_RULES, *rules.STACK_RULES)}
    assert names >= HARDENING_RULES


@pytest.mark.parametrize("stack", stack_names())
def test_hardening_rules_hold_on_every_stack(stack):
    results = rules.evaluate(resources(stack))
    assert {name: results[name] for name in HARDENING_RULES if results[name]} == {}


@pytest.mark.parametrize("value", [False, None])
def test_writable_root_filesystem_is_a_violation(value):
    task = props("dev", rules.TASK_DEFINITION)
    task["containerDefinitions"] = edit_json(
        task["containerDefinitions"], lambda c: c[0].update(readonlyRootFilesystem=value))
    assert rules.read_only_root_filesystem(rules.TASK_DEFINITION, task)


@pytest.mark.parametrize("type_, name", [(rules.SECRET, None), (rules.LOG_GROUP, "worker-logs"),
                                         (rules.LOG_GROUP, "vpc-hardening-flow-logs")])
def test_aws_managed_encryption_is_a_violation(type_, name):
    resource = props("dev", type_, name)
    resource.pop("kmsKeyId")
    assert rules.encrypted_with_customer_key(type_, resource)


def test_key_without_rotation_is_a_violation():
    key = {**props("dev", rules.KMS_KEY), "enableKeyRotation": False}
    assert rules.key_rotation_on(rules.KMS_KEY, key)


@pytest.mark.parametrize("case, edit", [
    ("roles decrypt without kms:ViaService",
     lambda doc: next(s for s in doc["Statement"] if s["Sid"].startswith("ExecutionRoles")
                      ).pop("Condition")),
    ("logs for any log group",
     lambda doc: next(s for s in doc["Statement"] if s["Sid"].startswith("CloudWatchLogs")
                      ).pop("Condition")),
    ("AWS's default root kms:*, which hands decrypt to IAM alone",
     lambda doc: doc["Statement"][0].update(Action="kms:*")),
])
def test_key_use_without_a_pinning_condition_is_a_violation(case, edit):
    key_policy = props("dev", rules.KEY_POLICY)
    key_policy["policy"] = edit_json(key_policy["policy"], edit)
    assert rules.key_use_scoped(rules.KEY_POLICY, key_policy), case


@pytest.mark.parametrize("resource", ["*", "arn:aws:ecs:us-east-1:123456789012:task-definition/*"])
def test_register_task_definition_on_every_family_is_a_violation(resource):
    role_policy = props("dev", "aws:iam/rolePolicy:RolePolicy", "iam-worker-task")

    def widen(doc):
        next(s for s in doc["Statement"]
             if s["Action"] == "ecs:RegisterTaskDefinition")["Resource"] = resource

    role_policy["policy"] = edit_json(role_policy["policy"], widen)
    assert rules.register_task_definition_scoped("aws:iam/rolePolicy:RolePolicy", role_policy)


def test_default_security_group_with_rules_is_a_violation():
    group = props("dev", rules.DEFAULT_SECURITY_GROUP)
    group["ingress"] = [{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}]
    assert rules.default_security_group_closed(rules.DEFAULT_SECURITY_GROUP, group)


def test_a_created_vpc_without_flow_logs_or_closed_default_group_is_a_violation():
    stack = resources("staging")
    assert rules.vpc_has_flow_logs([(t, p) for t, p in stack if t != rules.FLOW_LOG])
    assert rules.vpc_default_security_group_declared(
        [(t, p) for t, p in stack if t != rules.DEFAULT_SECURITY_GROUP])
    # Under the real engine awsx's VPC shows as aws:ec2/vpc:Vpc; the rules see that too.
    real_engine = [(t, p) for t, p in stack if t not in (rules.AWSX_VPC, rules.FLOW_LOG)]
    assert rules.vpc_has_flow_logs(real_engine + [(rules.VPC, {})])


@pytest.mark.parametrize("image", ["prefecthq/prefect:3-latest", "prefecthq/prefect:LATEST",
                                   "prefecthq/prefect:3.9.1-latest-python3.12"])
def test_the_pack_flags_latest_anywhere_in_the_tag_as_config_does(image):
    task = props("dev", rules.TASK_DEFINITION)
    task["containerDefinitions"] = edit_json(task["containerDefinitions"],
                                             lambda c: c[0].update(image=image))
    assert rules.image_pinned(rules.TASK_DEFINITION, task)
