"""The stack's security invariants as plain functions.

Each resource rule takes a resource's type token and its properties as the engine names them
(camelCase, the shape both Pulumi's policy SDK and the mock engine give) and returns violation
messages; the stack rule takes every resource at once. The same functions run in CrossGuard
(`worker_pack.py`) and in the unit tests over every stack file, so a violation fails the tests even
where no Pulumi CLI is installed. This module imports nothing outside the standard library: the
policy pack runs in its own virtualenv.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

Props = Mapping[str, Any]

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
SECRET = "aws:secretsmanager/secret:Secret"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
AWSX_VPC = "awsx:ec2:Vpc"
# awsx.ec2.Vpc's defaults and the NAT gateways each strategy builds (awsx/ec2/vpc.ts).
AWSX_DEFAULT_AZS = 3
AWSX_NAT_GATEWAYS = {"None": lambda azs: 0, "Single": lambda azs: 1, "OnePerAz": lambda azs: azs}
ROLE = "aws:iam/role:Role"
KMS_KEY = "aws:kms/key:Key"
KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
VPC = "aws:ec2/vpc:Vpc"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
DB_INSTANCE = "aws:rds/instance:Instance"
POLICY_DOCUMENT_PROPS = {
    "aws:iam/rolePolicy:RolePolicy": ("policy",),
    "aws:iam/policy:Policy": ("policy",),
    "aws:iam/userPolicy:UserPolicy": ("policy",),
    "aws:iam/groupPolicy:GroupPolicy": ("policy",),
    ROLE: ("assumeRolePolicy",),
}

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|AUTH|CREDENTIAL", re.IGNORECASE)
ANYWHERE = {"0.0.0.0/0", "::/0"}
SECRETS_MANAGER_RECOVERY_DAYS = range(7, 31)
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# KMS actions that use a key's material; granting them is granting the data it protects.
KMS_DATA_ACTIONS = re.compile(r"^(\*|kms:\*|kms:(Decrypt|Encrypt|ReEncrypt|GenerateDataKey)\w*\*?)$")
LOGS_CONTEXT = "kms:EncryptionContext:aws:logs:arn"
# Session Manager's context on an ECS Exec session's data key (components/platform/stack_key.py).
SSM_SESSION_CONTEXT = "kms:EncryptionContext:aws:ssm:SessionId"
# ECS actions whose IAM resource is the task definition they register (Service Authorization
# Reference: RegisterTaskDefinition -> task-definition).
REGISTER_ACTIONS = {"ecs:RegisterTaskDefinition", "ecs:Register*", "ecs:*", "*"}


def image_tag(image: str) -> tuple[str, str | None, str]:
    """An image reference split as [registry[:port]/]repository, tag (or None), digest ('' if
    none); a registry's port is not a tag."""
    name, _, digest = image.partition("@")
    repository, tag = name, None
    if ":" in name.rsplit("/", 1)[-1]:
        repository, tag = name.rsplit(":", 1)
    return repository, tag, digest


def image_is_pinned(image: str) -> bool:
    """The one image-pinning rule, of the config check (components/config/validators.py) and of this pack:
    a digest, or a tag that does not say latest in any case or place (latest, 3-latest, LATEST
    all move under a running service)."""
    _, tag, digest = image_tag(image)
    if digest:
        return bool(DIGEST.search("@" + digest))
    return tag is not None and "latest" not in tag.lower()


@dataclass(frozen=True)
class ResourceRule:
    name: str
    description: str
    types: tuple[str, ...]
    check: Callable[[str, Props], list[str]]

    def __call__(self, type_: str, props: Props) -> list[str]:
        return self.check(type_, props) if type_ in self.types else []


@dataclass(frozen=True)
class StackRule:
    name: str
    description: str
    check: Callable[[Sequence[tuple[str, Props]]], list[str]]

    def __call__(self, resources: Sequence[tuple[str, Props]]) -> list[str]:
        return self.check(resources)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _containers(props: Props) -> list[dict[str, Any]]:
    return _as_list(_json(props.get("containerDefinitions")))


