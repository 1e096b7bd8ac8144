"""The replay handlers for the server's resources (testbed/replay/): a sound declaration reaches
moto as declared, and each broken one is refused with the error AWS (or the provider) gives,
naming the resource, where moto alone would accept it."""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

import pytest

from tests.support.harness import SECRET_SIG, Declared
from testbed.replay import Replay, ReplayError

pytestmark = pytest.mark.slow

SUBNET_GROUP = "aws:rds/subnetGroup:SubnetGroup"
PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
INSTANCE = "aws:rds/instance:Instance"
SECRET_WRAP = "1b47061264138c4ac30d75fd1eb44270"


@pytest.fixture(scope="module")
def network(moto_server) -> dict[str, Any]:
    """A VPC with two subnets in two AZs, and a third in the first AZ; shared by the module's
    tests, each of which names its resources apart (`database(network, suffix)`)."""
    moto_server.reset()
    replayed = Replay(moto_server.url)
    ec2 = replayed.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24",
                                 AvailabilityZone=zones[min(i, 1) if i < 2 else 0])
               ["Subnet"]["SubnetId"] for i in range(3)]
    group = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    return {"replay": replayed, "vpc": vpc, "two_azs": subnets[:2],
            "one_az": [subnets[0], subnets[2]], "sg": group}


def database(network, suffix: str = "") -> list[Declared]:
    """What a server stack declares for its database, as the engine passes it on."""
    resources = [
        Declared(SUBNET_GROUP, "server-db-subnets",
                 {"name": "server-db-subnets", "subnetIds": network["two_azs"]},
                 id="server-db-subnets", outputs={"name": "server-db-subnets"}),
        Declared(PARAMETER_GROUP, "server-db-params",
                 {"name": "server-db-params", "family": "postgres16",
                  "parameters": [{"name": "rds.force_ssl", "value": "1",
                                  "applyMethod": "pending-reboot"}]},
                 id="server-db-params", outputs={"name": "server-db-params"}),
        Declared(INSTANCE, "server-db", {
            "identifier": "server-db", "engine": "postgres", "engineVersion": "16.4",
            "instanceClass": "db.t4g.micro", "allocatedStorage": 20.0, "storageType": "gp3",
            "storageEncrypted": True, "dbName": "prefect", "username": "prefect",
            "manageMasterUserPassword": True, "dbSubnetGroupName": "server-db-subnets",
            "parameterGroupName": "server-db-params", "vpcSecurityGroupIds": [network["sg"]],
            "publiclyAccessible": False, "multiAz": False, "backupRetentionPeriod": 7.0,
            "skipFinalSnapshot": True, "deletionProtection": False, "applyImmediately": True,
        }, id="server-db", outputs={
            "name": "server-db", "address": "server-db.mock.us-east-1.rds.amazonaws.com",
            "masterUserSecrets": [{"secretArn": "arn:aws:secretsmanager:us-east-1:123456789012:"
                                                "secret:rds!db-mock-AbC123"}]}),
    ]
    for resource in resources:
        for key in ("name", "identifier", "dbSubnetGroupName", "parameterGroupName"):
            if key in resource.inputs:
                resource.inputs[key] += suffix
        resource.id += suffix
        resource.outputs["name"] += suffix
    return resources


