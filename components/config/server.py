"""The self-hosted Prefect server's configuration: `prefectServer` and the `server*` keys.

`prefectServer: none` (the default) leaves the stack exactly as it was: the worker talks to the
external API of `prefectApiUrl`. `single` or `ha` adds a Prefect server to the stack (RDS
PostgreSQL, Fargate tasks, and in `ha` ElastiCache Redis and an ALB); then `prefectApiUrl` and API
keys are refused, and the credential is a basic-auth string the stack generates, or adopts through
`prefectApiAuthStringSecretArn`.

`parse_server` reads every key once and raises `ConfigError` (before any resource) on a bad value
or a combination that cannot work: a public endpoint without a certificate or domain, or open to
the whole internet; `ha` in fewer than two AZs; a database class RDS does not offer for
PostgreSQL; a backup retention RDS refuses; a restore snapshot that is malformed or in another
region (`serverDbRestoreSnapshot`). `check_restore_target` then asks RDS whether the database to
restore into exists already, and refuses to replace it unacknowledged.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from dataclasses import dataclass
from typing import Literal, Optional, get_args

from components.config.reader import NAMESPACE, ConfigError, Reader
from components.config.validators import check_fargate_size, check_image

ServerMode = Literal["none", "single", "ha"]
ServerAccess = Literal["internal", "public"]
SERVER_MODES: tuple[str, ...] = get_args(ServerMode)
SERVER_ACCESS: tuple[str, ...] = get_args(ServerAccess)

# The server image (serverImage, default in Pulumi.yaml) is pinned to the Prefect version the
# worker image ships (prefect-aws 0.7.12 images carry prefect 3.9.1): a client newer or older than
# its server breaks websockets (PrefectHQ/prefect#19539, #20775).
PREFECT_VERSION = "3.9.1"

# RDS for PostgreSQL instance classes (current generations; Graviton t4g/m7g/r7g first). A class
# RDS does not offer fails `pulumi up` only after the network exists: refused here instead.
DB_INSTANCE_CLASS = re.compile(
    r"^db\.(t3|t4g)\.(micro|small|medium|large|xlarge|2xlarge)$"
    r"|^db\.(m5|m6g|m6gd|m6i|m6id|m7g|m7i|r5|r6g|r6gd|r6i|r6id|r7g|r7i)"
    r"\.(large|xlarge|2xlarge|4xlarge|8xlarge|12xlarge|16xlarge)$"
)
CACHE_NODE_TYPE = re.compile(
    r"^cache\.(t3|t4g)\.(micro|small|medium)$"
    r"|^cache\.(m6g|m7g|r6g|r7g)\.(large|xlarge|2xlarge|4xlarge)$"
)
# gp3 storage: RDS accepts 20 GiB to 64 TiB for PostgreSQL.
MIN_STORAGE_GB, MAX_STORAGE_GB = 20, 65536
# RDS keeps automated backups 0 (off) to 35 days.
MAX_BACKUP_RETENTION_DAYS = 35
# RDS storage autoscaling: the ceiling must be at least 10% above the allocation (RDS refuses a
# smaller one; docs: USER_PIOPS.StorageTypes, "Managing capacity automatically").
MIN_AUTOSCALING_HEADROOM = 1.1
# Retention (Prefect's DB vacuum service, run by the process that runs the services): events 1
# day to a year; flow runs 0 (keep every run: the flow_runs vacuum stays off) or 1 day to ten
# years (Prefect refuses a flow-run retention under an hour).
MAX_EVENTS_RETENTION_DAYS = 365
MAX_FLOW_RUN_RETENTION_DAYS = 3650
# A DB snapshot identifier (RDS: 1-255 letters, digits and hyphens, starting with a letter, no two
# hyphens in a row, no hyphen at the end); an automated one carries the `rds:` prefix.
DB_SNAPSHOT_NAME = re.compile(r"^(rds:)?[A-Za-z](?!.*--)[A-Za-z0-9-]{0,254}(?<!-)$")
# A DB snapshot's ARN (own, or shared from another account): arn:aws:rds:REGION:ACCOUNT:snapshot:NAME.
DB_SNAPSHOT_ARN = re.compile(
    r"^arn:aws[a-z-]*:rds:(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>\d{12}):"
    r"(?P<kind>snapshot|cluster-snapshot):(?P<name>.+)$")
# The tag on a database started from a snapshot: the snapshot, as serverDbRestoreSnapshot named it.
RESTORED_FROM_TAG = f"{NAMESPACE}:restored-from"
MIN_API_TASKS, MAX_API_TASKS = 2, 10
DOMAIN_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
HOSTED_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")
CERTIFICATE_ARN = re.compile(
    r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
ANYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
# Fewer host bits than this opens the server to a large share of the internet.
MIN_PUBLIC_PREFIX = 8

# The stack's own server is reached inside the VPC through Cloud Map's private DNS
# (components/server/server.py): the name is known before any resource exists.
SERVER_PORT = 4200
SERVER_SERVICE_NAME = "server"


def server_namespace(project: str, stack: str) -> str:
    return f"{project}-{stack}.internal"


def server_api_url(project: str, stack: str) -> str:
    return f"http://{SERVER_SERVICE_NAME}.{server_namespace(project, stack)}:{SERVER_PORT}/api"


@dataclass(frozen=True)
class ServerSettings:
    mode: ServerMode
    access: ServerAccess
    domain_name: Optional[str]
    hosted_zone_id: Optional[str]
    certificate_arn: Optional[str]
    allowed_cidrs: tuple[str, ...]
    image: str
    cpu: int
    memory: int
    api_count: int
    db_instance_class: str
    db_allocated_storage_gb: int
    db_backup_retention_days: int
    db_deletion_protection: bool
    db_final_snapshot: bool
    # The snapshot a new or replaced database starts from (identifier or ARN); None: empty.
    db_restore_snapshot: Optional[str]
    # The acknowledgement that the restore replaces an existing database (check_restore_target).
    db_restore_replaces: Optional[str]
    redis_node_type: str
    lb_deletion_protection: bool
    events_retention_days: int
    # 0: flow runs are kept forever (Prefect's flow_runs vacuum off).
    flow_run_retention_days: int
    db_max_allocated_storage_gb: int

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def ha(self) -> bool:
        return self.mode == "ha"

    @property
    def public(self) -> bool:
        return self.enabled and self.access == "public"

    @property
    def load_balanced(self) -> bool:
        """ha always has an ALB (in front of its API tasks); single only when public."""
        return self.ha or self.public

    @property
    def db_keeps_backups(self) -> bool:
        """Whether deleting the database leaves something to restore from: its final snapshot
        and, with it, its automated backups (components/server/database.py)."""
        return self.db_final_snapshot


def db_identifier(prefix: str) -> str:
    """The database's RDS identifier (63 characters at most)."""
    return physical_name(prefix, "db", 63)