def _statements(props: Props, keys: Iterable[str]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for key in keys:
        document = _json(props.get(key))
        if document:
            statements += _as_list(document.get("Statement"))
    for inline in _as_list(props.get("inlinePolicies")):
        document = _json(inline.get("policy"))
        if document:
            statements += _as_list(document.get("Statement"))
    return [s for s in statements if s.get("Effect") == "Allow"]


def _documents(type_: str, props: Props) -> list[dict[str, Any]]:
    return _statements(props, POLICY_DOCUMENT_PROPS.get(type_, ()))


# --- the rules -------------------------------------------------------------------------------

def no_secret_in_container_environment(type_: str, props: Props) -> list[str]:
    return [
        f"container {c.get('name')!r} has {e.get('name')!r} in plain `environment`: pass it "
        "through `secrets` (Secrets Manager) instead"
        for c in _containers(props) for e in _as_list(c.get("environment"))
        if SECRET_NAME.search(str(e.get("name", "")))
    ]


def no_iam_star_action(type_: str, props: Props) -> list[str]:
    """IAM identity and trust policies. A KMS key policy is not one: its root statement is AWS's
    default `kms:*`, which hands the key to the account's IAM policies."""
    violations = []
    for statement in _documents(type_, props):
        if "NotAction" in statement:
            violations.append(f"statement {statement.get('Sid', '')!r} allows NotAction: every "
                              "action but a few")
        for action in _as_list(statement.get("Action")):
            if action == "*" or str(action).endswith(":*"):
                violations.append(f"statement {statement.get('Sid', '')!r} allows {action!r}: "
                                  "name the actions")
    return violations


def pass_role_scoped_to_a_service(type_: str, props: Props) -> list[str]:
    violations = []
    for statement in _documents(type_, props):
        actions = _as_list(statement.get("Action"))
        if not any(a in ("iam:PassRole", "iam:*", "*") for a in actions):
            continue
        conditions = statement.get("Condition") or {}
        scoped = any("iam:PassedToService" in (block or {}) for block in conditions.values())
        if not scoped:
            violations.append(f"statement {statement.get('Sid', '')!r} passes roles without an "
                              "iam:PassedToService condition")
        if "*" in _as_list(statement.get("Resource")):
            violations.append(f"statement {statement.get('Sid', '')!r} passes any role ('*')")
    return violations


def _ingress_sources(type_: str, props: Props) -> list[tuple[str, set[str]]]:
    if type_ == SECURITY_GROUP:
        return [(str(rule.get("description") or rule.get("fromPort")),
                 set(_as_list(rule.get("cidrBlocks"))) | set(_as_list(rule.get("ipv6CidrBlocks"))))
                for rule in _as_list(props.get("ingress"))]
    if type_ == SECURITY_GROUP_RULE and props.get("type") == "ingress":
        return [(str(props.get("description") or props.get("fromPort")),
                 set(_as_list(props.get("cidrBlocks"))) | set(_as_list(props.get("ipv6CidrBlocks"))))]
    if type_ == INGRESS_RULE:
        return [(str(props.get("description") or props.get("fromPort")),
                 {cidr for cidr in (props.get("cidrIpv4"), props.get("cidrIpv6")) if cidr is not None})]
    return []


def no_ingress_from_anywhere(type_: str, props: Props) -> list[str]:
    return [f"ingress {label!r} is open to {sorted(sources & ANYWHERE)}: the worker takes no "
            "inbound traffic" for label, sources in _ingress_sources(type_, props)
            if sources & ANYWHERE]


def log_retention_set(type_: str, props: Props) -> list[str]:
    days = props.get("retentionInDays")
    if not days:
        return ["log group keeps logs forever: set retentionInDays"]
    return []


def image_pinned(type_: str, props: Props) -> list[str]:
    return [f"container {c.get('name')!r} runs {c.get('image')!r}: pin a tag that does not say "
            "latest, or a digest"
            for c in _containers(props) if not image_is_pinned(str(c.get("image", "")))]


def secret_has_recovery_window(type_: str, props: Props) -> list[str]:
    days = props.get("recoveryWindowInDays")
    # Unset, Secrets Manager applies its default of 30 days; 0 deletes at once.
    if days is not None and int(days) not in SECRETS_MANAGER_RECOVERY_DAYS:
        return [f"recoveryWindowInDays is {days!r}: {SECRETS_MANAGER_RECOVERY_DAYS[0]} to "
                f"{SECRETS_MANAGER_RECOVERY_DAYS[-1]} days, so a deleted credential can be restored"]
    return []


def awsx_nat_strategy(vpc: Props) -> str:
    """The awsx VPC's NAT strategy; awsx builds one NAT gateway per AZ when none is given."""
    return str((vpc.get("natGateways") or {}).get("strategy", "OnePerAz"))


def awsx_nat_gateway_count(vpc: Props) -> int:
    """The NAT gateways an awsx VPC builds for its strategy and AZ count."""
    azs = int(vpc.get("numberOfAvailabilityZones") or AWSX_DEFAULT_AZS)
    return AWSX_NAT_GATEWAYS[awsx_nat_strategy(vpc)](azs)


# --- hardening (issue 10) ----------------------------------------------------------------------

def read_only_root_filesystem(type_: str, props: Props) -> list[str]:
    return [f"container {c.get('name')!r} has a writable root filesystem: set "
            "readonlyRootFilesystem and give the paths it writes task volumes"
            for c in _containers(props) if c.get("readonlyRootFilesystem") is not True]


def encrypted_with_customer_key(type_: str, props: Props) -> list[str]:
    if not props.get("kmsKeyId"):
        return ["encrypted with an AWS managed key, which only IAM guards: set kmsKeyId to the "
                "stack key"]
    return []


def key_rotation_on(type_: str, props: Props) -> list[str]:
    if props.get("enableKeyRotation") is not True:
        return ["key rotation is off: set enableKeyRotation"]
    return []


def _principals(statement: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    principal = statement.get("Principal")
    if not isinstance(principal, Mapping):
        return [str(principal)] if principal else [], []
    return ([str(p) for p in _as_list(principal.get("AWS"))],
            [str(p) for p in _as_list(principal.get("Service"))])


def _condition_keys(statement: Mapping[str, Any]) -> set[str]:
    return {key for block in (statement.get("Condition") or {}).values() for key in (block or {})}


def key_use_scoped(type_: str, props: Props) -> list[str]:
    """A key policy grants use of the key (decrypt, encrypt, data keys) only with a condition
    that pins it: through a named service (kms:ViaService) or to ECS Exec sessions (Session
    Manager's session id in the encryption context) for AWS principals, to named log groups
    for CloudWatch Logs. An account-wide grant would let IAM alone decide who decrypts."""
    document = _json(props.get("policy"))
    if not document:
        return []
    violations = []
    for statement in _as_list(document.get("Statement")):
        if statement.get("Effect") != "Allow":
            continue
        if not any(KMS_DATA_ACTIONS.match(str(a)) for a in _as_list(statement.get("Action"))):
            continue
        aws_principals, services = _principals(statement)
        keys = _condition_keys(statement)
        sid = statement.get("Sid", "")
        if aws_principals and not keys & {"kms:ViaService", SSM_SESSION_CONTEXT}:
            violations.append(f"statement {sid!r} lets {aws_principals} use the key without a "
                              f"kms:ViaService (or {SSM_SESSION_CONTEXT}) condition")
        if any(s.startswith("logs.") for s in services) and LOGS_CONTEXT not in keys:
            violations.append(f"statement {sid!r} lets CloudWatch Logs use the key for any log "
                              f"group: add a {LOGS_CONTEXT} condition")
    return violations


def register_task_definition_scoped(type_: str, props: Props) -> list[str]:
    violations = []
    for statement in _documents(type_, props):
        if not REGISTER_ACTIONS & set(_as_list(statement.get("Action"))):
            continue
        wide = [r for r in _as_list(statement.get("Resource"))
                if r == "*" or str(r).endswith(":task-definition/*")]
        if wide:
            violations.append(f"statement {statement.get('Sid', '')!r} registers task "
                              f"definitions on {wide}: name the families")
    return violations


def default_security_group_closed(type_: str, props: Props) -> list[str]:
    rules = _as_list(props.get("ingress")) + _as_list(props.get("egress"))
    if rules:
        return [f"the VPC's default security group keeps {len(rules)} rule(s): declare it with "
                "no ingress and no egress"]
    return []


def _declares_a_vpc(resources: Sequence[tuple[str, Props]]) -> bool:
    return any(type_ in (AWSX_VPC, VPC) for type_, _ in resources)


def vpc_has_flow_logs(resources: Sequence[tuple[str, Props]]) -> list[str]:
    if _declares_a_vpc(resources) and not any(t == FLOW_LOG for t, _ in resources):
        return ["the stack creates a VPC with no flow log: set vpcFlowLogs true"]
    return []


def vpc_default_security_group_declared(resources: Sequence[tuple[str, Props]]) -> list[str]:
    if _declares_a_vpc(resources) and not any(t == DEFAULT_SECURITY_GROUP for t, _ in resources):
        return ["the stack creates a VPC but leaves its default security group with AWS's "
                "allow-all rules: declare it (aws.ec2.DefaultSecurityGroup) with none"]
    return []


def _private_mode(resources: Sequence[tuple[str, Props]]) -> bool:
    """A stack with a NAT gateway routes its worker through it: awsx's NAT gateways under the real
    engine, or the awsx VPC's NAT strategy where its children are not visible (mocks)."""
    for type_, props in resources:
        if type_ == NAT_GATEWAY:
            return True
        if type_ == AWSX_VPC and awsx_nat_strategy(props) != "None":
            return True
    return False


def worker_has_no_public_ip_in_private_modes(resources: Sequence[tuple[str, Props]]) -> list[str]:
    if not _private_mode(resources):
        return []
    return [f"service {props.get('name') or '(unnamed)'} assigns a public IP although the stack "
            "has NAT gateways: keep the worker in private subnets"
            for type_, props in resources if type_ == SERVICE
            if (props.get("networkConfiguration") or {}).get("assignPublicIp")]


# `prefect server start`, `prefect server services start`, and the migration script's
# ("prefect", "server", "database", "upgrade"): words apart by anything but a letter.
PREFECT_SERVER_COMMAND = re.compile(r"\bprefect\W+server\W+(start|services|database)\b")
DATABASE_DRIVER = "PREFECT_SERVER_DATABASE_DRIVER"


def prefect_server_never_on_sqlite(type_: str, props: Props) -> list[str]:
    """Without PREFECT_SERVER_DATABASE_DRIVER Prefect ignores the other split database settings
    and silently keeps its data in SQLite inside the container, lost on every restart."""
    violations = []
    for container in _containers(props):
        command = " ".join(str(part) for part in _as_list(container.get("command")))
        if not PREFECT_SERVER_COMMAND.search(command):
            continue
        names = {e.get("name") for e in _as_list(container.get("environment"))}
        if DATABASE_DRIVER not in names:
            violations.append(f"container {container.get('name')!r} runs a Prefect server without "
                              f"{DATABASE_DRIVER}: it would use SQLite inside the container")
    return violations


def prod_database_kept(resources: Sequence[tuple[str, Props]]) -> list[str]:
    """A database tagged environment=prod keeps deletion protection and a final snapshot: a
    `pulumi destroy` or a replacement must not take its data with it."""
    violations = []
    for type_, props in resources:
        tags = props.get("tags") or {}
        if type_ != DB_INSTANCE or tags.get("environment") != "prod":
            continue
        name = props.get("identifier") or "(unnamed)"
        if not props.get("deletionProtection"):
            violations.append(f"prod database {name} has no deletion protection: set "
                              "serverDbDeletionProtection true")
        if props.get("skipFinalSnapshot", True):
            violations.append(f"prod database {name} skips its final snapshot: set "
                              "serverDbFinalSnapshot true")
    return violations


IAM_TYPES = tuple(POLICY_DOCUMENT_PROPS)
RESOURCE_RULES: tuple[ResourceRule, ...] = (
    ResourceRule("no-secret-in-container-environment",
                 "Credentials reach containers through `secrets`, never plain `environment`.",
                 (TASK_DEFINITION,), no_secret_in_container_environment),
    ResourceRule("no-iam-star-action", "IAM statements name their actions: no '*', 'svc:*' or "
                 "NotAction.", IAM_TYPES, no_iam_star_action),
    ResourceRule("pass-role-scoped-to-a-service",
                 "iam:PassRole names its roles and carries an iam:PassedToService condition.",
                 IAM_TYPES, pass_role_scoped_to_a_service),
    ResourceRule("no-ingress-from-anywhere",
                 "No security group takes inbound traffic from 0.0.0.0/0 or ::/0.",
                 (SECURITY_GROUP, SECURITY_GROUP_RULE, INGRESS_RULE), no_ingress_from_anywhere),
    ResourceRule("log-retention-set", "Every log group expires its logs.", (LOG_GROUP,),
                 log_retention_set),
    ResourceRule("image-pinned", "Containers run an image pinned by digest, or by a tag that does "
                 "not say latest (any case).",
                 (TASK_DEFINITION,), image_pinned),
    ResourceRule("secret-has-recovery-window",
                 "Secrets can be restored for 7 to 30 days after deletion.", (SECRET,),
                 secret_has_recovery_window),
    ResourceRule("read-only-root-filesystem",
                 "Containers run with a read-only root filesystem; what they write is a volume.",
                 (TASK_DEFINITION,), read_only_root_filesystem),
    ResourceRule("encrypted-with-customer-key",
                 "Secrets and log groups are encrypted with a customer managed KMS key.",
                 (SECRET, LOG_GROUP), encrypted_with_customer_key),
    ResourceRule("kms-key-rotation-on", "Customer managed KMS keys rotate yearly.", (KMS_KEY,),
                 key_rotation_on),
    ResourceRule("kms-key-use-scoped",
                 "A key policy grants use of the key only through a named service (kms:ViaService) "
                 "or, to CloudWatch Logs, for named log groups.", (KMS_KEY, KEY_POLICY),
                 key_use_scoped),
    ResourceRule("register-task-definition-scoped",
                 "ecs:RegisterTaskDefinition names task-definition families, never '*'.",
                 IAM_TYPES, register_task_definition_scoped),
    ResourceRule("default-security-group-closed",
                 "The VPC's default security group has no rule.", (DEFAULT_SECURITY_GROUP,),
                 default_security_group_closed),
    ResourceRule("prefect-server-never-on-sqlite",
                 "A Prefect server container names its database driver (else SQLite in the "
                 "container).", (TASK_DEFINITION,), prefect_server_never_on_sqlite),
)
STACK_RULES: tuple[StackRule, ...] = (
    StackRule("worker-has-no-public-ip-in-private-modes",
              "With NAT gateways the worker service assigns no public IP.",
              worker_has_no_public_ip_in_private_modes),
    StackRule("vpc-has-flow-logs", "A VPC the stack creates has a flow log.", vpc_has_flow_logs),
    StackRule("vpc-default-security-group-declared",
              "A VPC the stack creates has its default security group declared (and closed).",
              vpc_default_security_group_declared),
    StackRule("prod-database-kept",
              "A database tagged environment=prod has deletion protection and a final snapshot.",
              prod_database_kept),
)


def evaluate(resources: Sequence[tuple[str, Props]]) -> dict[str, list[str]]:
    """Every rule over every resource: rule name -> violations (empty when it holds)."""
    results: dict[str, list[str]] = {}
    for rule in RESOURCE_RULES:
        results[rule.name] = [f"{type_}: {message}" for type_, props in resources
                              for message in rule(type_, props)]
    for stack_rule in STACK_RULES:
        results[stack_rule.name] = stack_rule(resources)
    return results
