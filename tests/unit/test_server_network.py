"""Who may talk to whom once the stack runs a server: the worker's egress to the server only, the
server's port open to the worker, flow runs and its ALB only, the database and Redis in isolated
subnets reachable from the server only, and the ALB: HTTPS only from the allowed networks
(public) or HTTP from the worker, flow-run and server groups (internal)."""

from __future__ import annotations

import json
from functools import cache

import pytest

from components.server.database import (ENGINE_MAJOR, PARAMETER_GROUP_FAMILY,
                                        performance_insights_available)
from components.server.access import READINESS_PATH, TLS_POLICY
from components.config.server import SERVER_PORT
from components.platform.network import POSTGRESQL_PORT, REDIS_PORT
from testbed import binaries
from tests.support.harness import (Evaluation, evaluate, server_stack_names, stack_file_values,
                                  stack_settings)
from tests.support.server_evaluations import server_config

SG = "aws:ec2/securityGroup:SecurityGroup"
RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
DB = "aws:rds/instance:Instance"
LISTENER = "aws:lb/listener:Listener"


@cache
def ha_internal() -> Evaluation:
    return evaluate(server_config("selfhosted-prod", serverAccess="internal",
                                  serverDomainName="", serverHostedZoneId="",
                                  serverAllowedCidrs="[]"))


def group_id(evaluation: Evaluation, name: str) -> str:
    return evaluation.one(SG, name).id


@pytest.mark.parametrize("stack", server_stack_names())
def test_worker_egress_reaches_the_server_port_on_the_server_group_only(evaluated, stack):
    evaluation = evaluated(stack)
    egress = evaluation.one(SG, "network-worker-sg").inputs["egress"]
    to_server = [e for e in egress if e["fromPort"] == 4200]
    assert to_server == [{"description": "Prefect server API", "protocol": "tcp",
                          "fromPort": 4200, "toPort": 4200,
                          "securityGroups": [group_id(evaluation, "network-server-sg")]}]
    assert all(e.get("cidrBlocks") == ["0.0.0.0/0"] and e["fromPort"] == 443
               for e in egress if e not in to_server)


@pytest.mark.parametrize("stack", server_stack_names())
def test_server_port_is_open_only_to_the_worker_flow_runs_and_its_alb(evaluated, stack):
    evaluation = evaluated(stack)
    server_sg = group_id(evaluation, "network-server-sg")
    assert evaluation.one(SG, "network-server-sg").inputs.get("ingress") in (None, [])
    sources = {r.inputs["referencedSecurityGroupId"] for r in evaluation.of_type(RULE)
               if r.inputs["securityGroupId"] == server_sg}
    expected = {group_id(evaluation, "network-worker-sg"),
                group_id(evaluation, "network-flow-run-sg")}
    if evaluation.of_type("aws:lb/loadBalancer:LoadBalancer"):
        expected.add(group_id(evaluation, "server-access-sg"))
    assert sources == expected
    rules = evaluation.of_type(RULE)
    assert rules
    for rule in rules:
        assert (rule.inputs["fromPort"], rule.inputs["toPort"], rule.inputs["ipProtocol"]) == (
            4200, 4200, "tcp")
        assert "cidrIpv4" not in rule.inputs


@pytest.mark.parametrize("stack", server_stack_names())
def test_server_egress_is_https_out_and_its_stores_by_group_never_an_address_range(evaluated,
                                                                                 stack):
    evaluation = evaluated(stack)
    server_sg = group_id(evaluation, "network-server-sg")
    assert evaluation.one(SG, "network-server-sg").inputs.get("egress") is None
    egress = [r.inputs for r in evaluation.of_type(EGRESS)
              if r.inputs["securityGroupId"] == server_sg]
    assert egress
    https = [r for r in egress if "cidrIpv4" in r]
    assert [(r["fromPort"], r["cidrIpv4"]) for r in https] == [(443, "0.0.0.0/0")]
    stores = {(r["fromPort"], r["toPort"], r["referencedSecurityGroupId"])
              for r in egress if r not in https}
    expected = {(5432, 5432, group_id(evaluation, "server-db-sg"))}
    if "prod" in stack:
        expected.add((6379, 6379, group_id(evaluation, "server-redis-sg")))
    assert stores == expected


@pytest.mark.parametrize("stack", server_stack_names())
def test_database_and_redis_accept_only_the_server_group_in_isolated_subnets(evaluated, stack):
    evaluation = evaluated(stack)
    server_sg = group_id(evaluation, "network-server-sg")
    ha = stack_settings(stack).server.ha
    stores = [("server-db-sg", POSTGRESQL_PORT)] + ([("server-redis-sg", REDIS_PORT)] if ha else [])
    for name, port in stores:
        group = evaluation.one(SG, name).inputs
        assert group["ingress"] == [{"description": group["ingress"][0]["description"],
                                     "protocol": "tcp", "fromPort": port, "toPort": port,
                                     "securityGroups": [server_sg]}]
        assert group["egress"] == []
    vpc = evaluation.one("awsx:ec2:Vpc")
    isolated = vpc.outputs["isolatedSubnetIds"]
    assert isolated and [s["type"] for s in vpc.inputs["subnetSpecs"]][-1] == "Isolated"
    assert evaluation.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"] == isolated
    groups = evaluation.of_type("aws:elasticache/subnetGroup:SubnetGroup")
    assert bool(groups) == ha
    for group in groups:
        assert group.inputs["subnetIds"] == isolated