def parse_server(reader: Reader, *, availability_zone_count: int,
                 adopted_vpc: bool, region: Optional[str] = None) -> ServerSettings:
    """Every `server*` key, read once; the defaults are Pulumi.yaml's. With `prefectServer: none`
    the values are carried unchecked (nothing reads them) and only the public-endpoint keys are
    refused, since setting them says the stack was meant to have a server."""
    mode: ServerMode = reader.choice("prefectServer", ServerMode)
    access: ServerAccess = reader.choice("serverAccess", ServerAccess)
    domain = reader.optional("serverDomainName")
    zone = reader.optional("serverHostedZoneId")
    certificate = reader.optional("serverCertificateArn")
    cidrs = reader.string_list("serverAllowedCidrs")
    image = reader.string("serverImage")
    cpu = reader.integer("serverCpu")
    memory = reader.integer("serverMemory")
    api_count = reader.integer("serverApiCount")
    db_class = reader.string("serverDbInstanceClass")
    storage = reader.integer("serverDbAllocatedStorageGb")
    retention = reader.integer("serverDbBackupRetentionDays")
    deletion_protection = reader.boolean("serverDbDeletionProtection")
    final_snapshot = reader.boolean("serverDbFinalSnapshot")
    restore_snapshot = reader.optional("serverDbRestoreSnapshot")
    restore_replaces = reader.optional("serverDbRestoreReplaces")
    lb_deletion_protection = reader.boolean("serverLbDeletionProtection")
    redis_node_type = reader.string("serverRedisNodeType")
    events_retention = reader.integer("serverEventsRetentionDays")
    flow_run_retention = reader.integer("serverFlowRunRetentionDays")
    max_storage = reader.integer("serverDbMaxAllocatedStorageGb")

    def settings() -> ServerSettings:
        return ServerSettings(
            mode=mode, access=access, domain_name=domain, hosted_zone_id=zone,
            certificate_arn=certificate, allowed_cidrs=cidrs, image=image, cpu=cpu,
            memory=memory, api_count=api_count if mode == "ha" else 1,
            db_instance_class=db_class, db_allocated_storage_gb=storage,
            db_backup_retention_days=retention, db_deletion_protection=deletion_protection,
            db_final_snapshot=final_snapshot, db_restore_snapshot=restore_snapshot,
            db_restore_replaces=restore_replaces, redis_node_type=redis_node_type,
            lb_deletion_protection=lb_deletion_protection,
            events_retention_days=events_retention, flow_run_retention_days=flow_run_retention,
            db_max_allocated_storage_gb=max_storage,
        )

    if mode == "none":
        for key, value in (("serverDomainName", domain), ("serverCertificateArn", certificate),
                           ("serverHostedZoneId", zone),
                           ("serverDbRestoreSnapshot", restore_snapshot),
                           ("serverDbRestoreReplaces", restore_replaces)):
            if value is not None:
                raise ConfigError(key, value,
                                  "only with prefectServer single or ha (the stack's own server)")
        return settings()
    if adopted_vpc:
        raise ConfigError("vpcId", reader.optional("vpcId"),
                          "unset with prefectServer single or ha: the server's database lives in "
                          "isolated subnets of the stack's own VPC")
    if mode == "ha" and availability_zone_count < 2:
        raise ConfigError("availabilityZoneCount", availability_zone_count,
                          "at least 2 with prefectServer ha (API tasks and Redis across AZs)")

    if domain is not None and not DOMAIN_NAME.match(domain):
        raise ConfigError("serverDomainName", domain,
                          "a lower-case DNS name such as prefect.example.com")
    if zone is not None and not HOSTED_ZONE_ID.match(zone):
        raise ConfigError("serverHostedZoneId", zone,
                          "a Route 53 hosted zone id, Z followed by capitals and digits")
    if certificate is not None and not CERTIFICATE_ARN.match(certificate):
        raise ConfigError("serverCertificateArn", certificate,
                          "an ACM certificate ARN, arn:aws:acm:<region>:<account>:certificate/<id>")
    if access == "public":
        if domain is None:
            raise ConfigError(
                "serverAccess", access,
                "public needs HTTPS for a name: set serverDomainName, with serverCertificateArn "
                "or serverHostedZoneId (the stack then issues a certificate, validated by DNS)")
        if certificate is None and zone is None:
            raise ConfigError(
                "serverDomainName", domain,
                "with serverCertificateArn (a certificate for it) or serverHostedZoneId (the "
                "stack issues one and validates it by DNS): public access is HTTPS only")
        _allowed_cidrs(cidrs)
    else:
        for key, value in (("serverDomainName", domain), ("serverCertificateArn", certificate),
                           ("serverHostedZoneId", zone)):
            if value is not None:
                raise ConfigError(key, value, "only with serverAccess public; an internal "
                                  "server has no public endpoint")
        if cidrs:
            raise ConfigError("serverAllowedCidrs", list(cidrs),
                              "only with serverAccess public; an internal server takes no "
                              "traffic from outside the VPC")

    check_fargate_size(cpu, memory, "serverCpu", "serverMemory")
    # Measured: a server process idles at about 226 MiB; below 1 GiB a busy API is OOM-killed.
    if memory < 1024:
        raise ConfigError("serverMemory", memory, "at least 1024 MiB (a Prefect server idles at "
                          "about 230 MiB and grows with load)")
    if mode == "ha" and not MIN_API_TASKS <= api_count <= MAX_API_TASKS:
        raise ConfigError("serverApiCount", api_count,
                          f"a whole number from {MIN_API_TASKS} to {MAX_API_TASKS} with "
                          "prefectServer ha (one API task is not highly available)")
    if not DB_INSTANCE_CLASS.match(db_class):
        raise ConfigError("serverDbInstanceClass", db_class,
                          "an RDS for PostgreSQL instance class such as db.t4g.micro, "
                          "db.t4g.small, db.m7g.large or db.r7g.large")
    if mode == "ha" and db_class.endswith(".micro"):
        raise ConfigError("serverDbInstanceClass", db_class,
                          "db.t4g.small or larger with prefectServer ha: a micro instance has "
                          "about 80 connections, fewer than several API and services processes "
                          "hold (up to 15 each)")
    if not MIN_STORAGE_GB <= storage <= MAX_STORAGE_GB:
        raise ConfigError("serverDbAllocatedStorageGb", storage,
                          f"a whole number of GiB from {MIN_STORAGE_GB} to {MAX_STORAGE_GB} "
                          "(gp3's range for PostgreSQL)")
    if not 0 <= retention <= MAX_BACKUP_RETENTION_DAYS:
        raise ConfigError("serverDbBackupRetentionDays", retention,
                          f"a whole number of days from 0 (no automated backups) to "
                          f"{MAX_BACKUP_RETENTION_DAYS}, what RDS keeps")
    if mode == "ha" and retention == 0:
        raise ConfigError("serverDbBackupRetentionDays", retention,
                          "at least 1 with prefectServer ha: without automated backups there is "
                          "no point-in-time restore")
    _check_retention(storage, max_storage, events_retention, flow_run_retention)
    _restore(restore_snapshot, restore_replaces, region)
    if not CACHE_NODE_TYPE.match(redis_node_type):
        raise ConfigError("serverRedisNodeType", redis_node_type,
                          "an ElastiCache node type such as cache.t4g.micro, cache.t4g.small or "
                          "cache.r7g.large")
    image = check_image(image, "serverImage")
    return settings()