def test_a_sound_database_is_created_as_declared_with_its_managed_secret(network):
    replayed = network["replay"]
    declared = database(network)
    replayed.run(declared)
    rds = replayed.client("rds")
    (instance,) = rds.describe_db_instances(DBInstanceIdentifier="server-db")["DBInstances"]
    assert instance["Engine"] == "postgres" and instance["EngineVersion"] == "16.4"
    assert instance["StorageEncrypted"] is True and instance["PubliclyAccessible"] is False
    assert instance["DBSubnetGroup"]["DBSubnetGroupName"] == "server-db-subnets"
    assert [g["VpcSecurityGroupId"] for g in instance["VpcSecurityGroups"]] == [network["sg"]]
    assert instance["DBParameterGroups"][0]["DBParameterGroupName"] == "server-db-params"
    params = {p["ParameterName"]: p.get("ParameterValue") for p in rds.describe_db_parameters(
        DBParameterGroupName="server-db-params")["Parameters"]}
    assert params["rds.force_ssl"] == "1"
    # The managed master secret exists, and the mock's ARN for it now names moto's.
    secret_arn = instance["MasterUserSecret"]["SecretArn"]
    mock_arn = declared[2].outputs["masterUserSecrets"][0]["secretArn"]
    assert replayed.real(f"{mock_arn}:password::") == f"{secret_arn}:password::"
    assert "password" in json.loads(replayed.client("secretsmanager").get_secret_value(
        SecretId=secret_arn)["SecretString"])
    assert replayed.real(declared[2].outputs["address"]) == instance["Endpoint"]["Address"]


def test_log_exports_enhanced_monitoring_and_insights_are_stored_as_declared(network):
    """What components/server/database.py adds for the scanners (issue 19): the postgresql and
    upgrade logs exported, Enhanced Monitoring through its role, Performance Insights."""
    replayed = Replay(network["replay"].endpoint_url)
    role = replayed.client("iam").create_role(
        RoleName="server-db-monitoring", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "monitoring.rds.amazonaws.com"},
                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    declared = database(network, "-observed")
    declared[2].inputs.update(enabledCloudwatchLogsExports=["postgresql", "upgrade"],
                              monitoringInterval=60.0, monitoringRoleArn=role,
                              performanceInsightsEnabled=True,
                              performanceInsightsRetentionPeriod=7.0)
    replayed.run(declared)
    (instance,) = replayed.client("rds").describe_db_instances(
        DBInstanceIdentifier="server-db-observed")["DBInstances"]
    assert instance["EnabledCloudwatchLogsExports"] == ["postgresql", "upgrade"]
    assert (instance["MonitoringInterval"], instance["MonitoringRoleArn"]) == (60, role)
    # moto takes the Performance Insights parameters (botocore checks them against the API
    # model) but describes no PerformanceInsightsEnabled: there is nothing more to read back.
    without_role = database(network, "-unmonitored")
    without_role[2].inputs.update(monitoringInterval=60.0)
    with pytest.raises(ReplayError, match="monitoringInterval needs monitoringRoleArn"):
        Replay(network["replay"].endpoint_url).run(without_role)


def _with(index: int, **changes: Any) -> Callable[[list[Declared]], None]:
    def change(resources: list[Declared]) -> None:
        for key, value in changes.items():
            if value is None:
                resources[index].inputs.pop(key, None)
            else:
                resources[index].inputs[key] = value
    return change


