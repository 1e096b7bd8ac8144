"""Replay of the `ha` server's Redis (ElastiCache replication group and subnet group) into moto,
with the checks ElastiCache makes and moto skips. Registers into `testbed.replay.core.HANDLERS`.

From the ElastiCache API reference (CreateReplicationGroup) and User Guide:
- an AUTH token only with in-transit encryption, 16-128 printable characters without `/`, `"`
  or `@` ("Authenticating with the Redis AUTH command");
- automatic failover needs at least two nodes (a replica to fail over to), and Multi-AZ needs
  automatic failover;
- a KMS key only with encryption at rest; a parameter group of the engine's major (`default.redis7`
  for 7.x);
- the replication group id: 1-40 lower-case letters, digits or hyphens, starting with a letter,
  no two hyphens in a row, none at the end;
- Multi-AZ needs the subnet group in at least two AZs.
"""

from __future__ import annotations

import re
from typing import Any

from tools.mock_engine import Declared
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError, aws_tags

GROUP_ID = re.compile(r"^[a-z](?!.*--)[a-z0-9-]{0,39}(?<!-)$")
TOKEN = re.compile(r'^[\x21-\x7e]{16,128}$')
TOKEN_FORBIDDEN = set('/"@')
# Node types that support encryption and automatic failover (not the t1/t2/m1-m3 generations).
NODE_TYPE = re.compile(r"^cache\.(t3|t4g|m5|m6g|m7g|r5|r6g|r7g|r6gd)\.[a-z0-9]+$")


def cache_subnet_group(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    subnet_ids = inputs.require("subnetIds")
    subnets = replay.client("ec2").describe_subnets(SubnetIds=subnet_ids)["Subnets"]
    name = (inputs.get("name") or resource.outputs["name"]).lower()
    replay.client("elasticache").create_cache_subnet_group(
        CacheSubnetGroupName=name,
        CacheSubnetGroupDescription=inputs.get("description") or "Managed by Pulumi",
        SubnetIds=subnet_ids, Tags=aws_tags(inputs.get("tags")))
    replay.map(resource.id, name)
    return {"name": name, "zones": sorted({s["AvailabilityZone"] for s in subnets})}


def replication_group(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    def refuse(message: str) -> None:
        raise ReplayError(resource, message)

    group_id = inputs.get("replicationGroupId") or resource.outputs["name"]
    if not GROUP_ID.match(group_id):
        refuse(f"InvalidParameterValue: replication group id {group_id!r}")
    engine = inputs.get("engine") or "redis"
    if engine not in ("redis", "valkey"):
        refuse(f"engine {engine!r}: Prefect's messaging needs Redis (or Valkey)")
    version = str(inputs.get("engineVersion") or "7.1")
    major = version.split(".")[0]
    node_type = inputs.require("nodeType")
    if not NODE_TYPE.match(node_type):
        refuse(f"InvalidParameterCombination: {node_type} supports neither encryption nor "
               f"automatic failover")
    transit = bool(inputs.get("transitEncryptionEnabled"))
    at_rest = bool(inputs.get("atRestEncryptionEnabled"))
    token = inputs.secret("authToken") if inputs.get("authToken") else None
    if token is not None:
        if not transit:
            refuse("InvalidParameterValue: an AUTH token needs transitEncryptionEnabled")
        if not TOKEN.match(token) or TOKEN_FORBIDDEN & set(token):
            refuse("InvalidParameterValue: the AUTH token must be 16-128 printable characters "
                   "without / \" or @")
    nodes = inputs.integer("numCacheClusters")
    replicas = inputs.integer("replicasPerNodeGroup")
    node_count = nodes if nodes is not None else 1 + (replicas or 0)
    failover = bool(inputs.get("automaticFailoverEnabled"))
    multi_az = bool(inputs.get("multiAzEnabled"))
    if failover and node_count < 2:
        refuse(f"InvalidParameterCombination: automatic failover needs at least 2 nodes, "
               f"declared {node_count}")
    if multi_az and not failover:
        refuse("InvalidParameterCombination: Multi-AZ needs automaticFailoverEnabled")
    if inputs.get("kmsKeyId") and not at_rest:
        refuse("InvalidParameterCombination: kmsKeyId needs atRestEncryptionEnabled")
    parameter_group = inputs.get("parameterGroupName")
    if parameter_group and parameter_group.startswith("default.") and \
            parameter_group not in (f"default.{engine}{major}", f"default.{engine}{major}.cluster.on"):
        refuse(f"InvalidParameterCombination: parameter group {parameter_group} does not match "
               f"{engine} {version}")
    subnet_group = inputs.get("subnetGroupName")
    if multi_az and subnet_group:
        zones = next((c.get("zones") for (t, _), c in replay.created.items()
                      if t == "aws:elasticache/subnetGroup:SubnetGroup"
                      and c.get("name") == subnet_group), None)
        if zones is not None and len(zones) < 2:
            refuse(f"Multi-AZ needs the subnet group in two AZs, {subnet_group!r} has {zones}")

    request: dict[str, Any] = {
        "ReplicationGroupId": group_id,
        "ReplicationGroupDescription": inputs.require("description"),
        "Engine": engine, "EngineVersion": version, "CacheNodeType": node_type,
        "AutomaticFailoverEnabled": failover, "MultiAZEnabled": multi_az,
        "TransitEncryptionEnabled": transit, "AtRestEncryptionEnabled": at_rest,
        "Tags": aws_tags(inputs.get("tags")),
    }
    if nodes is not None:
        request["NumCacheClusters"] = nodes
    if replicas is not None:
        request["ReplicasPerNodeGroup"] = replicas
    if token is not None:
        request["AuthToken"] = token
    inputs.copy(request, {"parameterGroupName": "CacheParameterGroupName",
                          "subnetGroupName": "CacheSubnetGroupName",
                          "securityGroupIds": "SecurityGroupIds", "kmsKeyId": "KmsKeyId",
                          "maintenanceWindow": "PreferredMaintenanceWindow",
                          "snapshotWindow": "SnapshotWindow",
                          "autoMinorVersionUpgrade": "AutoMinorVersionUpgrade",
                          "transitEncryptionMode": "TransitEncryptionMode",
                          "preferredCacheClusterAzs": "PreferredCacheClusterAZs"})
    for key, api_key in (("port", "Port"), ("snapshotRetentionLimit", "SnapshotRetentionLimit")):
        value = inputs.integer(key)
        if value is not None:
            request[api_key] = value
    inputs.engine_side("applyImmediately", "finalSnapshotIdentifier")
    group = replay.client("elasticache").create_replication_group(**request)["ReplicationGroup"]
    primary = ((group.get("NodeGroups") or [{}])[0].get("PrimaryEndpoint") or {})
    replay.map(resource.outputs.get("primaryEndpointAddress"), primary.get("Address"))
    replay.map(resource.outputs.get("arn"), group.get("ARN"))
    return {"id": group_id, "primary": primary.get("Address"), "port": primary.get("Port"),
            "request": {k: v for k, v in request.items() if k != "AuthToken"}}


HANDLERS.update({
    "aws:elasticache/subnetGroup:SubnetGroup": cache_subnet_group,
    "aws:elasticache/replicationGroup:ReplicationGroup": replication_group,
})