def _check_retention(storage: int, max_storage: int, events_days: int,
                     flow_run_days: int) -> None:
    if not 1 <= events_days <= MAX_EVENTS_RETENTION_DAYS:
        raise ConfigError("serverEventsRetentionDays", events_days,
                          f"a whole number of days from 1 to {MAX_EVENTS_RETENTION_DAYS} "
                          "(Prefect's DB vacuum deletes older events)")
    if not 0 <= flow_run_days <= MAX_FLOW_RUN_RETENTION_DAYS:
        raise ConfigError("serverFlowRunRetentionDays", flow_run_days,
                          f"0 (keep every flow run) or a whole number of days from 1 to "
                          f"{MAX_FLOW_RUN_RETENTION_DAYS} (older finished runs are deleted "
                          "with their task runs and logs)")
    floor = math.ceil(storage * MIN_AUTOSCALING_HEADROOM)
    if not floor <= max_storage <= MAX_STORAGE_GB:
        raise ConfigError("serverDbMaxAllocatedStorageGb", max_storage,
                          f"a whole number of GiB from {floor} (10% above "
                          f"serverDbAllocatedStorageGb {storage}, what RDS storage autoscaling "
                          f"needs) to {MAX_STORAGE_GB}")


def _restore(snapshot: Optional[str], replaces: Optional[str], region: Optional[str]) -> None:
    """`serverDbRestoreSnapshot` names an instance snapshot RDS could find from this region;
    `serverDbRestoreReplaces`, when set, repeats it."""
    if replaces is not None and replaces != snapshot:
        raise ConfigError("serverDbRestoreReplaces", replaces,
                          "unset, or the same value as serverDbRestoreSnapshot "
                          f"({json.dumps(snapshot)}): it acknowledges that restoring that "
                          "snapshot replaces the stack's existing database")
    if snapshot is None:
        return
    arn = DB_SNAPSHOT_ARN.match(snapshot)
    if arn is not None:
        if arn["kind"] == "cluster-snapshot":
            raise ConfigError("serverDbRestoreSnapshot", snapshot,
                              "a DB instance snapshot; an Aurora or Multi-AZ cluster snapshot "
                              "cannot be restored into an RDS instance")
        if region is not None and arn["region"] != region:
            raise ConfigError("serverDbRestoreSnapshot", snapshot,
                              f"a snapshot in the stack's region {region} (aws:region): RDS "
                              f"restores only from its own region; copy it first with aws rds "
                              f"copy-db-snapshot --source-region {arn['region']} --region "
                              f"{region}")
        name = arn["name"]
    else:
        name = snapshot
    if not DB_SNAPSHOT_NAME.match(name):
        raise ConfigError("serverDbRestoreSnapshot", snapshot,
                          "a DB snapshot identifier (1-255 letters, digits and hyphens, starting "
                          "with a letter, no double or trailing hyphen; rds: before an automated "
                          "one) or its ARN, arn:aws:rds:<region>:<account>:snapshot:<name>")