BROKEN = {
    "subnet group in one AZ": (lambda r, n: r[0].inputs.update(subnetIds=n["one_az"]),
                               "DBSubnetGroupDoesNotCoverEnoughAZs"),
    "managed and explicit password": (
        lambda r, n: _with(2, password={SECRET_SIG: SECRET_WRAP, "value": "pw"})(r),
        "password together with manageMasterUserPassword"),
    "no password at all": (lambda r, n: _with(2, manageMasterUserPassword=None)(r),
                           "MasterUserPassword is required"),
    "backup retention 36 days": (lambda r, n: _with(2, backupRetentionPeriod=36.0)(r),
                                 "backupRetentionPeriod 36 is outside 0-35"),
    "a class RDS lacks": (lambda r, n: _with(2, instanceClass="db.t4g.nano")(r),
                          "does not offer 'db.t4g.nano'"),
    "an engine version RDS lacks": (lambda r, n: _with(2, engineVersion="12.19")(r),
                                    "not an RDS for PostgreSQL version"),
    "parameter group of another family": (lambda r, n: _with(1, family="postgres15")(r),
                                          "family postgres15, the engine needs postgres16"),
    "storage below 20 GiB": (lambda r, n: _with(2, allocatedStorage=10.0)(r),
                             "10 GiB of gp3"),
    "KMS key without encryption": (lambda r, n: _with(2, storageEncrypted=False,
                                                      kmsKeyId="arn:aws:kms:x")(r),
                                   "kmsKeyId needs storageEncrypted"),
    "a final snapshot with no name": (lambda r, n: _with(2, skipFinalSnapshot=False)(r),
                                      "finalSnapshotIdentifier is unset"),
    "a reserved master user": (lambda r, n: _with(2, username="rdsadmin")(r),
                               "master username 'rdsadmin'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_database_declaration_is_refused_naming_the_resource(case, network):
    declared = database(network, f"-{sorted(BROKEN).index(case)}")
    breaks, message = BROKEN[case]
    breaks(declared, network)
    with pytest.raises(ReplayError, match=message) as refused:
        Replay(network["replay"].endpoint_url).run(declared)
    assert refused.value.resource.name in ("server-db", "server-db-subnets", "server-db-params")


# --- Redis (ElastiCache) --------------------------------------------------------------------------

CACHE_SUBNETS = "aws:elasticache/subnetGroup:SubnetGroup"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
TOKEN = "t0ken-of-sixty-four-characters-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"


def cache(network, suffix: str = "") -> list[Declared]:
    return [
        Declared(CACHE_SUBNETS, "server-redis-subnets",
                 {"name": f"server-redis{suffix}", "subnetIds": network["two_azs"],
                  "description": "isolated"},
                 id=f"server-redis{suffix}", outputs={"name": f"server-redis{suffix}"}),
        Declared(REPLICATION_GROUP, "server-redis-cluster", {
            "replicationGroupId": f"server-redis{suffix}", "description": "messaging",
            "engine": "redis", "engineVersion": "7.1", "parameterGroupName": "default.redis7",
            "nodeType": "cache.t4g.micro", "numCacheClusters": 2.0,
            "automaticFailoverEnabled": True, "multiAzEnabled": True,
            "transitEncryptionEnabled": True, "atRestEncryptionEnabled": True,
            "authToken": {SECRET_SIG: SECRET_WRAP, "value": TOKEN}, "port": 6379.0,
            "subnetGroupName": f"server-redis{suffix}", "securityGroupIds": [network["sg"]],
            "snapshotRetentionLimit": 1.0,
        }, id=f"server-redis{suffix}", outputs={
            "name": f"server-redis{suffix}",
            "primaryEndpointAddress": "master.server-redis.mock.cache.amazonaws.com"}),
    ]


def test_a_sound_redis_is_created_encrypted_with_failover(network):
    replayed = Replay(network["replay"].endpoint_url)
    declared = cache(network, "-ok")
    replayed.run(declared)
    (group,) = replayed.client("elasticache").describe_replication_groups(
        ReplicationGroupId="server-redis-ok")["ReplicationGroups"]
    assert group["TransitEncryptionEnabled"] and group["AtRestEncryptionEnabled"]
    assert group["AutomaticFailover"] == "enabled" and group["MultiAZ"] == "enabled"
    assert group["AuthTokenEnabled"] is True
    assert replayed.real(declared[1].outputs["primaryEndpointAddress"]) == \
        group["NodeGroups"][0]["PrimaryEndpoint"]["Address"]


CACHE_BROKEN = {
    "token without TLS": (dict(transitEncryptionEnabled=False), "needs transitEncryptionEnabled"),
    "failover with one node": (dict(numCacheClusters=1.0), "at least 2 nodes"),
    "multi-AZ without failover": (dict(automaticFailoverEnabled=False, numCacheClusters=1.0),
                                  "Multi-AZ needs automaticFailoverEnabled"),
    "a short token": (dict(authToken={SECRET_SIG: SECRET_WRAP, "value": "short"}),
                      "16-128 printable"),
    "a token with @": (dict(authToken={SECRET_SIG: SECRET_WRAP, "value": "x" * 20 + "@"}),
                       "16-128 printable"),
    "an old node type": (dict(nodeType="cache.t2.micro"), "supports neither encryption"),
    "another major's parameter group": (dict(parameterGroupName="default.redis6.x"),
                                        "does not match redis 7.1"),
}


@pytest.mark.parametrize("case", sorted(CACHE_BROKEN))
def test_a_broken_redis_declaration_is_refused(case, network):
    declared = cache(network, f"-b{sorted(CACHE_BROKEN).index(case)}")
    changes, message = CACHE_BROKEN[case]
    declared[1].inputs.update(changes)
    with pytest.raises(ReplayError, match=message) as refused:
        Replay(network["replay"].endpoint_url).run(declared)
    assert refused.value.resource.name == "server-redis-cluster"


# --- security group rules, Cloud Map -------------------------------------------------------------

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
NAMESPACE = "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace"
DISCOVERY = "aws:servicediscovery/service:Service"


def test_an_ingress_rule_from_a_group_is_stored_and_a_rule_without_one_source_refused(network):
    replayed = Replay(network["replay"].endpoint_url)
    ec2 = replayed.client("ec2")
    server = ec2.create_security_group(GroupName="server-rule", Description="s",
                                       VpcId=network["vpc"])["GroupId"]
    rule = Declared(INGRESS, "server-from-worker", {
        "securityGroupId": server, "referencedSecurityGroupId": network["sg"],
        "ipProtocol": "tcp", "fromPort": 4200.0, "toPort": 4200.0, "description": "API"})
    replayed.run([rule])
    (group,) = ec2.describe_security_groups(GroupIds=[server])["SecurityGroups"]
    assert [(p["FromPort"], p["UserIdGroupPairs"][0]["GroupId"])
            for p in group["IpPermissions"]] == [(4200, network["sg"])]
    both = Declared(INGRESS, "two-sources", {**rule.inputs, "cidrIpv4": "10.0.0.0/8"})
    with pytest.raises(ReplayError, match="exactly one of"):
        replayed.run([both])
    other_vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    stranger = ec2.create_security_group(GroupName="stranger", Description="s",
                                         VpcId=other_vpc)["GroupId"]
    across = Declared(INGRESS, "across", {**rule.inputs, "referencedSecurityGroupId": stranger})
    with pytest.raises(ReplayError, match="another VPC"):
        replayed.run([across])


def test_the_namespace_and_service_the_worker_resolves_exist_in_cloud_map(network):
    replayed = Replay(network["replay"].endpoint_url)
    declared = [
        Declared(NAMESPACE, "server-namespace", {"name": "prefect-ecs-worker-test.internal",
                                                 "vpc": network["vpc"], "description": "d"},
                 id="ns-mock0000000001", outputs={"name": "prefect-ecs-worker-test.internal"}),
        Declared(DISCOVERY, "server-discovery", {"name": "server", "dnsConfig": {
            "namespaceId": "ns-mock0000000001", "routingPolicy": "MULTIVALUE",
            "dnsRecords": [{"type": "A", "ttl": 10.0}]}},
            id="srv-mock0000000001", outputs={"name": "server"}),
    ]
    replayed.run(declared)
    discovery = replayed.client("servicediscovery")
    (service,) = discovery.list_services()["Services"]
    namespace = discovery.get_namespace(Id=replayed.real("ns-mock0000000001"))["Namespace"]
    assert namespace["Name"] == "prefect-ecs-worker-test.internal"
    assert service["Name"] == "server"
    full = discovery.get_service(Id=service["Id"])["Service"]
    assert full["DnsConfig"]["DnsRecords"] == [{"Type": "A", "TTL": 10}]
    assert full["NamespaceId"] == namespace["Id"]
    bad = copy.deepcopy(declared[1])
    bad.inputs["dnsConfig"]["dnsRecords"] = [{"type": "CNAME", "ttl": 10.0}]
    with pytest.raises(ReplayError, match="CNAME"):
        replayed.run([bad])
