"""Replay what the program declared, under mocks, into a moto server through boto3.

Mocks only record what the program asks for; this asks the AWS API (as moto implements it, with
botocore's client-side validation in front) to accept it. Every resource is read from an
`Evaluation`, never retyped: each declared input is either turned into the API call the provider
would make or named as engine-side (`waitForSteadyState`), and an input nobody translated fails
the replay, so a new argument cannot slip past unchecked.

Resources replay in declaration order: the engine registers a resource only once the outputs it
depends on exist, so that order is already a dependency order. Ids and ARNs the mocks invented
(`vpc-000…7`, `sg-000…f`, the secret's ARN) are mapped to the ones moto returns, and any mock id
left unmapped in a later resource's inputs is an error.

`HANDLERS` maps a Pulumi type token to one function; a resource of a type with no handler fails
the replay before anything is created, listing every such type.

The work pool is not an AWS resource. Its handler always runs the provider's own `check` (what the
engine runs at preview); given a Prefect server (`prefect_api_url`), it creates the pool there
through the provider, as `pulumi up` would on the declared server. Without one, the pool is listed
in `Replay.not_created` with where its creation is tested instead: never skipped silently.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Optional

import boto3
import botocore.exceptions
from botocore.config import Config

from components.work_pool import PrefectApiError, WorkPoolProvider
from tests.harness import PROJECT, WORK_POOL, Declared, Evaluation, is_secret_input
from tools.mock_engine import whole_numbers

# This program's own components group resources; AWS never sees them.
COMPONENT_PREFIX = f"{PROJECT}:"
# Ids the mocks invent are zero-padded counters (see RecordingMocks._id); moto's are random.
MOCK_ID = re.compile(r"\b(vpc|subnet|sg|key)-0{8,}[0-9a-f]*\b")
AWS_MANAGED_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(?:(.*)/)?([^/]+)$")


class ReplayError(AssertionError):
    """The AWS API (or what awsx would check) refused a declared resource."""

    def __init__(self, resource: Declared, message: str):
        self.resource = resource
        super().__init__(f"{resource.type} {resource.name!r}: {message}")


class UnknownResourceTypes(AssertionError):
    def __init__(self, unknown: dict[str, list[str]]):
        self.types = sorted(unknown)
        listed = "; ".join(f"{t} ({', '.join(names)})" for t, names in sorted(unknown.items()))
        super().__init__(f"no replay handler for: {listed}. Add one to tests/replay.py HANDLERS.")


class Inputs:
    """A resource's declared inputs, with mock ids replaced by moto's; tracks what was read."""

    def __init__(self, resource: Declared, values: dict[str, Any]):
        self._resource = resource
        self._values = values
        self._read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        return self._values.get(key, default)

    def require(self, key: str) -> Any:
        self._read.add(key)
        if key not in self._values:
            raise ReplayError(self._resource, f"declares no {key!r}")
        return self._values[key]

    def integer(self, key: str, default: Any = None) -> Optional[int]:
        """The engine carries numbers as floats; the provider sends the schema's integer."""
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not float(value).is_integer():
            raise ReplayError(self._resource, f"{key} = {value!r} is not an integer")
        return int(value)

    def secret(self, key: str) -> Any:
        value = self.require(key)
        return value["value"] if is_secret_input(value) else value

    def copy(self, request: dict[str, Any], fields: dict[str, str],
             convert: Callable[[Any], Any] = lambda value: value) -> dict[str, Any]:
        """Each declared input of `fields` (input -> API name) into `request`, when it is set."""
        for key, api_key in fields.items():
            value = self.get(key)
            if value is not None:
                request[api_key] = convert(value)
        return request

    def engine_side(self, *keys: str) -> None:
        """Inputs the provider acts on itself (waiting, deleting), with no create-time API field."""
        self._read.update(keys)

    def unread(self) -> list[str]:
        return sorted(set(self._values) - self._read)


def pascal(*keys: str) -> dict[str, str]:
    """Inputs whose API name is the input's name capitalised (`roleArn` -> `RoleArn`)."""
    return {key: key[0].upper() + key[1:] for key in keys}


def aws_tags(tags: Optional[dict[str, str]], key: str = "Key", value: str = "Value"
             ) -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in (tags or {}).items()]


def ecs_tags(tags: Optional[dict[str, str]]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in (tags or {}).items()]