def check_restore_target(server: ServerSettings, identifier: str) -> None:
    """Before any resource: restoring into a stack whose database exists replaces it (a new
    snapshotIdentifier forces a new instance; the fixed identifier makes Pulumi delete the old one
    first). RDS is asked whether `identifier` exists, and whether it was already started from this
    snapshot (its `RESTORED_FROM_TAG`, the steady state after a restore); otherwise the stack
    refuses unless `serverDbRestoreReplaces` acknowledges it, and then warns what will happen."""
    import pulumi
    import pulumi_aws as aws

    snapshot = server.db_restore_snapshot
    if not server.enabled or snapshot is None:
        return
    by_id = [aws.rds.GetInstancesFilterArgs(name="db-instance-id", values=[identifier])]
    if not aws.rds.get_instances(filters=by_id).instance_identifiers:
        return
    if aws.rds.get_instances(filters=by_id,
                             tags={RESTORED_FROM_TAG: snapshot}).instance_identifiers:
        return
    what = (f"the database {identifier} exists and was not started from {snapshot}: restoring "
            f"replaces it. Pulumi deletes it first (deletion protection, if on, stops that "
            f"delete: turn serverDbDeletionProtection off in an earlier pulumi up), "
            + ("taking its final snapshot, " if server.db_final_snapshot else
               "WITHOUT a final snapshot (serverDbFinalSnapshot is false), ")
            + f"then restores a copy of {snapshot} under the same identifier")
    if server.db_restore_replaces != snapshot:
        raise ConfigError("serverDbRestoreSnapshot", snapshot,
                          f"{what}. To go ahead, also set serverDbRestoreReplaces to the same "
                          f"value; to keep the data, take a snapshot first (aws rds "
                          f"create-db-snapshot --db-instance-identifier {identifier} "
                          f"--db-snapshot-identifier <name>)")
    pulumi.warn(f"serverDbRestoreReplaces acknowledged: {what}.")


def _allowed_cidrs(cidrs: tuple[str, ...]) -> None:
    accepted = ("the IPv4 networks allowed to reach the public server, e.g. "
                "[\"203.0.113.0/24\"]: required with serverAccess public, never 0.0.0.0/0, each "
                f"a network address with a prefix of /{MIN_PUBLIC_PREFIX} or longer")
    if not cidrs:
        raise ConfigError("serverAllowedCidrs", [], accepted)
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr)
        except ValueError:
            raise ConfigError("serverAllowedCidrs", list(cidrs), accepted) from None
        if network in ANYWHERE or network.prefixlen < MIN_PUBLIC_PREFIX or network.version != 4:
            raise ConfigError("serverAllowedCidrs", list(cidrs), accepted)


def physical_name(prefix: str, role: str, limit: int) -> str:
    """`<prefix>-<role>` within an AWS name limit (ALB 32, ElastiCache 40): when too long, the
    prefix is cut and a digest of the whole prefix added, so two stacks never share a name."""
    name = f"{prefix}-{role}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:6]
    head = prefix[:limit - len(role) - len(digest) - 2].rstrip("-")
    return f"{head}-{digest}-{role}"
