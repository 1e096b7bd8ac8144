"""The Prefect server's database: Amazon RDS for PostgreSQL in the VPC's isolated subnets.

- PostgreSQL major version `ENGINE_MAJOR` (Prefect needs 14.9 or newer), minor versions applied by
  RDS in the maintenance window.
- Encrypted storage (gp3, growing on its own up to `max_allocated_storage_gb`, the
  `serverDbMaxAllocatedStorageGb` ceiling), never publicly
  accessible, in subnets with no route to the internet, reachable on 5432 only from the server
  tasks' security group. `rds.force_ssl` is on in the stack's own parameter group: Prefect's
  asyncpg connects encrypted with no TLS setting at all (docs/self-hosted-server.md).
- Automated backups kept `backup_retention_days`; deletion protection and a final snapshot where
  the stack says so (both on by default); Multi-AZ in `ha`. With a final snapshot, deleting the
  instance keeps its automated backups too (`delete_automated_backups` off) until their retention
  ends, and the stack key that encrypts both is retained by `pulumi destroy`
  (components/platform/stack_key.py): what the database leaves behind stays restorable.
- A restore (`restore_snapshot`): the named snapshot is copied under the stack key
  (`aws.rds.SnapshotCopy`), and the instance starts from that copy. RestoreDBInstanceFromDBSnapshot
  takes no KMS key (the instance gets its snapshot's), so restoring the source directly would leave
  the instance on another stack's key, and the provider would plan to replace it at every
  `pulumi up` (`kmsKeyId` differs and forces a new instance).
- The final snapshot is named `<identifier>-final-<the stack key id's first 8 characters>`, plus a
  digest of the restored snapshot: each life of the stack (a new key after each destroy) and each
  restore leaves its own name, so a second destroy never collides with the first one's snapshot.
- The master password: RDS's managed master secret (`manage_master_user_password`). RDS creates
  the password; it never passes through Pulumi, the state or a task environment. The server gets
  it through ECS `secrets` as one JSON key: `valueFrom: <secret_arn>:password::` into
  `PREFECT_SERVER_DATABASE_PASSWORD` (see `password_value_from`). RDS rotates that secret every 7
  days; `components/server/rotation_redeploy.py` redeploys the server on each rotation, since a running
  server keeps the old password and answers 503 (`/api/health` stays 200).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.platform.network import clients_only_security_group
from components.config.server import RESTORED_FROM_TAG

ENGINE_MAJOR = "17"
PARAMETER_GROUP_FAMILY = f"postgres{ENGINE_MAJOR}"
PORT = 5432
DATABASE_NAME = "prefect"
MASTER_USER = "prefect"
# The driver Prefect builds its connection URL with. Without PREFECT_SERVER_DATABASE_DRIVER the
# other split settings are ignored and the server silently uses SQLite in the container.
DRIVER = "postgresql+asyncpg"
# UTC; backups before the maintenance window, both outside European and American working hours.
BACKUP_WINDOW = "03:00-03:30"
MAINTENANCE_WINDOW = "sun:04:00-sun:04:30"


def password_value_from(secret_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """ECS `valueFrom` for the `password` key of the managed secret's JSON value."""
    return pulumi.Output.concat(secret_arn, ":password::")


@dataclass(frozen=True)
class DatabaseArgs:
    identifier: str
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    # The server tasks' security group: the only source allowed on 5432.
    client_security_group_id: pulumi.Input[str]
    instance_class: str
    allocated_storage_gb: int
    # RDS storage autoscaling ceiling (serverDbMaxAllocatedStorageGb).
    max_allocated_storage_gb: int
    backup_retention_days: int
    deletion_protection: bool
    final_snapshot: bool
    multi_az: bool
    tags: Mapping[str, str]
    # The stack key (components/platform/stack_key.py): encrypts the storage, its snapshots and the
    # managed master secret.
    kms_key_arn: pulumi.Input[str]
    # Its key id: names the final snapshot apart from an earlier life's of the stack.
    kms_key_id: pulumi.Input[str]
    # A DB snapshot (identifier or ARN, validated) the instance starts from; None: empty.
    restore_snapshot: Optional[str]