@lru_cache(maxsize=1)
def aws_managed_policies() -> dict[str, Any]:
    """moto's copy of AWS's managed policies (name -> path, document), read from the moto package.
    Loading them into the server instead (MOTO_IAM_LOAD_MANAGED_POLICIES) costs ~2 s per reset."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return json.loads(aws_managed_policies_data)


@dataclass
class Replay:
    """One replay into one moto server: the clients, the id map, and what was created."""

    endpoint_url: str
    region: str = "us-east-1"
    # The Prefect server that stands in for the declared API URL; None: pools are checked only.
    prefect_api_url: Optional[str] = None
    ids: dict[str, str] = field(default_factory=dict)
    # (type, logical name) -> what moto returned; a name alone is not unique across types.
    created: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # (type, logical name) -> why it was checked but not created, and where creating it is tested.
    not_created: dict[tuple[str, str], str] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service, endpoint_url=self.endpoint_url, region_name=self.region,
                aws_access_key_id="testing", aws_secret_access_key="testing",
                # One attempt: a refusal should fail at once, not after botocore's retries.
                config=Config(retries={"max_attempts": 1}),
            )
        return self._clients[service]

    def account(self) -> str:
        """The account the replay deploys as (moto's), the caller AWS checks policies against."""
        return self.client("sts").get_caller_identity()["Account"]

    def map(self, mock_value: Any, real_value: Any) -> None:
        if isinstance(mock_value, str) and mock_value and mock_value != real_value:
            self.ids[mock_value] = real_value

    def real(self, value: Any) -> Any:
        """`value` with every mock id or ARN (also inside JSON strings) replaced by moto's."""
        if isinstance(value, dict):
            return {k: self.real(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.real(v) for v in value]
        if isinstance(value, str) and self.ids:
            pattern = re.compile("|".join(re.escape(k) for k in sorted(self.ids, key=len, reverse=True)))
            return pattern.sub(lambda m: self.ids[m.group(0)], value)
        return value

    def run(self, evaluation: Evaluation | Iterable[Declared]) -> "Replay":
        resources = evaluation.resources if isinstance(evaluation, Evaluation) else list(evaluation)
        unknown: dict[str, list[str]] = {}
        for resource in resources:
            if not resource.type.startswith(COMPONENT_PREFIX) and resource.type not in HANDLERS:
                unknown.setdefault(resource.type, []).append(resource.name)
        if unknown:
            raise UnknownResourceTypes(unknown)
        for resource in resources:
            if resource.type.startswith(COMPONENT_PREFIX):
                continue
            self.replay_one(resource)
        return self

    def replay_one(self, resource: Declared) -> None:
        values = self.real(resource.inputs)
        leftover = sorted({m.group(0) for m in MOCK_ID.finditer(json.dumps(values))})
        if leftover:
            raise ReplayError(resource, f"references {leftover}, which no replayed resource created")
        inputs = Inputs(resource, values)
        try:
            created = HANDLERS[resource.type](self, resource, inputs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError,
                PrefectApiError) as error:
            raise ReplayError(resource, f"{type(error).__name__}: {error}") from error
        unread = inputs.unread()
        if unread:
            raise ReplayError(resource, f"inputs not replayed: {unread}; translate them in "
                                        f"tests/replay.py or name them engine-side")
        self.created[(resource.type, resource.name)] = created or {}

    def delete_work_pools(self) -> None:
        """Delete the pools this replay created on the Prefect server (it outlives the test)."""
        for (type_, _), created in self.created.items():
            if type_ == WORK_POOL and created.get("created"):
                WorkPoolProvider().delete(created["id"], created["outs"])


Handler = Callable[[Replay, Declared, Inputs], Optional[dict[str, Any]]]


def _physical_name(resource: Declared, inputs: Inputs) -> str:
    """The declared name, else the auto-name the mock gave (logical name plus a suffix)."""
    return inputs.get("name") or resource.outputs["name"]


# --- network -----------------------------------------------------------------------------------

def awsx_vpc(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """What `awsx.ec2.Vpc` builds: the VPC, a subnet per AZ per declared tier, the internet gateway
    and the NAT gateways of the strategy. Its deploy-time checks (awsx/ec2/vpc.ts) are repeated
    here because under mocks the component never runs."""
    ec2 = replay.client("ec2")
    cidr = ipaddress.ip_network(inputs.require("cidrBlock"))
    az_count = inputs.integer("numberOfAvailabilityZones", 3)
    inputs.engine_side("subnetStrategy")  # the layout within the CIDR; any layout hosts the stack
    specs = inputs.get("subnetSpecs") or [{"type": "Public"}, {"type": "Private"}]
    nat = (inputs.get("natGateways") or {}).get("strategy", "OnePerAz")
    tiers = [spec["type"] for spec in specs]
    if nat != "None" and not {"Public", "Private"} <= set(tiers):
        raise ReplayError(resource, f"NAT strategy {nat} needs public and private subnets, "
                                    f"declared {tiers} (awsx refuses this at deploy time)")
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    if az_count > len(zones):
        raise ReplayError(resource, f"{az_count} AZs asked, the region has {len(zones)}")

    tags = aws_tags(inputs.get("tags"))
    vpc_id = ec2.create_vpc(
        CidrBlock=str(cidr),
        TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}] if tags else [],
    )["Vpc"]["VpcId"]
    for attribute in ("EnableDnsHostnames", "EnableDnsSupport"):
        key = attribute[0].lower() + attribute[1:]
        ec2.modify_vpc_attribute(VpcId=vpc_id, **{attribute: {"Value": bool(inputs.get(key, True))}})

    subnet_ids: dict[str, list[str]] = {"Public": [], "Private": [], "Isolated": []}
    allocated: list[ipaddress.IPv4Network] = []
    for spec in specs:
        mask = int(spec.get("cidrMask") or cidr.prefixlen + 4)
        for zone in zones[:az_count]:
            block = next((b for b in cidr.subnets(new_prefix=mask)
                          if not any(b.overlaps(a) for a in allocated)), None)
            if block is None:
                raise ReplayError(resource, f"{cidr} has no room for another /{mask} subnet "
                                            f"({len(allocated)} allocated)")
            allocated.append(block)
            subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock=str(block), AvailabilityZone=zone)
            subnet_ids[spec["type"]].append(subnet["Subnet"]["SubnetId"])

    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc_id)
    nat_count = {"None": 0, "Single": 1, "OnePerAz": az_count}[nat]
    nat_ids = []
    for public_subnet in subnet_ids["Public"][:nat_count]:
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        nat_ids.append(ec2.create_nat_gateway(SubnetId=public_subnet, AllocationId=allocation)
                       ["NatGateway"]["NatGatewayId"])

    replay.map(resource.outputs["vpcId"], vpc_id)
    for tier, key in (("Public", "publicSubnetIds"), ("Private", "privateSubnetIds"),
                      ("Isolated", "isolatedSubnetIds")):
        declared = resource.outputs.get(key) or []
        if len(declared) != len(subnet_ids[tier]):
            raise ReplayError(resource, f"mock answered {len(declared)} {tier} subnets, "
                                        f"awsx would build {len(subnet_ids[tier])}")
        for mock_id, real_id in zip(declared, subnet_ids[tier]):
            replay.map(mock_id, real_id)
    return {"vpc_id": vpc_id, "public_subnet_ids": subnet_ids["Public"],
            "private_subnet_ids": subnet_ids["Private"],
            "isolated_subnet_ids": subnet_ids["Isolated"], "nat_gateway_ids": nat_ids}


