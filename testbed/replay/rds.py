"""Replay of the server's database (RDS for PostgreSQL) into moto, with the checks RDS makes and
moto skips. Registers into `testbed.replay.core.HANDLERS`.

Each check cites the RDS rule it copies:
- CreateDBSubnetGroup needs subnets in at least two AZs, always, not only for Multi-AZ
  (DBSubnetGroupDoesNotCoverEnoughAZs; RDS User Guide, "Working with a DB instance in a VPC").
- CreateDBInstance: `ManageMasterUserPassword` excludes `MasterUserPassword`, and one of them is
  required (InvalidParameterCombination; API reference, CreateDBInstance); backup retention 0-35
  days; gp2/gp3 storage 20-65536 GiB for PostgreSQL; a class and a major version RDS offers for
  PostgreSQL; a parameter group of the engine's family (`postgres15` for 15.x); a KMS key only with
  storage encryption; the master secret's KMS key only with a managed password; enhanced
  monitoring needs a role.
- The provider refuses to delete an instance that keeps a final snapshot without naming it
  (`finalSnapshotIdentifier` is required unless `skipFinalSnapshot`): caught here, at create,
  rather than at the first `pulumi destroy`.
- With `snapshotIdentifier` the provider calls RestoreDBInstanceFromDBSnapshot with what that call
  takes, then ModifyDBInstance with the rest; the storage key, encryption, database name, master
  user and engine version are the snapshot's. The snapshot's KMS key must be usable, and the
  declared `kmsKeyId` must be the snapshot's (`aws_rules.rds_*`). A snapshot copy
  (`aws.rds.SnapshotCopy`) checks its source's key the same way.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from tools.mock_engine import Declared
from testbed.replay import aws_rules
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError, aws_tags

# RDS for PostgreSQL: instance classes offered in us-east-1 (current generations) and the majors
# with standard support in 2026 (RDS User Guide, "Supported DB engines for DB instance classes";
# "Amazon RDS for PostgreSQL versions").
RDS_POSTGRES_CLASS = re.compile(
    r"^db\.(t3|t4g)\.(micro|small|medium|large|xlarge|2xlarge)$"
    r"|^db\.(m5|m6g|m6gd|m6i|m6id|m7g|m7i|r5|r6g|r6gd|r6i|r6id|r7g|r7i)"
    r"\.(large|xlarge|2xlarge|4xlarge|8xlarge|12xlarge|16xlarge)$")
RDS_POSTGRES_MAJORS = ("13", "14", "15", "16", "17")
POSTGRES_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?$")
DB_IDENTIFIER = re.compile(r"^[a-z](?!.*--)[a-z0-9-]{0,62}(?<!-)$")
PG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
# Names RDS for PostgreSQL refuses as the master user or the initial database.
RESERVED_USERS = {"rdsadmin", "rdsrepladmin", "rds_superuser"}
RESERVED_DATABASES = {"template0", "template1", "rdsadmin"}
MIN_GP_STORAGE_GB, MAX_GP_STORAGE_GB = 20, 65536
MAX_BACKUP_RETENTION_DAYS = 35


def _auto_name(resource: Declared, inputs: Inputs, key: str = "name") -> str:
    """The declared name, else what the mock answered (the provider's auto-name), lower-cased as
    RDS stores identifiers."""
    return (inputs.get(key) or resource.outputs.get(key) or resource.outputs["name"]).lower()


def db_subnet_group(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    subnet_ids = inputs.require("subnetIds")
    subnets = replay.client("ec2").describe_subnets(SubnetIds=subnet_ids)["Subnets"]
    zones = sorted({s["AvailabilityZone"] for s in subnets})
    if len(zones) < 2:
        raise ReplayError(resource, f"DBSubnetGroupDoesNotCoverEnoughAZs: subnets in {zones}; RDS "
                                    f"needs at least two Availability Zones")
    name = _auto_name(resource, inputs)
    group = replay.client("rds").create_db_subnet_group(
        DBSubnetGroupName=name,
        DBSubnetGroupDescription=inputs.get("description") or "Managed by Pulumi",
        SubnetIds=subnet_ids, Tags=aws_tags(inputs.get("tags")))["DBSubnetGroup"]
    replay.map(resource.id, group["DBSubnetGroupName"])
    return {"name": group["DBSubnetGroupName"], "zones": zones,
            "subnet_ids": list(subnet_ids)}


def db_parameter_group(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    family = inputs.require("family")
    if not re.fullmatch(r"postgres\d+", family):
        raise ReplayError(resource, f"family {family!r} is not a PostgreSQL family "
                                    f"(postgres<major>)")
    name = _auto_name(resource, inputs)
    rds = replay.client("rds")
    rds.create_db_parameter_group(
        DBParameterGroupName=name, DBParameterGroupFamily=family,
        Description=inputs.get("description") or "Managed by Pulumi",
        Tags=aws_tags(inputs.get("tags")))
    parameters = [{"ParameterName": p["name"], "ParameterValue": str(p["value"]),
                   "ApplyMethod": p.get("applyMethod") or "immediate"}
                  for p in inputs.get("parameters") or []]
    for parameter in parameters:
        if parameter["ApplyMethod"] not in ("immediate", "pending-reboot"):
            raise ReplayError(resource, f"applyMethod {parameter['ApplyMethod']!r} of "
                                        f"{parameter['ParameterName']} is not immediate or "
                                        f"pending-reboot")
    if parameters:
        rds.modify_db_parameter_group(DBParameterGroupName=name, Parameters=parameters)
    replay.map(resource.id, name)
    return {"name": name, "family": family,
            "parameters": {p["ParameterName"]: p["ParameterValue"] for p in parameters}}


def _created(replay: Replay, type_: str, name: str) -> dict[str, Any]:
    for (created_type, _), created in replay.created.items():
        if created_type == type_ and created.get("name") == name:
            return created
    return {}


def db_instance(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    def refuse(message: str) -> NoReturn:
        raise ReplayError(resource, message)

    engine = inputs.require("engine")
    if engine != "postgres":
        refuse(f"engine {engine!r}: the Prefect server needs PostgreSQL ('postgres')")
    version = str(inputs.require("engineVersion"))
    parsed = POSTGRES_VERSION.match(version)
    if parsed is None or parsed.group(1) not in RDS_POSTGRES_MAJORS:
        refuse(f"InvalidParameterCombination: engine version {version!r} is not an RDS for "
               f"PostgreSQL version (majors {', '.join(RDS_POSTGRES_MAJORS)})")
    major = parsed.group(1)
    instance_class = inputs.require("instanceClass")
    if not RDS_POSTGRES_CLASS.match(instance_class):
        refuse(f"InvalidParameterCombination: RDS does not offer {instance_class!r} for "
               f"PostgreSQL {version}")

    managed = bool(inputs.get("manageMasterUserPassword"))
    password = inputs.get("password")
    if is_set(password) and managed:
        refuse("InvalidParameterCombination: password together with manageMasterUserPassword")
    if not is_set(password) and not managed:
        refuse("InvalidParameter: MasterUserPassword is required unless manageMasterUserPassword")
    if inputs.get("masterUserSecretKmsKeyId") and not managed:
        refuse("InvalidParameterCombination: masterUserSecretKmsKeyId needs "
               "manageMasterUserPassword")
    username = inputs.require("username")
    if not PG_NAME.match(username) or username.lower() in RESERVED_USERS:
        refuse(f"InvalidParameterValue: master username {username!r} (a letter, then letters, "
               f"digits or _; not {sorted(RESERVED_USERS)})")
    db_name = inputs.get("dbName")
    if db_name is not None and (not PG_NAME.match(db_name) or db_name in RESERVED_DATABASES):
        refuse(f"InvalidParameterValue: database name {db_name!r}")

    retention = inputs.integer("backupRetentionPeriod", 1)
    assert retention is not None  # a default is given
    if not 0 <= retention <= MAX_BACKUP_RETENTION_DAYS:
        refuse(f"InvalidParameterValue: backupRetentionPeriod {retention} is outside "
               f"0-{MAX_BACKUP_RETENTION_DAYS} days")
    storage_type = inputs.get("storageType") or "gp2"
    storage = inputs.integer("allocatedStorage")
    if storage is None:
        refuse("allocatedStorage is required for RDS for PostgreSQL")
    if storage_type in ("gp2", "gp3") and not MIN_GP_STORAGE_GB <= storage <= MAX_GP_STORAGE_GB:
        refuse(f"InvalidParameterCombination: {storage} GiB of {storage_type}; PostgreSQL takes "
               f"{MIN_GP_STORAGE_GB}-{MAX_GP_STORAGE_GB}")
    max_storage = inputs.integer("maxAllocatedStorage")
    if max_storage and max_storage < storage:
        refuse(f"maxAllocatedStorage {max_storage} is below allocatedStorage {storage}")
    encrypted = bool(inputs.get("storageEncrypted"))
    if inputs.get("kmsKeyId") and not encrypted:
        refuse("InvalidParameterCombination: kmsKeyId needs storageEncrypted")
    if (inputs.integer("monitoringInterval") or 0) > 0 and not inputs.get("monitoringRoleArn"):
        refuse("InvalidParameterCombination: monitoringInterval needs monitoringRoleArn")
    if not inputs.get("skipFinalSnapshot") and not inputs.get("finalSnapshotIdentifier"):
        refuse("skipFinalSnapshot is false but finalSnapshotIdentifier is unset: the provider "
               "refuses to delete this instance")

    subnet_group_name = inputs.get("dbSubnetGroupName")
    multi_az = bool(inputs.get("multiAz"))
    if multi_az and subnet_group_name is not None:
        zones = _created(replay, "aws:rds/subnetGroup:SubnetGroup", subnet_group_name).get("zones")
        if zones is not None and len(zones) < 2:
            refuse(f"Multi-AZ needs a subnet group in two AZs, {subnet_group_name!r} has {zones}")
    parameter_group = inputs.get("parameterGroupName")
    if parameter_group is not None:
        family = _created(replay, "aws:rds/parameterGroup:ParameterGroup",
                          parameter_group).get("family")
        if family is not None and family != f"postgres{major}":
            refuse(f"InvalidParameterCombination: parameter group {parameter_group!r} is of "
                   f"family {family}, the engine needs postgres{major}")

    identifier = _auto_name(resource, inputs, "identifier")
    if inputs.get("identifierPrefix"):
        identifier = inputs.get("identifierPrefix") + resource.outputs["name"][-7:].lower()
    if not DB_IDENTIFIER.match(identifier):
        refuse(f"InvalidParameterValue: DB instance identifier {identifier!r}")

    request: dict[str, Any] = {
        "DBInstanceIdentifier": identifier, "DBInstanceClass": instance_class,
        "Engine": engine, "EngineVersion": version, "AllocatedStorage": storage,
        "MasterUsername": username, "BackupRetentionPeriod": retention,
        "MultiAZ": multi_az, "StorageEncrypted": encrypted, "StorageType": storage_type,
        "PubliclyAccessible": bool(inputs.get("publiclyAccessible")),
        "Tags": aws_tags(inputs.get("tags")),
    }
    if managed:
        request["ManageMasterUserPassword"] = True
    else:
        request["MasterUserPassword"] = inputs.secret("password")
    inputs.copy(request, {"dbName": "DBName", "dbSubnetGroupName": "DBSubnetGroupName",
                          "vpcSecurityGroupIds": "VpcSecurityGroupIds",
                          "parameterGroupName": "DBParameterGroupName",
                          "kmsKeyId": "KmsKeyId",
                          "masterUserSecretKmsKeyId": "MasterUserSecretKmsKeyId",
                          "backupWindow": "PreferredBackupWindow",
                          "maintenanceWindow": "PreferredMaintenanceWindow",
                          "deletionProtection": "DeletionProtection",
                          "copyTagsToSnapshot": "CopyTagsToSnapshot",
                          "autoMinorVersionUpgrade": "AutoMinorVersionUpgrade",
                          "performanceInsightsEnabled": "EnablePerformanceInsights",
                          "performanceInsightsKmsKeyId": "PerformanceInsightsKMSKeyId",
                          "monitoringRoleArn": "MonitoringRoleArn",
                          "enabledCloudwatchLogsExports": "EnableCloudwatchLogsExports",
                          "caCertIdentifier": "CACertificateIdentifier",
                          "iamDatabaseAuthenticationEnabled": "EnableIAMDatabaseAuthentication",
                          "networkType": "NetworkType"})
    for key, api_key in (("port", "Port"), ("maxAllocatedStorage", "MaxAllocatedStorage"),
                         ("monitoringInterval", "MonitoringInterval"), ("iops", "Iops"),
                         ("storageThroughput", "StorageThroughput"),
                         ("performanceInsightsRetentionPeriod",
                          "PerformanceInsightsRetentionPeriod")):
        value = inputs.integer(key)
        if value is not None:
            request[api_key] = value
    # Provider-side: when changes apply, whether a major upgrade may happen, what happens at
    # delete (snapshot, automated backups), and the identifier's prefix (resolved above).
    inputs.engine_side("applyImmediately", "allowMajorVersionUpgrade", "skipFinalSnapshot",
                       "finalSnapshotIdentifier", "deleteAutomatedBackups", "identifier",
                       "identifierPrefix")
    snapshot = inputs.get("snapshotIdentifier")
    if snapshot:
        instance = _restore(replay, resource, request, snapshot)
    else:
        instance = replay.client("rds").create_db_instance(**request)["DBInstance"]
    endpoint = instance.get("Endpoint") or {}
    replay.map(resource.id, instance["DBInstanceIdentifier"])
    replay.map(resource.outputs.get("arn"), instance["DBInstanceArn"])
    replay.map(resource.outputs.get("address"), endpoint.get("Address"))
    if resource.outputs.get("endpoint") and endpoint:
        replay.map(resource.outputs["endpoint"], f"{endpoint['Address']}:{endpoint['Port']}")
    secret = instance.get("MasterUserSecret") or {}
    for declared in resource.outputs.get("masterUserSecrets") or []:
        replay.map(declared.get("secretArn"), secret.get("SecretArn"))
    return {"identifier": instance["DBInstanceIdentifier"], "arn": instance["DBInstanceArn"],
            "address": endpoint.get("Address"), "port": endpoint.get("Port"),
            "master_user_secret_arn": secret.get("SecretArn"), "request": {
                k: v for k, v in request.items() if k != "MasterUserPassword"}}


# What RestoreDBInstanceFromDBSnapshot takes of a CreateDBInstance request; what the provider
# sends with ModifyDBInstance right after; and what the instance takes from its snapshot instead.
RESTORE_FIELDS = frozenset({
    "DBInstanceIdentifier", "DBInstanceClass", "Engine", "MultiAZ", "PubliclyAccessible", "Tags",
    "DBSubnetGroupName", "VpcSecurityGroupIds", "DBParameterGroupName", "Port",
    "CopyTagsToSnapshot", "DeletionProtection", "AutoMinorVersionUpgrade",
    "ManageMasterUserPassword", "MasterUserSecretKmsKeyId", "AllocatedStorage",
    "BackupRetentionPeriod", "PreferredBackupWindow", "StorageType", "StorageThroughput", "Iops",
    "EnableCloudwatchLogsExports", "EnableIAMDatabaseAuthentication", "CACertificateIdentifier",
    "NetworkType"})
MODIFY_AFTER_RESTORE = frozenset({
    "MaxAllocatedStorage", "PreferredMaintenanceWindow", "MonitoringInterval", "MonitoringRoleArn",
    "EnablePerformanceInsights", "PerformanceInsightsKMSKeyId",
    "PerformanceInsightsRetentionPeriod"})
FROM_SNAPSHOT = frozenset({"KmsKeyId", "StorageEncrypted", "DBName", "MasterUsername",
                           "EngineVersion"})


def _snapshot(replay: Replay, resource: Declared, identifier: str) -> dict[str, Any]:
    """The DB snapshot an identifier or ARN names, with its KMS key checked usable."""
    name = identifier.split(":snapshot:", 1)[-1]
    try:
        (snapshot,) = replay.client("rds").describe_db_snapshots(
            DBSnapshotIdentifier=name)["DBSnapshots"]
    except replay.client("rds").exceptions.DBSnapshotNotFoundFault:
        raise ReplayError(resource, f"DBSnapshotNotFound: {identifier!r}") from None
    key_id = snapshot.get("KmsKeyId")
    state = (replay.client("kms").describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]
             if key_id else None)
    aws_rules.rds_snapshot_key_usable(resource, identifier, key_id, state)
    return snapshot


def _restore(replay: Replay, resource: Declared, request: dict[str, Any],
             snapshot_id: str) -> dict[str, Any]:
    unplaced = sorted(set(request) - RESTORE_FIELDS - MODIFY_AFTER_RESTORE - FROM_SNAPSHOT)
    if unplaced:
        raise ReplayError(resource, f"{unplaced}: say in testbed/replay/rds.py whether a restore "
                                    f"sends them, modifies them after, or takes the snapshot's")
    snapshot = _snapshot(replay, resource, snapshot_id)
    aws_rules.rds_restored_key_is_declared(resource, snapshot_id, snapshot.get("KmsKeyId"),
                                           request.get("KmsKeyId"))
    rds = replay.client("rds")
    instance = rds.restore_db_instance_from_db_snapshot(
        DBSnapshotIdentifier=snapshot_id,
        **{k: v for k, v in request.items() if k in RESTORE_FIELDS})["DBInstance"]
    modify = {k: v for k, v in request.items() if k in MODIFY_AFTER_RESTORE}
    if modify:
        instance = rds.modify_db_instance(DBInstanceIdentifier=instance["DBInstanceIdentifier"],
                                          ApplyImmediately=True, **modify)["DBInstance"]
    return instance


def db_snapshot_copy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    source = inputs.require("sourceDbSnapshotIdentifier")
    _snapshot(replay, resource, source)
    request: dict[str, Any] = {"SourceDBSnapshotIdentifier": source,
                               "TargetDBSnapshotIdentifier": inputs.require(
                                   "targetDbSnapshotIdentifier"),
                               "Tags": aws_tags(inputs.get("tags"))}
    inputs.copy(request, {"kmsKeyId": "KmsKeyId", "copyTags": "CopyTags",
                          "optionGroupName": "OptionGroupName"})
    copy = replay.client("rds").copy_db_snapshot(**request)["DBSnapshot"]
    return {"identifier": copy["DBSnapshotIdentifier"], "arn": copy["DBSnapshotArn"],
            "kms_key_id": copy.get("KmsKeyId")}


def is_set(value: Any) -> bool:
    if isinstance(value, dict) and "value" in value:
        value = value["value"]
    return value not in (None, "")


HANDLERS.update({
    "aws:rds/subnetGroup:SubnetGroup": db_subnet_group,
    "aws:rds/parameterGroup:ParameterGroup": db_parameter_group,
    "aws:rds/instance:Instance": db_instance,
    "aws:rds/snapshotCopy:SnapshotCopy": db_snapshot_copy,
})