class PrefectDatabase(pulumi.ComponentResource):
    instance: aws.rds.Instance
    security_group: aws.ec2.SecurityGroup
    address: pulumi.Output[str]
    master_secret_arn: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("prefect-ecs-worker:index:PrefectDatabase", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            name=args.identifier,
            description="Prefect server database: isolated subnets, no route to the internet",
            subnet_ids=args.subnet_ids,
            tags=tags,
            opts=child,
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-parameters",
            name=args.identifier,
            family=PARAMETER_GROUP_FAMILY,
            description="Prefect server database: TLS required",
            parameters=[aws.rds.ParameterGroupParameterArgs(
                name="rds.force_ssl", value="1", apply_method="immediate")],
            tags=tags,
            opts=child,
        )
        self.security_group = clients_only_security_group(
            f"{name}-sg",
            description="Prefect server database: PostgreSQL from the server tasks only",
            rule_description="PostgreSQL from the Prefect server", port=PORT,
            vpc_id=args.vpc_id, client_security_group_id=args.client_security_group_id,
            tags={**tags, "Name": f"{name}-db"}, opts=child,
        )
        restore = args.restore_snapshot
        digest = hashlib.sha256(restore.encode()).hexdigest()[:8] if restore else None
        self.restore_copy: Optional[aws.rds.SnapshotCopy] = None
        if restore is not None:
            self.restore_copy = aws.rds.SnapshotCopy(
                f"{name}-restore",
                source_db_snapshot_identifier=restore,
                target_db_snapshot_identifier=f"{args.identifier}-restore-{digest}",
                kms_key_id=args.kms_key_arn,
                tags={**tags, RESTORED_FROM_TAG: restore},
                opts=child,
            )
        final_snapshot = pulumi.Output.concat(
            args.identifier, "-final-", pulumi.Output.from_input(args.kms_key_id).apply(
                lambda key_id: key_id[:8]), f"-{digest}" if digest else "")
        self.instance = aws.rds.Instance(
            f"{name}-instance",
            identifier=args.identifier,
            engine="postgres",
            engine_version=ENGINE_MAJOR,
            auto_minor_version_upgrade=True,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            max_allocated_storage=args.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=args.kms_key_arn,
            db_name=DATABASE_NAME,
            username=MASTER_USER,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=args.kms_key_arn,
            port=PORT,
            db_subnet_group_name=subnet_group.name,
            parameter_group_name=parameters.name,
            vpc_security_group_ids=[self.security_group.id],
            publicly_accessible=False,
            multi_az=args.multi_az,
            backup_retention_period=args.backup_retention_days,
            backup_window=BACKUP_WINDOW,
            maintenance_window=MAINTENANCE_WINDOW,
            copy_tags_to_snapshot=True,
            deletion_protection=args.deletion_protection,
            skip_final_snapshot=not args.final_snapshot,
            final_snapshot_identifier=final_snapshot if args.final_snapshot else None,
            # Where the stack keeps a final snapshot it keeps the automated backups too (point-in-time
            # restore over their retention after a destroy); RDS deletes them when it ends.
            delete_automated_backups=not args.final_snapshot,
            snapshot_identifier=(self.restore_copy.target_db_snapshot_identifier
                                 if self.restore_copy else None),
            tags={**tags, **({RESTORED_FROM_TAG: restore} if restore else {})},
            opts=child,
        )
        self.address = self.instance.address
        self.master_secret_arn = self.instance.master_user_secrets.apply(_first_secret_arn)

        self.register_outputs({
            "address": self.address,
            "master_secret_arn": self.master_secret_arn,
            "security_group_id": self.security_group.id,
        })


def _first_secret_arn(secrets: Sequence[Any]) -> str:
    secret = secrets[0]
    if isinstance(secret, dict):
        return secret.get("secret_arn") or secret["secretArn"]
    return secret.secret_arn


# RDS sets max_connections to LEAST(DBInstanceClassMemory / 9531392, 5000) for PostgreSQL.
_SIZE_GIB = {"micro": 1, "small": 2, "medium": 4, "large": 8, "xlarge": 16, "2xlarge": 32,
             "4xlarge": 64, "8xlarge": 128, "12xlarge": 192, "16xlarge": 256}


def max_connections(instance_class: str) -> int:
    family, size = instance_class.split(".")[1:3]
    memory_gib = _SIZE_GIB[size] * (2 if family.startswith("r") else 1)
    return min(memory_gib * 1024 ** 3 // 9531392, 5000)
