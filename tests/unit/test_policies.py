"""The policy pack's rules hold for every stack file, each rule catches a violating resource, and
the CrossGuard adapter, driven through the policy SDK's own analyzer service with the engine's wire
format, reports exactly what the plain functions report."""

from __future__ import annotations

import copy
import json
import os
import sys
import time

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime import proto

# The pack's modules as Pulumi loads them, flat from policies/ (pytest's pythonpath has it).
import worker_pack
import worker_rules as rules
from pulumi_policy.policy import EnforcementLevel, _PolicyAnalyzerServicer
from tests.support.evaluations import evaluated, evaluated_seed
from tests.support.harness import ROOT, stack_names


def resources(evaluation):
    return [(r.type, r.inputs) for r in evaluation.resources]


@pytest.mark.parametrize("stack", [*stack_names(), "seed"])
def test_every_stack_file_passes_every_rule(stack):
    evaluation = evaluated_seed() if stack == "seed" else evaluated(stack)
    results = rules.evaluate(resources(evaluation))
    assert set(results) == {r.name for r in (*rules.RESOURCE_RULES, *rules.STACK_RULES)}
    assert {name: v for name, v in results.items() if v} == {}


@pytest.mark.parametrize("stack", stack_names())
def test_every_resource_rule_has_something_to_check_in_every_stack(stack):
    declared = {type_ for type_, _ in resources(evaluated(stack))}
    for rule in rules.RESOURCE_RULES:
        assert declared & set(rule.types), f"{rule.name} checks nothing in {stack}"


# --- each rule against a resource that breaks it ----------------------------------------------

def declared(stack, type_, name=None):
    return copy.deepcopy(evaluated(stack).one(type_, name).inputs)


def with_container(props, **changes):
    containers = json.loads(props["containerDefinitions"])
    containers[0].update(changes)
    return {**props, "containerDefinitions": json.dumps(containers)}


def with_statement(props, statement):
    document = json.loads(props["policy"])
    document["Statement"].append(statement)
    return {**props, "policy": json.dumps(document)}


def test_api_key_in_plain_environment_is_a_violation():
    props = declared("staging", rules.TASK_DEFINITION)
    environment = json.loads(props["containerDefinitions"])[0]["environment"]
    bad = with_container(props, environment=[*environment,
                                             {"name": "PREFECT_API_KEY", "value": "pnu_x"}])
    (message,) = rules.no_secret_in_container_environment(rules.TASK_DEFINITION, bad)
    assert "PREFECT_API_KEY" in message
    for name in ("DB_PASSWORD", "GITHUB_TOKEN", "PREFECT_API_AUTH_STRING", "MY_SECRET"):
        assert rules.no_secret_in_container_environment(
            rules.TASK_DEFINITION, with_container(props, environment=[{"name": name, "value": "x"}]))


@pytest.mark.parametrize("action", ["*", "ecs:*", ["ecs:RunTask", "s3:*"]])
def test_star_action_is_a_violation(action):
    props = declared("prod", "aws:iam/rolePolicy:RolePolicy", "iam-worker-task")
    bad = with_statement(props, {"Effect": "Allow", "Action": action, "Resource": "*"})
    assert rules.no_iam_star_action("aws:iam/rolePolicy:RolePolicy", bad)