def _ip_permission(rule: dict[str, Any]) -> dict[str, Any]:
    permission: dict[str, Any] = {"IpProtocol": str(rule["protocol"])}
    if str(rule["protocol"]) != "-1":
        permission.update(FromPort=int(rule["fromPort"]), ToPort=int(rule["toPort"]))
    description = {"Description": rule["description"]} if rule.get("description") else {}
    permission["IpRanges"] = [{"CidrIp": c, **description} for c in rule.get("cidrBlocks") or []]
    permission["Ipv6Ranges"] = [{"CidrIpv6": c, **description}
                                for c in rule.get("ipv6CidrBlocks") or []]
    permission["UserIdGroupPairs"] = [{"GroupId": g, **description}
                                      for g in rule.get("securityGroups") or []]
    return permission


def security_group(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """Like the provider: create the group, drop AWS's default allow-all egress, then add exactly
    the declared rules."""
    ec2 = replay.client("ec2")
    tags = aws_tags(inputs.get("tags"))
    group_id = ec2.create_security_group(
        GroupName=_physical_name(resource, inputs),
        Description=inputs.get("description") or "Managed by Pulumi",
        VpcId=inputs.require("vpcId"),
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}] if tags else [],
    )["GroupId"]
    inputs.engine_side("revokeRulesOnDelete")
    ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    egress = [_ip_permission(rule) for rule in inputs.get("egress") or []]
    ingress = [_ip_permission(rule) for rule in inputs.get("ingress") or []]
    if egress:
        ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=egress)
    if ingress:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=ingress)
    replay.map(resource.id, group_id)
    return {"id": group_id}


# --- IAM ---------------------------------------------------------------------------------------

def iam_role(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    iam = replay.client("iam")
    name = _physical_name(resource, inputs)
    trust_policy = inputs.require("assumeRolePolicy")
    role = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=trust_policy,
        Description=inputs.get("description") or "",
        Tags=aws_tags(inputs.get("tags")),
        MaxSessionDuration=inputs.integer("maxSessionDuration", 3600),
        Path=inputs.get("path") or "/",
    )["Role"]
    # moto parses a trust policy on UpdateAssumeRolePolicy only, so send it again that way.
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust_policy)
    inputs.engine_side("forceDetachPolicies")
    replay.map(resource.id, role["RoleName"])
    replay.map(resource.outputs.get("arn"), role["Arn"])
    return {"name": role["RoleName"], "arn": role["Arn"]}


def iam_role_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    name = _physical_name(resource, inputs)
    replay.client("iam").put_role_policy(
        RoleName=inputs.require("role"), PolicyName=name,
        PolicyDocument=inputs.require("policy"))
    return {"name": name}