@pytest.mark.parametrize("stack", server_stack_names())
def test_the_tests_run_the_postgresql_major_the_database_declares(evaluated, stack):
    """The server tests' PostgreSQL (a wheel, testbed/binaries.py) is the RDS instance's major."""
    declared = evaluated(stack).one(DB).inputs["engineVersion"]
    assert binaries.versions()["postgresql"].split(".")[0] == declared.split(".")[0]


@pytest.mark.parametrize("stack", server_stack_names())
def test_database_is_encrypted_private_tls_only_with_a_managed_password(evaluated, stack):
    evaluation = evaluated(stack)
    values = stack_file_values(stack)
    db = evaluation.one(DB).inputs
    assert db["engine"] == "postgres"
    assert db["engineVersion"] == ENGINE_MAJOR and int(ENGINE_MAJOR) >= 15
    assert db["storageEncrypted"] is True and db["publiclyAccessible"] is False
    assert db["manageMasterUserPassword"] is True
    assert "password" not in db and "passwordWo" not in db
    assert db["instanceClass"] == values["serverDbInstanceClass"]
    assert db["allocatedStorage"] == values["serverDbAllocatedStorageGb"]
    assert db["backupRetentionPeriod"] == values["serverDbBackupRetentionDays"]
    assert db["multiAz"] is (values["prefectServer"] == "ha")
    # Pulumi.yaml's safe defaults (both on) unless the stack file turns them off.
    protected = values.get("serverDbDeletionProtection", True)
    snapshot = values.get("serverDbFinalSnapshot", True)
    assert (protected, snapshot) == ((False, False) if stack == "selfhosted-dev" else (True, True))
    assert db["deletionProtection"] is protected
    assert db["skipFinalSnapshot"] is not snapshot
    assert ("finalSnapshotIdentifier" in db) is snapshot
    params = evaluation.one("aws:rds/parameterGroup:ParameterGroup").inputs
    assert params["family"] == PARAMETER_GROUP_FAMILY
    assert {"name": "rds.force_ssl", "value": "1", "applyMethod": "immediate"} in params["parameters"]
    assert db["parameterGroupName"] == params["name"]