def test_not_action_allow_is_a_violation():
    props = declared("prod", "aws:iam/rolePolicy:RolePolicy", "iam-worker-task")
    bad = with_statement(props, {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert rules.no_iam_star_action("aws:iam/rolePolicy:RolePolicy", bad)


def test_pass_role_without_passed_to_service_is_a_violation():
    props = declared("prod", "aws:iam/rolePolicy:RolePolicy", "iam-worker-task")
    document = json.loads(props["policy"])
    for statement in document["Statement"]:
        if statement["Action"] == "iam:PassRole":
            del statement["Condition"]
    bad = {**props, "policy": json.dumps(document)}
    (message,) = rules.pass_role_scoped_to_a_service("aws:iam/rolePolicy:RolePolicy", bad)
    assert "iam:PassedToService" in message
    star = with_statement(props, {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
                                  "Condition": {"StringEquals": {"iam:PassedToService": "x"}}})
    assert rules.pass_role_scoped_to_a_service("aws:iam/rolePolicy:RolePolicy", star)


@pytest.mark.parametrize("type_, ingress", [
    (rules.SECURITY_GROUP, {"ingress": [{"protocol": "tcp", "fromPort": 8080, "toPort": 8080,
                                         "cidrBlocks": ["0.0.0.0/0"]}]}),
    (rules.SECURITY_GROUP, {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0,
                                         "ipv6CidrBlocks": ["::/0"]}]}),
    (rules.SECURITY_GROUP_RULE, {"type": "ingress", "fromPort": 22, "toPort": 22,
                                 "cidrBlocks": ["0.0.0.0/0"]}),
    (rules.INGRESS_RULE, {"fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}),
])
def test_ingress_from_anywhere_is_a_violation(type_, ingress):
    props = {**declared("prod", rules.SECURITY_GROUP, "network-worker-sg"), **ingress}
    assert rules.no_ingress_from_anywhere(type_, props)


def test_egress_to_anywhere_is_not_ingress():
    props = declared("prod", rules.SECURITY_GROUP, "network-flow-run-sg")
    assert props["egress"][0]["cidrBlocks"] == ["0.0.0.0/0"]
    assert rules.no_ingress_from_anywhere(rules.SECURITY_GROUP, props) == []


@pytest.mark.parametrize("retention", [None, 0])
def test_log_group_without_retention_is_a_violation(retention):
    props = declared("dev", rules.LOG_GROUP, "worker-logs")
    props["retentionInDays"] = retention
    assert rules.log_retention_set(rules.LOG_GROUP, props)


@pytest.mark.parametrize("image", ["prefecthq/prefect-aws", "prefecthq/prefect-aws:latest",
                                   "registry:5000/team/worker:latest-py3.12"])
def test_unpinned_image_is_a_violation(image):
    props = with_container(declared("dev", rules.TASK_DEFINITION), image=image)
    assert rules.image_pinned(rules.TASK_DEFINITION, props)


def test_digest_and_registry_port_count_as_pinned():
    digest = "prefecthq/prefect-aws@sha256:" + "a" * 64
    for image in (digest, "registry:5000/team/worker:3.9.1"):
        props = with_container(declared("dev", rules.TASK_DEFINITION), image=image)
        assert rules.image_pinned(rules.TASK_DEFINITION, props) == []


@pytest.mark.parametrize("days", [0, 3, 31])
def test_secret_without_a_recovery_window_is_a_violation(days):
    props = {**declared("dev", rules.SECRET), "recoveryWindowInDays": days}
    assert rules.secret_has_recovery_window(rules.SECRET, props)


def test_public_worker_ip_with_nat_gateways_is_a_violation():
    stack = resources(evaluated("staging"))
    bad = [(t, copy.deepcopy(p)) for t, p in stack]
    for type_, props in bad:
        if type_ == rules.SERVICE:
            props["networkConfiguration"]["assignPublicIp"] = True
    (message,) = rules.worker_has_no_public_ip_in_private_modes(bad)
    assert "public IP" in message
    # The real engine shows awsx's NAT gateways as resources of their own.
    without_awsx = [(t, p) for t, p in bad if t != rules.AWSX_VPC] + [(rules.NAT_GATEWAY, {})]
    assert rules.worker_has_no_public_ip_in_private_modes(without_awsx)


def test_public_worker_ip_without_nat_is_the_dev_design_not_a_violation():
    stack = resources(evaluated("dev"))
    service = next(p for t, p in stack if t == rules.SERVICE)
    assert service["networkConfiguration"]["assignPublicIp"] is True
    assert rules.worker_has_no_public_ip_in_private_modes(stack) == []


# --- the CrossGuard adapter through the SDK's analyzer service --------------------------------

def analyzer():
    return _PolicyAnalyzerServicer("test-pack", "0.0.1", worker_pack.policies(),
                                   EnforcementLevel.MANDATORY)


def struct(props):
    value = struct_pb2.Struct()
    value.update(json.loads(json.dumps(props)))
    return value


def analyze(resource_list):
    service = analyzer()
    diagnostics = []
    for index, (type_, props) in enumerate(resource_list):
        request = proto.AnalyzeRequest(type=type_, properties=struct(props),
                                       urn=f"urn:pulumi:test::p::{type_}::r{index}", name=f"r{index}")
        diagnostics += service.Analyze(request, None).diagnostics
    stack_request = proto.AnalyzeStackRequest(resources=[
        proto.AnalyzerResource(type=t, properties=struct(p), urn=f"urn:pulumi:test::p::{t}::r{i}",
                               name=f"r{i}")
        for i, (t, p) in enumerate(resource_list)])
    diagnostics += service.AnalyzeStack(stack_request, None).diagnostics
    return [(d.policyName, d.message) for d in diagnostics]


@pytest.mark.parametrize("stack", stack_names())
def test_policy_pack_finds_nothing_in_a_stack_file(stack):
    assert analyze(resources(evaluated(stack))) == []


def test_policy_pack_reports_what_the_plain_rules_report():
    stack = [(t, copy.deepcopy(p)) for t, p in resources(evaluated("staging"))]
    for type_, props in stack:
        if type_ == rules.SERVICE:
            props["networkConfiguration"]["assignPublicIp"] = True
        if type_ == rules.LOG_GROUP:
            props["retentionInDays"] = 0
        if type_ == rules.SECRET:
            props["recoveryWindowInDays"] = 0
    expected = {name for name, found in rules.evaluate(stack).items() if found}
    assert expected == {"worker-has-no-public-ip-in-private-modes", "log-retention-set",
                        "secret-has-recovery-window"}
    assert {name for name, _ in analyze(stack)} == expected


def test_policy_pack_names_every_rule_as_mandatory():
    policies = worker_pack.policies()
    assert [p.name for p in policies] == [
        r.name for r in (*rules.RESOURCE_RULES, *rules.STACK_RULES)]
    assert {p.enforcement_level for p in policies} == {EnforcementLevel.MANDATORY}


# --- the pack as the CLI runs it: its own process, spoken to over gRPC -------------------------

@pytest.mark.slow
def test_policy_pack_process_serves_the_rules_over_grpc(tmp_path):
    import grpc
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2_grpc

    from testbed.servers import spawn, stop

    log = tmp_path / "pack.log"
    pack = spawn([sys.executable, "-u", str(ROOT / "policies" / "__main__.py")], dict(os.environ), log)
    try:
        deadline = time.monotonic() + 30
        while not log.read_text().strip() and time.monotonic() < deadline:
            assert pack.poll() is None, log.read_text()
            time.sleep(0.1)
        port = int(log.read_text().split()[0])  # the pack prints its port, as the CLI expects
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=10)
            assert info.name == worker_pack.PACK_NAME
            assert [p.name for p in info.policies] == [
                r.name for r in (*rules.RESOURCE_RULES, *rules.STACK_RULES)]
            props = declared("dev", rules.SECRET)
            props["recoveryWindowInDays"] = 0
            response = stub.Analyze(proto.AnalyzeRequest(
                type=rules.SECRET, properties=struct(props), urn="urn:pulumi:dev::p::secret::s",
                name="s"), timeout=10)
            assert [d.policyName for d in response.diagnostics] == ["secret-has-recovery-window"]
    finally:
        stop(pack)


@pytest.mark.parametrize("change,says", [({"deletionProtection": False}, "no deletion protection"),
                                         ({"skipFinalSnapshot": True}, "skips its final snapshot")])
def test_a_prod_database_that_a_destroy_would_take_is_a_violation(change, says):
    props = {**declared("selfhosted-prod", "aws:rds/instance:Instance"), **change}
    assert rules.prod_database_kept([]) == []
    assert rules.prod_database_kept([("aws:rds/instance:Instance", declared(
        "selfhosted-prod", "aws:rds/instance:Instance"))]) == []
    (violation,) = rules.prod_database_kept([("aws:rds/instance:Instance", props)])
    assert says in violation


def test_a_dev_database_may_go_with_its_stack():
    props = declared("selfhosted-dev", "aws:rds/instance:Instance")
    assert props["deletionProtection"] is False and props["skipFinalSnapshot"] is True
    assert rules.prod_database_kept([("aws:rds/instance:Instance", props)]) == []