def iam_role_policy_attachment(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """moto starts with no AWS-managed policies. An `arn:aws:iam::aws:policy/...` ARN is looked up
    in moto's copy of AWS's list (a typo fails here, as AttachRolePolicy would fail), and a
    customer-managed stand-in with that path, name and document is attached in its place."""
    iam = replay.client("iam")
    policy_arn = inputs.require("policyArn")
    managed = AWS_MANAGED_POLICY.match(policy_arn)
    if managed:
        path, name = managed.group(1), managed.group(2)
        known = aws_managed_policies().get(name)
        if known is None or known["Path"].strip("/") != (path or ""):
            raise ReplayError(resource, f"{policy_arn} is not an AWS managed policy "
                                        f"(moto's copy of AWS's list has no such name and path)")
        stand_in = replay.ids.get(policy_arn)
        if stand_in is None:
            stand_in = iam.create_policy(PolicyName=name, Path=known["Path"],
                                         PolicyDocument=json.dumps(known["Document"]))["Policy"]["Arn"]
            replay.map(policy_arn, stand_in)
        policy_arn = stand_in
    iam.attach_role_policy(RoleName=inputs.require("role"), PolicyArn=policy_arn)
    return {"policy_arn": policy_arn}


# --- secret, logs ------------------------------------------------------------------------------

def secret(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    created = replay.client("secretsmanager").create_secret(
        Name=_physical_name(resource, inputs),
        Description=inputs.get("description") or "",
        Tags=aws_tags(inputs.get("tags")),
        **({"KmsKeyId": inputs.get("kmsKeyId")} if inputs.get("kmsKeyId") else {}),
    )
    # Applies when the secret is deleted (DeleteSecret's RecoveryWindowInDays), not at create.
    inputs.engine_side("recoveryWindowInDays")
    replay.map(resource.id, created["ARN"])
    replay.map(resource.outputs.get("arn"), created["ARN"])
    return {"arn": created["ARN"], "name": created["Name"]}


def secret_version(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    version = replay.client("secretsmanager").put_secret_value(
        SecretId=inputs.require("secretId"), SecretString=inputs.secret("secretString"))
    return {"version_id": version["VersionId"]}


def log_group(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    logs = replay.client("logs")
    name = _physical_name(resource, inputs)
    logs.create_log_group(logGroupName=name, tags=inputs.get("tags") or {})
    retention = inputs.integer("retentionInDays")
    if retention:
        logs.put_retention_policy(logGroupName=name, retentionInDays=retention)
    inputs.engine_side("skipDestroy")
    return {"name": name}


# --- ECS ---------------------------------------------------------------------------------------

def ecs_cluster(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    cluster = replay.client("ecs").create_cluster(
        clusterName=_physical_name(resource, inputs),
        settings=inputs.get("settings") or [],
        tags=ecs_tags(inputs.get("tags")),
    )["cluster"]
    replay.map(resource.id, cluster["clusterArn"])
    replay.map(resource.outputs.get("arn"), cluster["clusterArn"])
    return {"arn": cluster["clusterArn"], "name": cluster["clusterName"]}


def ecs_cluster_capacity_providers(replay: Replay, resource: Declared, inputs: Inputs) -> dict:
    replay.client("ecs").put_cluster_capacity_providers(
        cluster=inputs.require("clusterName"),
        capacityProviders=inputs.require("capacityProviders"),
        defaultCapacityProviderStrategy=[
            {"capacityProvider": s["capacityProvider"], "weight": int(s.get("weight", 0)),
             "base": int(s.get("base", 0))}
            for s in inputs.get("defaultCapacityProviderStrategies") or []],
    )
    return {}


def ecs_task_definition(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """RegisterTaskDefinition with the container definitions exactly as declared: botocore checks
    every key and type against the ECS API model."""
    try:
        containers = json.loads(inputs.require("containerDefinitions"))
    except json.JSONDecodeError as error:
        raise ReplayError(resource, f"containerDefinitions is not JSON: {error}") from error
    optional = {
        "cpu": inputs.get("cpu"),
        "memory": inputs.get("memory"),
        "networkMode": inputs.get("networkMode"),
        "requiresCompatibilities": inputs.get("requiresCompatibilities"),
        "runtimePlatform": inputs.get("runtimePlatform"),
        "executionRoleArn": inputs.get("executionRoleArn"),
        "taskRoleArn": inputs.get("taskRoleArn"),
        "volumes": inputs.get("volumes"),
        "ephemeralStorage": inputs.get("ephemeralStorage"),
        "tags": ecs_tags(inputs.get("tags")) or None,
    }
    # Provider-side: keep old revisions on replace, and track the latest revision in state.
    inputs.engine_side("skipDestroy", "trackLatest")
    definition = replay.client("ecs").register_task_definition(
        family=inputs.require("family"), containerDefinitions=containers,
        **{k: v for k, v in optional.items() if v is not None},
    )["taskDefinition"]
    replay.map(resource.outputs.get("arn"), definition["taskDefinitionArn"])
    return {"arn": definition["taskDefinitionArn"]}


def _api_camel(block: dict[str, Any]) -> dict[str, Any]:
    """A nested block whose API keys are the input's own (camelCase), numbers as integers."""
    return {k: whole_numbers(v) for k, v in block.items() if v is not None}


def ecs_service(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    request: dict[str, Any] = {
        "cluster": inputs.require("cluster"),
        "serviceName": _physical_name(resource, inputs),
        "taskDefinition": inputs.require("taskDefinition"),
        "desiredCount": inputs.integer("desiredCount", 0),
        "tags": ecs_tags(inputs.get("tags")),
    }
    if inputs.get("launchType"):
        request["launchType"] = inputs.get("launchType")
    strategies = inputs.get("capacityProviderStrategies") or []
    if strategies:
        request["capacityProviderStrategy"] = [
            {"capacityProvider": s["capacityProvider"], "weight": int(s.get("weight", 0)),
             "base": int(s.get("base", 0))} for s in strategies]
    if inputs.get("platformVersion"):
        request["platformVersion"] = inputs.get("platformVersion")
    network = inputs.get("networkConfiguration")
    if network is not None:
        public_ip = network.get("assignPublicIp", False)
        if not isinstance(public_ip, bool):
            raise ReplayError(resource, f"assignPublicIp = {public_ip!r} is not a boolean")
        request["networkConfiguration"] = {"awsvpcConfiguration": {
            "subnets": network.get("subnets"),
            "securityGroups": network.get("securityGroups") or [],
            "assignPublicIp": "ENABLED" if public_ip else "DISABLED",
        }}
    deployment: dict[str, Any] = {}
    breaker = inputs.get("deploymentCircuitBreaker")
    if breaker is not None:
        deployment["deploymentCircuitBreaker"] = dict(breaker)
    for key, api_key in (("deploymentMinimumHealthyPercent", "minimumHealthyPercent"),
                         ("deploymentMaximumPercent", "maximumPercent")):
        value = inputs.integer(key)
        if value is not None:
            deployment[api_key] = value
    if deployment:
        request["deploymentConfiguration"] = deployment
    inputs.copy(request, {"enableExecuteCommand": "enableExecuteCommand",
                          "enableEcsManagedTags": "enableECSManagedTags",
                          "propagateTags": "propagateTags",
                          "healthCheckGracePeriodSeconds": "healthCheckGracePeriodSeconds",
                          "schedulingStrategy": "schedulingStrategy"}, whole_numbers)
    registry = inputs.get("serviceRegistries")  # one block in the provider, a list in the API
    if registry is not None:
        request["serviceRegistries"] = [_api_camel(registry)]
    if inputs.get("loadBalancers"):
        request["loadBalancers"] = [_api_camel(lb) for lb in inputs.get("loadBalancers")]
    # The provider polls DescribeServices until steady; AWS sees no such field.
    inputs.engine_side("waitForSteadyState", "forceDelete", "forceNewDeployment", "triggers")
    service = replay.client("ecs").create_service(**request)["service"]
    replay.map(resource.id, service["serviceArn"])
    return {"arn": service["serviceArn"], "name": service["serviceName"],
            "cluster": request["cluster"], "request": request}


# --- ECS task events: SQS and EventBridge -------------------------------------------------------

# Pulumi input -> SQS attribute. SQS takes every attribute as a string.
SQS_ATTRIBUTES = {
    "delaySeconds": "DelaySeconds",
    "maxMessageSize": "MaximumMessageSize",
    "messageRetentionSeconds": "MessageRetentionPeriod",
    "receiveWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "visibilityTimeoutSeconds": "VisibilityTimeout",
    "kmsDataKeyReusePeriodSeconds": "KmsDataKeyReusePeriodSeconds",
    "kmsMasterKeyId": "KmsMasterKeyId",
    "sqsManagedSseEnabled": "SqsManagedSseEnabled",
    "fifoQueue": "FifoQueue",
    "contentBasedDeduplication": "ContentBasedDeduplication",
    "redrivePolicy": "RedrivePolicy",
    "redriveAllowPolicy": "RedriveAllowPolicy",
    "policy": "Policy",
}
# The ranges the SQS API reference (CreateQueue) gives; moto checks only MaximumMessageSize.
SQS_RANGES = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 262144),
    "MessageRetentionPeriod": (60, 1209600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43200),
    "KmsDataKeyReusePeriodSeconds": (60, 86400),
}


def _sqs_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_policy_grammar(resource: Declared, document: str) -> None:
    """AWS validates a resource policy's grammar on write; moto's SQS only parses the JSON, so
    moto's IAM policy validator (the one CreatePolicy uses) stands in."""
    from moto.iam.exceptions import MalformedPolicyDocument
    from moto.iam.policy_validation import IAMPolicyDocumentValidator

    try:
        IAMPolicyDocumentValidator(document).validate()
    except MalformedPolicyDocument as error:
        raise ReplayError(resource, f"MalformedPolicyDocument: {error.message}") from error


def sqs_queue(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    attributes = {}
    for key, attribute in SQS_ATTRIBUTES.items():
        value = inputs.get(key)
        if value is None:
            continue
        attributes[attribute] = _sqs_value(value)
        bounds = SQS_RANGES.get(attribute)
        if bounds and not bounds[0] <= float(value) <= bounds[1]:
            raise ReplayError(resource, f"{key} = {value!r} is outside {bounds[0]}..{bounds[1]}, "
                                        f"the range SQS accepts for {attribute}")
    if "Policy" in attributes:
        _check_policy_grammar(resource, attributes["Policy"])
    sqs = replay.client("sqs")
    url = sqs.create_queue(QueueName=_physical_name(resource, inputs), Attributes=attributes,
                           tags=inputs.get("tags") or {})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    replay.map(resource.id, url)
    replay.map(resource.outputs.get("url"), url)
    replay.map(resource.outputs.get("arn"), arn)
    return {"url": url, "arn": arn}


def sqs_queue_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    document = inputs.require("policy")
    _check_policy_grammar(resource, document)
    replay.client("sqs").set_queue_attributes(
        QueueUrl=inputs.require("queueUrl"), Attributes={"Policy": document})
    return {}


def event_rule(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """PutRule: moto parses the event pattern as EventBridge does (JSON; every leaf a non-empty
    list or an object)."""
    request: dict[str, Any] = {"Name": _physical_name(resource, inputs),
                               "Tags": aws_tags(inputs.get("tags"))}
    inputs.copy(request, pascal("eventPattern", "scheduleExpression", "description", "state",
                                "roleArn", "eventBusName"))
    arn = replay.client("events").put_rule(**request)["RuleArn"]
    replay.map(resource.id, request["Name"])
    replay.map(resource.outputs.get("arn"), arn)
    return {"name": request["Name"], "arn": arn}


# What an input template may name besides its own input paths (EventBridge's predefined variables).
EVENTBRIDGE_VARIABLES = {"aws.events.rule-arn", "aws.events.rule-name", "aws.events.event",
                         "aws.events.event.json", "aws.events.event.ingestion-time"}


def _input_transformer(resource: Declared, transformer: dict[str, Any]) -> dict[str, Any]:
    """PutTargets refuses a template placeholder that no input path defines, and a path that is
    not JSON path; moto checks neither."""
    paths = transformer.get("inputPaths") or {}
    template = transformer["inputTemplate"]
    undefined = sorted(set(re.findall(r"<([^<>\s]+)>", template)) - set(paths)
                       - EVENTBRIDGE_VARIABLES)
    if undefined:
        raise ReplayError(resource, f"ValidationException: the input template names {undefined}, "
                                    f"which no input path defines")
    not_paths = sorted(k for k, path in paths.items() if not str(path).startswith("$"))
    if not_paths:
        raise ReplayError(resource, f"ValidationException: input paths {not_paths} are not JSON "
                                    f"paths")
    return {"InputPathsMap": paths, "InputTemplate": template}


def event_target(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    # Without a declared targetId the provider generates one; the logical name stands in.
    target = {"Id": inputs.get("targetId") or resource.name, "Arn": inputs.require("arn")}
    inputs.copy(target, pascal("roleArn", "input", "inputPath"))
    transformer = inputs.get("inputTransformer")
    if transformer is not None:
        target["InputTransformer"] = _input_transformer(resource, transformer)
    request: dict[str, Any] = {"Rule": inputs.require("rule"), "Targets": [target]}
    if inputs.get("eventBusName"):
        request["EventBusName"] = inputs.get("eventBusName")
    response = replay.client("events").put_targets(**request)
    if response.get("FailedEntryCount"):
        raise ReplayError(resource, f"PutTargets refused: {response['FailedEntries']}")
    return {"rule": request["Rule"], "id": target["Id"], "arn": target["Arn"]}


# --- alarms: KMS key, SNS topic, CloudWatch alarms ----------------------------------------------

def _allows_account_to_manage_key(document: dict[str, Any], account: str) -> bool:
    """CreateKey's lockout safety check, with the account as the caller: some statement lets the
    account's principals change the key policy later."""
    root = {f"arn:aws:iam::{account}:root", account}
    for statement in document.get("Statement", []):
        principals = (statement.get("Principal") or {})
        principals = principals.get("AWS", []) if isinstance(principals, dict) else principals
        principals = [principals] if isinstance(principals, str) else principals
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if (statement.get("Effect") == "Allow" and (root & set(principals) or "*" in principals)
                and {"kms:*", "kms:PutKeyPolicy", "*"} & set(actions)):
            return True
    return False


def kms_key(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    kms = replay.client("kms")
    request: dict[str, Any] = {"Tags": aws_tags(inputs.get("tags"), "TagKey", "TagValue")}
    inputs.copy(request, {**pascal("description", "keyUsage", "multiRegion",
                                   "bypassPolicyLockoutSafetyCheck"),
                          "customerMasterKeySpec": "KeySpec"})
    document = inputs.get("policy")
    if document is not None:
        _check_policy_grammar(resource, document)
        # moto stores any key policy; AWS refuses one that would lock the caller out of the key.
        if not request.get("BypassPolicyLockoutSafetyCheck") and not _allows_account_to_manage_key(
                json.loads(document), replay.account()):
            raise ReplayError(resource, "MalformedPolicyDocumentException: the key policy would "
                                        "not let the account change it later (CreateKey's lockout "
                                        "safety check)")
        request["Policy"] = document
    # AWS accepts 7..30 days at ScheduleKeyDeletion, which the provider calls on delete.
    window = inputs.integer("deletionWindowInDays")
    if window is not None and not 7 <= window <= 30:
        raise ReplayError(resource, f"deletionWindowInDays = {window} is outside 7..30")
    metadata = kms.create_key(**request)["KeyMetadata"]
    if inputs.get("enableKeyRotation"):
        period = inputs.integer("rotationPeriodInDays")
        kms.enable_key_rotation(KeyId=metadata["KeyId"],
                                **({"RotationPeriodInDays": period} if period else {}))
    else:
        inputs.engine_side("rotationPeriodInDays")
    if inputs.get("isEnabled", True) is False:
        kms.disable_key(KeyId=metadata["KeyId"])
    replay.map(resource.id, metadata["KeyId"])
    replay.map(resource.outputs.get("keyId"), metadata["KeyId"])
    replay.map(resource.outputs.get("arn"), metadata["Arn"])
    return {"key_id": metadata["KeyId"], "arn": metadata["Arn"]}


def kms_alias(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    name = inputs.require("name")
    replay.client("kms").create_alias(AliasName=name, TargetKeyId=inputs.require("targetKeyId"))
    return {"name": name}


# Pulumi input -> SNS topic attribute; SNS takes every attribute as a string.
SNS_TOPIC_ATTRIBUTES = pascal("kmsMasterKeyId", "displayName", "policy", "deliveryPolicy",
                              "fifoTopic", "contentBasedDeduplication", "signatureVersion",
                              "tracingConfig")


def sns_topic(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    attributes = inputs.copy({}, SNS_TOPIC_ATTRIBUTES, _sqs_value)
    if "Policy" in attributes:
        _check_policy_grammar(resource, attributes["Policy"])
    arn = replay.client("sns").create_topic(
        Name=_physical_name(resource, inputs), Attributes=attributes,
        Tags=aws_tags(inputs.get("tags")))["TopicArn"]
    replay.map(resource.outputs.get("arn"), arn)
    return {"arn": arn}


def sns_topic_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """SetTopicAttributes(Policy): AWS checks the grammar; moto stores any string."""
    document = inputs.require("policy")
    _check_policy_grammar(resource, document)
    replay.client("sns").set_topic_attributes(
        TopicArn=inputs.require("arn"), AttributeName="Policy", AttributeValue=document)
    return {}


SNS_PROTOCOLS = ("http", "https", "email", "email-json", "sms", "sqs", "application", "lambda",
                 "firehose")


def sns_topic_subscription(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    protocol = inputs.require("protocol")
    if protocol not in SNS_PROTOCOLS:
        raise ReplayError(resource, f"InvalidParameter: protocol {protocol!r} is not one of "
                                    f"{', '.join(SNS_PROTOCOLS)}")
    attributes = inputs.copy({}, pascal("rawMessageDelivery", "filterPolicy", "filterPolicyScope",
                                        "redrivePolicy", "deliveryPolicy"), _sqs_value)
    # Provider-side: how long to wait for a confirmation, and whether the endpoint confirms itself.
    inputs.engine_side("confirmationTimeoutInMinutes", "endpointAutoConfirms")
    arn = replay.client("sns").subscribe(
        TopicArn=inputs.require("topic"), Protocol=protocol, Endpoint=inputs.require("endpoint"),
        Attributes=attributes, ReturnSubscriptionArn=True)["SubscriptionArn"]
    return {"arn": arn}


def _dimensions(dimensions: Optional[dict[str, str]]) -> list[dict[str, str]]:
    return [{"Name": k, "Value": v} for k, v in (dimensions or {}).items()]


def _check_alarm_period(resource: Declared, period: Optional[int]) -> None:
    if period is not None and period not in (10, 20, 30) and period % 60:
        raise ReplayError(resource, f"period {period} is not 10, 20, 30 or a multiple of 60, "
                                    f"the periods PutMetricAlarm accepts")


def _metric_queries(resource: Declared, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metric math as PutMetricAlarm takes it, with the checks AWS makes and moto does not:
    exactly one query returns data, and an expression reads only ids the alarm defines."""
    ids = [q.get("id") for q in queries]
    returning = [q.get("id") for q in queries if q.get("returnData")]
    if len(returning) != 1:
        raise ReplayError(resource, f"ValidationError: exactly one metric query must return data, "
                                    f"{len(returning)} do ({returning})")
    metrics = []
    for query in queries:
        metric: dict[str, Any] = {"Id": query["id"], "ReturnData": bool(query.get("returnData"))}
        for key, api_key in (("label", "Label"), ("accountId", "AccountId")):
            if query.get(key) is not None:
                metric[api_key] = query[key]
        if query.get("period") is not None:
            metric["Period"] = int(query["period"])
        if query.get("expression") is not None:
            unknown = sorted(set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", query["expression"]))
                             - set(ids))
            if unknown:
                raise ReplayError(resource, f"ValidationError: expression "
                                            f"{query['expression']!r} reads {unknown}, which no "
                                            f"metric query of this alarm defines")
            metric["Expression"] = query["expression"]
        stat = query.get("metric")
        if stat is not None:
            _check_alarm_period(resource, int(stat["period"]))
            metric["MetricStat"] = {
                "Metric": {"Namespace": stat.get("namespace"), "MetricName": stat["metricName"],
                           "Dimensions": _dimensions(stat.get("dimensions"))},
                "Period": int(stat["period"]), "Stat": stat["stat"],
                **({"Unit": stat["unit"]} if stat.get("unit") else {}),
            }
        metrics.append(metric)
    return metrics


SINGLE_METRIC_INPUTS = ("namespace", "metricName", "dimensions", "statistic", "extendedStatistic",
                        "period", "unit")


def metric_alarm(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    evaluation_periods = inputs.integer("evaluationPeriods")
    datapoints = inputs.integer("datapointsToAlarm")
    request: dict[str, Any] = {
        "AlarmName": _physical_name(resource, inputs),
        "EvaluationPeriods": evaluation_periods,
        "ComparisonOperator": inputs.require("comparisonOperator"),
        "Tags": aws_tags(inputs.get("tags")),
    }
    inputs.copy(request, {**pascal("alarmDescription", "actionsEnabled", "alarmActions",
                                   "insufficientDataActions", "threshold", "thresholdMetricId",
                                   "treatMissingData"),
                          "okActions": "OKActions",
                          "evaluateLowSampleCountPercentiles": "EvaluateLowSampleCountPercentile"})
    if datapoints is not None:
        if evaluation_periods is not None and datapoints > evaluation_periods:
            raise ReplayError(resource, f"datapointsToAlarm {datapoints} exceeds "
                                        f"evaluationPeriods {evaluation_periods}")
        request["DatapointsToAlarm"] = datapoints
    queries = inputs.get("metricQueries")
    single = [key for key in SINGLE_METRIC_INPUTS if inputs.get(key) is not None]
    if queries and single:
        raise ReplayError(resource, f"InvalidParameterCombination: metricQueries with {single}; "
                                    f"an alarm reads one metric or a metric math expression")
    if queries:
        request["Metrics"] = _metric_queries(resource, queries)
    else:
        period = inputs.integer("period")
        _check_alarm_period(resource, period)
        inputs.copy(request, pascal("namespace", "metricName", "statistic", "extendedStatistic",
                                    "unit"))
        request.update(Dimensions=_dimensions(inputs.get("dimensions")), Period=period)
    if "Threshold" not in request and "ThresholdMetricId" not in request:
        raise ReplayError(resource, "declares neither threshold nor thresholdMetricId")
    replay.client("cloudwatch").put_metric_alarm(
        **{k: v for k, v in request.items() if v is not None})
    return {"name": request["AlarmName"]}


# --- Application Auto Scaling -----------------------------------------------------------------

def _api_fields(value: Any) -> Any:
    """A nested Pulumi input as the API's structure: camelCase keys to PascalCase, and whole
    numbers (the engine's floats) to integers; botocore then checks every key and type."""
    if isinstance(value, dict):
        return {k[0].upper() + k[1:]: _api_fields(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_api_fields(v) for v in value]
    return whole_numbers(value)


def scaling_target(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    """RegisterScalableTarget: moto checks that the ECS service exists; AWS also refuses a minimum
    above the maximum."""
    low, high = inputs.integer("minCapacity"), inputs.integer("maxCapacity")
    if low is not None and high is not None and low > high:
        raise ReplayError(resource, f"ValidationException: minCapacity {low} is above "
                                    f"maxCapacity {high}")
    request: dict[str, Any] = {
        "ServiceNamespace": inputs.require("serviceNamespace"),
        "ResourceId": inputs.require("resourceId"),
        "ScalableDimension": inputs.require("scalableDimension"),
        "MinCapacity": low, "MaxCapacity": high,
        "RoleARN": inputs.get("roleArn"),
        "SuspendedState": _api_fields(inputs.get("suspendedState")),
        "Tags": inputs.get("tags"),
    }
    arn = replay.client("application-autoscaling").register_scalable_target(
        **{k: v for k, v in request.items() if v is not None})["ScalableTargetARN"]
    return {"arn": arn, "resource_id": request["ResourceId"]}


def scaling_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    scaling = replay.client("application-autoscaling")
    target = {"ServiceNamespace": inputs.require("serviceNamespace"),
              "ResourceId": inputs.require("resourceId"),
              "ScalableDimension": inputs.require("scalableDimension")}
    # AWS refuses a policy for a target nobody registered; moto stores it.
    registered = scaling.describe_scalable_targets(
        ServiceNamespace=target["ServiceNamespace"], ResourceIds=[target["ResourceId"]],
        ScalableDimension=target["ScalableDimension"])["ScalableTargets"]
    if not registered:
        raise ReplayError(resource, f"ObjectNotFoundException: no scalable target registered "
                                    f"for {target['ResourceId']} {target['ScalableDimension']}")
    request = {**target, "PolicyName": _physical_name(resource, inputs),
               "PolicyType": inputs.get("policyType") or "StepScaling"}
    inputs.copy(request, pascal("targetTrackingScalingPolicyConfiguration",
                                "stepScalingPolicyConfiguration",
                                "predictiveScalingPolicyConfiguration"), _api_fields)
    arn = scaling.put_scaling_policy(**request)["PolicyARN"]
    return {"arn": arn, "name": request["PolicyName"]}


# --- the Prefect work pool (dynamic provider) ---------------------------------------------------

POOL_NOT_CREATED = (
    "not an AWS resource, and this replay has no Prefect server: its inputs passed the "
    "provider's check(); tests/test_work_pool_provider.py runs its CRUD on a real server, and "
    "rung 3 (tests/test_worker_on_prefect.py) replays it into one and runs the worker on it")


def work_pool(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    props = {key: inputs.get(key) for key in (
        "api_url", "name", "type", "description", "base_job_template", "concurrency_limit")}
    # `__provider` is the serialized provider (tests/test_work_pool.py checks it holds no
    # credential); `pool_id` is an output the provider fills in.
    inputs.engine_side("__provider", "pool_id")
    provider = WorkPoolProvider()
    failures = provider.check({}, props).failures
    if failures:
        raise ReplayError(resource, "check failed: " + "; ".join(
            f"{f.property}: expected {f.reason}" for f in failures))
    if replay.prefect_api_url is None:
        replay.not_created[(resource.type, resource.name)] = POOL_NOT_CREATED
        return {"created": False}
    # The test's server stands in for the declared one (the stack's Prefect Cloud workspace).
    created = provider.create({**props, "api_url": replay.prefect_api_url})
    return {"created": True, "id": created.id, "outs": created.outs,
            "declared_api_url": props["api_url"]}


HANDLERS: dict[str, Handler] = {
    "awsx:ec2:Vpc": awsx_vpc,
    "aws:ec2/securityGroup:SecurityGroup": security_group,
    "aws:iam/role:Role": iam_role,
    "aws:iam/rolePolicy:RolePolicy": iam_role_policy,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": iam_role_policy_attachment,
    "aws:secretsmanager/secret:Secret": secret,
    "aws:secretsmanager/secretVersion:SecretVersion": secret_version,
    "aws:cloudwatch/logGroup:LogGroup": log_group,
    "aws:ecs/cluster:Cluster": ecs_cluster,
    "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders": ecs_cluster_capacity_providers,
    "aws:ecs/taskDefinition:TaskDefinition": ecs_task_definition,
    "aws:ecs/service:Service": ecs_service,
    "aws:sqs/queue:Queue": sqs_queue,
    "aws:sqs/queuePolicy:QueuePolicy": sqs_queue_policy,
    "aws:cloudwatch/eventRule:EventRule": event_rule,
    "aws:cloudwatch/eventTarget:EventTarget": event_target,
    "aws:kms/key:Key": kms_key,
    "aws:kms/alias:Alias": kms_alias,
    "aws:sns/topic:Topic": sns_topic,
    "aws:sns/topicPolicy:TopicPolicy": sns_topic_policy,
    "aws:sns/topicSubscription:TopicSubscription": sns_topic_subscription,
    "aws:cloudwatch/metricAlarm:MetricAlarm": metric_alarm,
    "aws:appautoscaling/target:Target": scaling_target,
    "aws:appautoscaling/policy:Policy": scaling_policy,
    WORK_POOL: work_pool,
}


def replay(evaluation: Evaluation, endpoint_url: str, prefect_api_url: Optional[str] = None) -> Replay:
    return Replay(endpoint_url, prefect_api_url=prefect_api_url).run(evaluation)


def real_exports(evaluation: Evaluation, replayed: Replay) -> dict[str, Any]:
    """The stack's exports as they would read after this deployment: mock ids replaced by moto's."""
    return replayed.real(evaluation.exports)


def start_service_tasks(replayed: Replay, service: dict[str, Any]) -> list[dict[str, Any]]:
    """Stand in for ECS's scheduler, which moto lacks: start the service's desired tasks with the
    service's own network configuration, grouped and tagged as ECS groups a service's tasks."""
    request = service["request"]
    return replayed.client("ecs").run_task(
        cluster=request["cluster"], taskDefinition=request["taskDefinition"],
        count=request["desiredCount"], group=f"service:{service['name']}",
        startedBy="ecs-svc/replay", networkConfiguration=request["networkConfiguration"],
        capacityProviderStrategy=request.get("capacityProviderStrategy", []),
    )["tasks"]

# Handlers of the self-hosted server's resources, each in its own module, registered on import.
from tests import (  # noqa: E402,F401
    replay_acm_route53, replay_elasticache, replay_elbv2, replay_rds, replay_servicediscovery,
    replay_sfn, replay_vpc,
)