@pytest.mark.parametrize("stack", server_stack_names())
def test_database_exports_its_logs_and_is_monitored_with_insights_where_the_class_offers_them(
        evaluated, stack):
    evaluation = evaluated(stack)
    db = evaluation.one(DB).inputs
    assert db["enabledCloudwatchLogsExports"] == ["postgresql", "upgrade"]
    assert db["monitoringInterval"] == 60
    role = evaluation.one("aws:iam/role:Role", "server-db-monitoring-role")
    assert db["monitoringRoleArn"] == role.outputs["arn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "monitoring.rds.amazonaws.com"}]
    assert trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    (attachment,) = [a.inputs for a in evaluation.of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment") if a.name == "server-db-monitoring-managed"]
    assert attachment["policyArn"].endswith("service-role/AmazonRDSEnhancedMonitoringRole")
    offered = performance_insights_available(db["instanceClass"])
    assert offered is (db["instanceClass"] != "db.t4g.micro")
    assert db["performanceInsightsEnabled"] is offered
    if offered:
        assert db["performanceInsightsKmsKeyId"] == evaluation.exports["stackKeyArn"]
        assert db["performanceInsightsRetentionPeriod"] == 7


def test_dev_database_is_a_small_graviton_instance(evaluated):
    assert evaluated("selfhosted-dev").one(DB).inputs["instanceClass"] == "db.t4g.micro"


def test_redis_is_encrypted_authenticated_and_fails_over_across_azs(evaluated):
    evaluation = evaluated("selfhosted-prod")
    redis = evaluation.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert redis["transitEncryptionEnabled"] is True and redis["atRestEncryptionEnabled"] is True
    assert redis["automaticFailoverEnabled"] is True and redis["multiAzEnabled"] is True
    assert redis["numCacheClusters"] == 2
    assert redis["authToken"]["4dabf18193072939515e22adb298388d"]  # a secret input
    assert redis["nodeType"] == "cache.t4g.small"


def test_public_alb_is_https_only_from_the_allowed_networks(evaluated):
    evaluation = evaluated("selfhosted-prod")
    lb = evaluation.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert lb["internal"] is False and lb["dropInvalidHeaderFields"] is True
    assert lb["subnets"] == evaluation.exports["publicSubnetIds"]
    alb_sg = evaluation.one(SG, "server-access-sg").inputs
    assert {(i["fromPort"], tuple(i["cidrBlocks"])) for i in alb_sg["ingress"]} == {
        (443, ("203.0.113.0/24",)), (80, ("203.0.113.0/24",))}
    listeners = {lst.inputs["port"]: lst.inputs for lst in evaluation.of_type(LISTENER)}
    assert listeners[443]["protocol"] == "HTTPS" and listeners[443]["sslPolicy"] == TLS_POLICY
    assert "TLS13" in TLS_POLICY
    assert listeners[80]["defaultActions"] == [{"type": "redirect", "redirect": {
        "protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}]
    cert = evaluation.one("aws:acm/certificate:Certificate").inputs
    assert (cert["domainName"], cert["validationMethod"]) == ("prefect.example.com", "DNS")
    validation = evaluation.one("aws:acm/certificateValidation:CertificateValidation").inputs
    assert listeners[443]["certificateArn"] == validation["certificateArn"]
    records = {r.name: r.inputs for r in evaluation.of_type("aws:route53/record:Record")}
    assert records["server-access-alias"]["aliases"][0]["evaluateTargetHealth"] is True
    assert evaluation.exports["serverUrl"] == "https://prefect.example.com"


def test_alb_logs_every_request_to_the_sse_s3_log_bucket_and_prod_protects_it(evaluated):
    for stack, protected in (("selfhosted-prod", True),):
        evaluation = evaluated(stack)
        lb = evaluation.one("aws:lb/loadBalancer:LoadBalancer").inputs
        assert lb["enableDeletionProtection"] is protected
        bucket = evaluation.one("aws:s3/bucket:Bucket", "access-logs-bucket").inputs["bucket"]
        assert lb["accessLogs"] == {"bucket": bucket, "prefix": "alb", "enabled": True}
        (rule,) = evaluation.one(
            "aws:s3/bucketServerSideEncryptionConfiguration:"
            "BucketServerSideEncryptionConfiguration", "access-logs-encryption").inputs["rules"]
        # ELB delivers access logs to SSE-S3 buckets only.
        assert rule == {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
        statements = {s["Sid"]: s for s in json.loads(evaluation.one(
            "aws:s3/bucketPolicy:BucketPolicy", "access-logs-policy").inputs["policy"])[
            "Statement"]}
        elb = statements["ElbDeliversAlbAccessLogs"]
        assert elb["Principal"] == {"AWS": "arn:aws:iam::127311923021:root"}  # us-east-1's ELB
        assert elb["Resource"] == f"arn:aws:s3:::{bucket}/alb/AWSLogs/123456789012/*"
    internal = ha_internal().one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert internal["enableDeletionProtection"] is True and internal["accessLogs"]["enabled"]


def test_internal_ha_alb_takes_http_from_the_worker_flow_run_and_server_groups_only():
    evaluation = ha_internal()
    lb = evaluation.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert lb["internal"] is True
    alb_sg = evaluation.one(SG, "server-access-sg").inputs
    assert alb_sg["ingress"] and all(
        (i["fromPort"], i["toPort"]) == (80, 80) and not i.get("cidrBlocks")
        for i in alb_sg["ingress"])
    assert sorted(g for i in alb_sg["ingress"] for g in i["securityGroups"]) == sorted(
        group_id(evaluation, name)
        for name in ("network-worker-sg", "network-flow-run-sg", "network-server-sg"))
    assert [lst.inputs["port"] for lst in evaluation.of_type(LISTENER)] == [80]
    assert not evaluation.of_type("aws:acm/certificate:Certificate")


def test_single_internal_has_no_load_balancer(evaluated):
    evaluation = evaluated("selfhosted-dev")
    assert not evaluation.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert "serverUrl" not in evaluation.exports


@pytest.mark.parametrize("stack", server_stack_names())
def test_a_load_balanced_server_has_target_groups_that_check_readiness(evaluated, stack):
    groups = evaluated(stack).of_type("aws:lb/targetGroup:TargetGroup")
    if not stack_settings(stack).server.load_balanced:
        assert groups == []
        return
    assert groups
    for group in groups:
        assert group.inputs["healthCheck"]["path"] == READINESS_PATH == "/api/ready"
        assert group.inputs["targetType"] == "ip" and group.inputs["port"] == SERVER_PORT == 4200


def test_the_server_stacks_include_a_load_balanced_one():
    assert [s for s in server_stack_names() if stack_settings(s).server.load_balanced]


def test_load_balanced_services_wait_for_the_listeners_of_their_target_group(evaluated):
    """ECS refuses a service whose target group no listener forwards to yet."""
    evaluation = evaluated("selfhosted-prod")
    listeners = {r.urn for r in evaluation.of_type(LISTENER)
                 if any(a["type"] == "forward" for a in r.inputs["defaultActions"])}
    assert listeners
    api = evaluation.one("aws:ecs/service:Service", "server-api-service")
    assert listeners <= set(api.depends_on)
    services = evaluation.one("aws:ecs/service:Service", "server-services-service")
    assert not listeners & set(services.depends_on)
