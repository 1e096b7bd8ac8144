"""The stack's configuration, read once and validated before any resource is declared.

Every key lives in the `prefect-ecs-worker:` namespace and is declared, with its default, in
`Pulumi.yaml` and nowhere else: the CLI merges those defaults under the stack file before the program
starts, so a key the program reads always carries a value (an empty string, `[]` or `0` where
Pulumi.yaml says "unset"). `load_settings` turns a `pulumi.Config` into a frozen `Settings`; a bad value raises
`ConfigError`, a `pulumi.RunError`, so `pulumi preview` stops with the message and no stack trace.
The message names the key, shows the value (never a secret's) and says what is accepted.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional, get_args
from urllib.parse import urlparse

import pulumi

from components.flow_code_settings import FlowCodeSettings, parse_flow_code
from components.run_recovery_settings import RunRecoverySettings, parse_run_recovery
from components.hardening_settings import HardeningSettings, parse_hardening
from components.server_settings import (ServerSettings, check_restore_target, db_identifier,
                                        parse_server)
# The image-pinning rule is the policy pack's (stdlib only, so the program can import it).
from policies.worker_rules import image_is_pinned, image_tag

NAMESPACE = "prefect-ecs-worker"

# Each enumerated key's accepted values are its type's: `_Reader.choice` reads them with get_args.
NatGateways = Literal["none", "single", "per-az"]
CpuArchitecture = Literal["X86_64", "ARM64"]
CapacityProvider = Literal["FARGATE", "FARGATE_SPOT"]
ContainerInsights = Literal["enabled", "disabled"]
CredentialEnvName = Literal["PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"]

# The credential keys: a value set with --secret, or the ARN of an existing secret holding it.
API_KEY, AUTH_STRING = "prefectApiKey", "prefectApiAuthString"
SECRET_VALUE_KEYS = (API_KEY, AUTH_STRING)
CREDENTIAL_KEYS = (*SECRET_VALUE_KEYS, f"{API_KEY}SecretArn", f"{AUTH_STRING}SecretArn")

# Fargate's valid task sizes (Linux, platform 1.4.0): CPU units -> allowed memory in MiB.
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}

# The values CloudWatch Logs accepts for retentionInDays (0, "never expire", is refused on purpose).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)

# RFC 1918 ranges; a VPC for a private worker belongs in one of them.
PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(c) for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
MIN_AZS, MAX_AZS = 2, 6
MAX_WORKERS = 10
# Each AZ gets one /(prefix+4) block per subnet tier, so at most 16 subnets fit, and AWS's
# smallest subnet is a /28: the VPC prefix must be /16../24.
SUBNET_BITS = 4
MIN_VPC_PREFIX, MAX_VPC_PREFIX = 16, 24

PREFECT_CLOUD_HOST = "api.prefect.cloud"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CLOUD_PATH = re.compile(rf"^/api/accounts/{UUID}/workspaces/{UUID}/?$")
# Prefect refuses these characters in object names (prefect.types.BANNED_CHARACTERS).
PREFECT_BANNED_CHARACTERS = ("/", "%", "&", ">", "<")
# The complete ARN, with the six characters Secrets Manager appends to the name: IAM matches the
# execution role's Resource against it exactly, so a partial ARN would deny the read at task start.
SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$"
)
POLICY_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(aws|\d{12}):policy/[A-Za-z0-9/_+=,.@-]+$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8}([0-9a-f]{9})?$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")
# [registry[:port]/]repository[:tag][@sha256:digest]
IMAGE_NAME = re.compile(r"^([a-z0-9.-]+(:\d+)?/)?[a-z0-9]+([._/-][a-z0-9]+)*$")
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
IMAGE_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TAG_KEY = re.compile(r"^[\w.:/=+\-@ ]{1,128}$", re.UNICODE)
# Prefect caps a pool's concurrent runs with any whole number; 0 here means "no limit".
MAX_WORK_POOL_CONCURRENCY = 10_000


class ConfigError(pulumi.RunError):
    """A configuration value that the stack refuses; raised before any resource exists."""

    def __init__(self, key: str, value: Any, accepted: str, *, secret: bool = False):
        shown = "[secret]" if secret else json.dumps(value)
        self.key = f"{NAMESPACE}:{key}"
        super().__init__(f"{self.key} = {shown} is not valid: {accepted}")


@dataclass(frozen=True)
class PrefectCredential:
    """The one credential the worker sends to the Prefect API.

    `env_name` is the variable the container gets it as; exactly one of `value` (a secret Output that
    the stack stores in a new Secrets Manager secret) and `secret_arn` (an existing secret) is set.
    """

    env_name: CredentialEnvName
    value: Optional[pulumi.Output[str]] = None
    secret_arn: Optional[str] = None
    # The stack's own server: the secret's value is generated in AWS (components/secret.py).
    generate: bool = False


@dataclass(frozen=True)
class ExistingVpc:
    vpc_id: str
    private_subnet_ids: tuple[str, ...]
    public_subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    prefect_api_url: str
    credential: PrefectCredential
    work_pool_name: str
    work_queues: tuple[str, ...]
    worker_image: str
    worker_cpu: int
    worker_memory: int
    worker_count: int
    cpu_architecture: CpuArchitecture
    capacity_provider: CapacityProvider
    nat_gateways: NatGateways
    availability_zone_count: int
    vpc_cidr: str
    existing_vpc: Optional[ExistingVpc]
    log_retention_days: int
    flow_run_policy_arns: tuple[str, ...]
    tags: Mapping[str, str]
    work_pool_concurrency_limit: Optional[int]
    flow_run_cpu: int
    flow_run_memory: int
    flow_run_image: str
    manage_work_pool: bool
    operations: OperationsSettings
    hardening: HardeningSettings
    flow_code: FlowCodeSettings
    run_recovery: RunRecoverySettings
    server: ServerSettings

    @property
    def prefix(self) -> str:
        """A stack-unique prefix for physical names AWS requires to be unique."""
        return f"{self.project}-{self.stack}"

    @property
    def events_queue_name(self) -> str:
        """The SQS queue of the cluster's ECS task events; named up front so IAM can grant it."""
        return f"{self.prefix}-ecs-events"

    @property
    def api_port(self) -> int:
        parsed = urlparse(self.prefect_api_url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)


def load_settings(config: pulumi.Config, project: str, stack: str) -> Settings:
    """Read and validate every key; raise `ConfigError` on the first bad value."""
    reader = _Reader(config)
    server = parse_server(reader, availability_zone_count=reader.integer("availabilityZoneCount"),
                          adopted_vpc=reader.optional("vpcId") is not None,
                          region=pulumi.Config("aws").get("region"))
    if server.enabled:
        prefect_api_url = server_api_url(project, stack)
        credential = _server_credential(config, reader, server, prefect_api_url)
    else:
        prefect_api_url = _api_url(reader.required("prefectApiUrl"))
        credential = _credential(config, reader, prefect_api_url)
    cpu = reader.integer("workerCpu")
    memory = reader.integer("workerMemory")
    cpu_architecture: CpuArchitecture = reader.choice("cpuArchitecture", CpuArchitecture)
    capacity_provider: CapacityProvider = reader.choice("capacityProvider", CapacityProvider)
    nat_gateways: NatGateways = reader.choice("natGateways", NatGateways)
    _check_fargate_size(cpu, memory)
    if capacity_provider == "FARGATE_SPOT" and cpu_architecture == "ARM64":
        raise ConfigError(
            "capacityProvider", capacity_provider,
            "Fargate Spot runs X86_64 tasks only; use cpuArchitecture X86_64 or capacityProvider FARGATE",
        )
    worker_count = reader.integer("workerCount", minimum=1, maximum=MAX_WORKERS)
    availability_zone_count = reader.integer("availabilityZoneCount")
    if not MIN_AZS <= availability_zone_count <= MAX_AZS:
        raise ConfigError(
            "availabilityZoneCount", availability_zone_count,
            f"a whole number from {MIN_AZS} to {MAX_AZS} (a worker in one AZ dies with that AZ)",
        )
    vpc_cidr = reader.string("vpcCidr")
    _check_vpc_cidr(vpc_cidr, availability_zone_count,
                    tiers=(1 if nat_gateways == "none" else 2) + (1 if server.enabled else 0))
    flow_run_cpu = reader.integer("flowRunCpu")
    flow_run_memory = reader.integer("flowRunMemory")
    _check_fargate_size(flow_run_cpu, flow_run_memory, "flowRunCpu", "flowRunMemory")
    concurrency_limit = reader.integer("workPoolConcurrencyLimit", minimum=0,
                                       maximum=MAX_WORK_POOL_CONCURRENCY)
    # Last, once every value is known good: the one check that reads AWS (does the database exist?).
    check_restore_target(server, db_identifier(f"{project}-{stack}"))
    return Settings(
        project=project,
        stack=stack,
        prefect_api_url=prefect_api_url,
        credential=credential,
        work_pool_name=_work_pool_name(reader.required("workPoolName")),
        work_queues=_work_queues(reader.string_list("workQueues")),
        worker_image=_image(reader.string("workerImage"), "workerImage"),
        worker_cpu=cpu,
        worker_memory=memory,
        worker_count=worker_count,
        cpu_architecture=cpu_architecture,
        capacity_provider=capacity_provider,
        nat_gateways=nat_gateways,
        availability_zone_count=availability_zone_count,
        vpc_cidr=vpc_cidr,
        existing_vpc=_existing_vpc(reader, nat_gateways),
        log_retention_days=reader.choice_int("logRetentionDays", LOG_RETENTION_DAYS),
        flow_run_policy_arns=_policy_arns(reader.string_list("flowRunPolicyArns")),
        tags=_tags(reader.string_list("tags"), project, stack),
        work_pool_concurrency_limit=concurrency_limit or None,
        flow_run_cpu=flow_run_cpu,
        flow_run_memory=flow_run_memory,
        flow_run_image=_image(reader.string("flowRunImage"), "flowRunImage"),
        manage_work_pool=reader.boolean("manageWorkPool"),
        operations=_operations(reader, worker_count),
        hardening=parse_hardening(reader, LOG_RETENTION_DAYS),
        flow_code=parse_flow_code(reader, f"{project}-{stack}"),
        run_recovery=parse_run_recovery(reader),
        server=server,
    )


class _Reader:
    """Typed access to plain config values, each failure a `ConfigError` naming the key.

    A key's default is Pulumi.yaml's alone: the reader takes none. `optional` is for keys whose
    default is "" (unset); every other read needs the key present, as the CLI guarantees.
    """

    def __init__(self, config: pulumi.Config):
        self._config = config

    def optional(self, key: str) -> Optional[str]:
        """The value, or None where it is unset (empty, or absent)."""
        value = self._config.get(key)
        return None if value is None or value == "" else value

    def required(self, key: str) -> str:
        value = self.optional(key)
        if value is None:
            raise ConfigError(
                key, None, f"it is required: pulumi config set {key} <value>"
            )
        return value

    def string(self, key: str) -> str:
        """A key Pulumi.yaml gives a default: absent only when the program runs without the CLI."""
        value = self._config.get(key)
        if value is None:
            raise ConfigError(key, None, "a value; Pulumi.yaml declares its default, which the CLI "
                              "merges under the stack file")
        return value

    def integer(self, key: str, *, minimum: Optional[int] = None,
                maximum: Optional[int] = None) -> int:
        raw = self.string(key)
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(key, raw, "a whole number") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ConfigError(key, value, f"a whole number from {minimum} to {maximum}")
        return value

    def choice(self, key: str, accepted: Any) -> Any:
        """One of the values of the `Literal` type `accepted`."""
        values = get_args(accepted)
        value = self.string(key)
        if value not in values:
            raise ConfigError(key, value, "one of " + ", ".join(values))
        return value

    def boolean(self, key: str) -> bool:
        raw = self.string(key)
        if raw.lower() not in ("true", "false"):
            raise ConfigError(key, raw, "true or false")
        return raw.lower() == "true"

    def choice_int(self, key: str, accepted: tuple[int, ...]) -> int:
        value = self.integer(key)
        if value not in accepted:
            raise ConfigError(key, value, "one of " + ", ".join(map(str, accepted)))
        return value

    def _json(self, key: str, kind: type, description: str) -> Any:
        raw = self.optional(key)
        if raw is None:
            return kind()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(key, raw, description) from None
        if not isinstance(value, kind):
            raise ConfigError(key, value, description)
        return value

    def string_list(self, key: str) -> tuple[str, ...]:
        description = "a list of strings, e.g. pulumi config set --path '" + key + "[0]' value"
        value = self._json(key, list, description)
        if not all(isinstance(item, str) and item for item in value):
            raise ConfigError(key, value, description)
        return tuple(value)


def _api_url(url: str) -> str:
    parsed = urlparse(url)
    accepted = (
        "Prefect Cloud's https://api.prefect.cloud/api/accounts/<account uuid>/workspaces/"
        "<workspace uuid>, or a self-hosted server's http(s)://<host>[:port]/api"
    )
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query or parsed.fragment:
        raise ConfigError("prefectApiUrl", url, accepted)
    if parsed.hostname == PREFECT_CLOUD_HOST:
        if parsed.scheme != "https" or not CLOUD_PATH.match(parsed.path):
            raise ConfigError("prefectApiUrl", url, accepted)
    elif not parsed.path.rstrip("/").endswith("/api"):
        raise ConfigError("prefectApiUrl", url, accepted)
    return url.rstrip("/")


def _credential(config: pulumi.Config, reader: _Reader, api_url: str) -> PrefectCredential:
    """Exactly one of the four credential keys; Prefect Cloud takes an API key only."""
    present = [key for key in CREDENTIAL_KEYS if reader.optional(key) is not None]
    cloud = urlparse(api_url).hostname == PREFECT_CLOUD_HOST
    accepted = (
        "set exactly one of prefectApiKey (pulumi config set --secret prefectApiKey) or "
        "prefectApiKeySecretArn"
        + ("" if cloud else ", or for a self-hosted server prefectApiAuthString or "
           "prefectApiAuthStringSecretArn")
    )
    if len(present) != 1:
        raise ConfigError(" + ".join(present) or "prefectApiKey", None, accepted,
                          secret=bool(present))
    key = present[0]
    if cloud and key.startswith(AUTH_STRING):
        raise ConfigError(key, None, "Prefect Cloud authenticates with an API key: " + accepted,
                          secret=True)
    env_name: CredentialEnvName = (
        "PREFECT_API_KEY" if key.startswith(API_KEY) else "PREFECT_API_AUTH_STRING")
    if key in SECRET_VALUE_KEYS:
        # A value set without --secret sits in plain text in the stack file: refuse it.
        if not pulumi.runtime.is_config_secret(config.full_key(key)):
            raise ConfigError(key, None, f"a secret: pulumi config set --secret {key}", secret=True)
        return PrefectCredential(env_name=env_name, value=config.get_secret(key))
    arn = reader.required(key)
    if not SECRET_ARN.match(arn):
        raise ConfigError(key, arn, "the complete ARN of a Secrets Manager secret, "
                          "arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>")
    return PrefectCredential(env_name=env_name, secret_arn=arn)


# The stack's own server is reached inside the VPC through Cloud Map's private DNS
# (components/server.py): the name is known before any resource exists.
SERVER_PORT = 4200
SERVER_SERVICE_NAME = "server"


def server_namespace(project: str, stack: str) -> str:
    return f"{project}-{stack}.internal"


def server_api_url(project: str, stack: str) -> str:
    return f"http://{SERVER_SERVICE_NAME}.{server_namespace(project, stack)}:{SERVER_PORT}/api"


def _server_credential(config: pulumi.Config, reader: _Reader, server: ServerSettings,
                       api_url: str) -> PrefectCredential:
    """With the stack's own server: no external URL, no API key (a self-hosted server has none);
    the basic-auth string is generated, or adopted from a secret, or set with --secret."""
    if reader.optional("prefectApiUrl") is not None:
        raise ConfigError("prefectApiUrl", reader.optional("prefectApiUrl"),
                          f"unset with prefectServer {server.mode}: the worker uses the stack's "
                          "own server (pulumi config rm prefectApiUrl)")
    for key in ("prefectApiKey", "prefectApiKeySecretArn"):
        if reader.optional(key) is not None:
            raise ConfigError(key, None, f"unset with prefectServer {server.mode}: a self-hosted "
                              "server has no API keys; it uses a basic-auth string the stack "
                              "generates, or prefectApiAuthStringSecretArn", secret=True)
    if reader.optional("prefectApiAuthString") is None and reader.optional(
            "prefectApiAuthStringSecretArn") is None:
        return PrefectCredential(env_name="PREFECT_API_AUTH_STRING", generate=True)
    return _credential(config, reader, api_url)


def _work_pool_name(name: str) -> str:
    banned = [c for c in PREFECT_BANNED_CHARACTERS if c in name]
    if banned or name.strip() != name or len(name) > 255 or name.lower().startswith("prefect"):
        raise ConfigError(
            "workPoolName", name,
            "1-255 characters without / % & > < or surrounding spaces, not starting with "
            "'prefect' (Prefect reserves that prefix)",
        )
    return name


def _work_queues(queues: tuple[str, ...]) -> tuple[str, ...]:
    for queue in queues:
        if any(c in queue for c in PREFECT_BANNED_CHARACTERS) or queue.strip() != queue:
            raise ConfigError("workQueues", list(queues),
                              "queue names without / % & > < or surrounding spaces")
    if len(set(queues)) != len(queues):
        raise ConfigError("workQueues", list(queues), "a list without duplicates")
    return queues


def _image(image: str, key: str) -> str:
    """Pinned means a digest, or a tag that does not say latest: those (latest, 3-latest, ...) move
    under a running service."""
    accepted = ("an image pinned by tag or digest, e.g. <repository>:<version> or "
                "<repository>@sha256:<digest>, not a tag containing 'latest'")
    repository, tag, digest = image_tag(image)
    well_formed = (
        IMAGE_NAME.match(repository)
        and (tag is None or IMAGE_TAG.match(tag))
        and (not digest or IMAGE_DIGEST.match(digest))
    )
    if not well_formed or not image_is_pinned(image):
        raise ConfigError(key, image, accepted)
    return image


def _check_fargate_size(cpu: int, memory: int, cpu_key: str = "workerCpu",
                        memory_key: str = "workerMemory") -> None:
    if cpu not in FARGATE_SIZES:
        raise ConfigError(cpu_key, cpu, "one of Fargate's CPU sizes: "
                          + ", ".join(map(str, FARGATE_SIZES)))
    allowed = FARGATE_SIZES[cpu]
    if memory not in allowed:
        raise ConfigError(
            memory_key, memory,
            f"with {cpu_key} {cpu}, Fargate accepts {allowed[0]}..{allowed[-1]} MiB in steps of "
            f"{allowed[1] - allowed[0]}: " + ", ".join(map(str, allowed)),
        )


def _is_private(network: ipaddress.IPv4Network) -> bool:
    return any(network.subnet_of(r) for r in PRIVATE_RANGES)


def _check_vpc_cidr(cidr: str, az_count: int, tiers: int) -> None:
    try:
        network = ipaddress.ip_network(cidr)
    except ValueError:
        network = None
    if not isinstance(network, ipaddress.IPv4Network) or not _is_private(network):
        raise ConfigError("vpcCidr", cidr, "an IPv4 network inside 10.0.0.0/8, 172.16.0.0/12 or "
                          "192.168.0.0/16, written with its network address, e.g. 10.0.0.0/16")
    if not MIN_VPC_PREFIX <= network.prefixlen <= MAX_VPC_PREFIX:
        raise ConfigError("vpcCidr", cidr, f"a prefix from /{MIN_VPC_PREFIX} to /{MAX_VPC_PREFIX}")
    # awsx (Auto) gives each AZ a 1/2^ceil(log2(AZs)) slice of the VPC and packs the tiers in it.
    az_slices = 1 << (az_count - 1).bit_length()
    if az_slices * tiers > 2 ** SUBNET_BITS:
        raise ConfigError(
            "availabilityZoneCount", az_count,
            f"fewer AZs: {tiers} subnet tier(s) of 1/{2 ** SUBNET_BITS} of {cidr} each do not fit "
            f"in 1/{az_slices} of it per AZ",
        )


def subnet_mask(vpc_cidr: str) -> int:
    """Each subnet is a 1/16th slice of the VPC."""
    return ipaddress.ip_network(vpc_cidr).prefixlen + SUBNET_BITS


def _existing_vpc(reader: _Reader, nat_gateways: str) -> Optional[ExistingVpc]:
    vpc_id = reader.optional("vpcId")
    private = reader.string_list("privateSubnetIds")
    public = reader.string_list("publicSubnetIds")
    if vpc_id is None:
        for key, ids in (("privateSubnetIds", private), ("publicSubnetIds", public)):
            if ids:
                raise ConfigError(key, list(ids), "only together with vpcId (adopting a VPC)")
        return None
    if not VPC_ID.match(vpc_id):
        raise ConfigError("vpcId", vpc_id, "a VPC id, vpc- and 8 or 17 hex digits")
    for key, ids in (("privateSubnetIds", private), ("publicSubnetIds", public)):
        bad = [i for i in ids if not SUBNET_ID.match(i)]
        if bad:
            raise ConfigError(key, list(ids), "subnet ids, subnet- and 8 or 17 hex digits")
    worker_key, worker_ids = (
        ("publicSubnetIds", public) if nat_gateways == "none" else ("privateSubnetIds", private)
    )
    if len(set(worker_ids)) < MIN_AZS:
        raise ConfigError(
            worker_key, list(worker_ids),
            f"with natGateways {nat_gateways} the worker runs in these subnets: give at least "
            f"{MIN_AZS}, in different AZs",
        )
    return ExistingVpc(vpc_id, private, public)


def _policy_arns(arns: tuple[str, ...]) -> tuple[str, ...]:
    bad = [a for a in arns if not POLICY_ARN.match(a)]
    if bad:
        raise ConfigError("flowRunPolicyArns", list(arns),
                          "IAM policy ARNs, arn:aws:iam::<account or aws>:policy/<name>")
    if "arn:aws:iam::aws:policy/AdministratorAccess" in arns:
        raise ConfigError("flowRunPolicyArns", list(arns),
                          "policies narrower than AdministratorAccess: flow code runs with them")
    return arns


def _tags(entries: tuple[str, ...], project: str, stack: str) -> dict[str, str]:
    accepted = ("Key=Value entries, keys of 1-128 characters not starting with 'aws:', values up "
                "to 256 characters, each key once")
    tags: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if (not sep or key in tags or key.lower().startswith("aws:") or not TAG_KEY.match(key)
                or len(value) > 256):
            raise ConfigError("tags", list(entries), accepted)
        tags[key] = value
    return {"project": project, "stack": stack, "managed-by": "pulumi", **tags}


# --- Operations: scaling, alarms, Container Insights -------------------------------------------

EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


@dataclass(frozen=True)
class OperationsSettings:
    """How the worker service scales and what wakes someone up.

    Autoscaling is on when `worker_max_count` exceeds `worker_min_count`; the service then starts
    at `workerCount` and Application Auto Scaling owns its desired count.
    """

    worker_min_count: int
    worker_max_count: int
    scaling_cpu_target_percent: int
    scaling_memory_target_percent: int
    container_insights: bool
    alarm_email: Optional[str]
    alarm_cpu_high_percent: int
    alarm_memory_high_percent: int
    alarm_evaluation_minutes: int

    @property
    def autoscaling(self) -> bool:
        return self.worker_max_count > self.worker_min_count


def _operations(reader: _Reader, worker_count: int) -> OperationsSettings:
    # 0 is Pulumi.yaml's "unset" (an integer key needs a default): follow workerCount.
    minimum = reader.integer("workerMinCount", minimum=0, maximum=MAX_WORKERS) or worker_count
    maximum = reader.integer("workerMaxCount", minimum=0, maximum=MAX_WORKERS) or minimum
    if maximum < minimum:
        raise ConfigError("workerMaxCount", maximum,
                          f"a whole number from workerMinCount ({minimum}) to {MAX_WORKERS}")
    if not minimum <= worker_count <= maximum:
        raise ConfigError("workerCount", worker_count,
                          f"a whole number from workerMinCount ({minimum}) to workerMaxCount "
                          f"({maximum}): the service starts there before scaling takes over")
    email = reader.optional("alarmEmail")
    if email is not None and (len(email) > 254 or not EMAIL.match(email)):
        raise ConfigError("alarmEmail", email, "an email address, e.g. oncall@example.com, or "
                          "unset for no subscription")
    return OperationsSettings(
        worker_min_count=minimum,
        worker_max_count=maximum,
        # Above 90% a task has no headroom left before the next scale-out lands; below 10% the
        # service would scale on noise.
        scaling_cpu_target_percent=reader.integer("scalingCpuTargetPercent", minimum=10,
                                                  maximum=90),
        scaling_memory_target_percent=reader.integer("scalingMemoryTargetPercent",
                                                     minimum=10, maximum=90),
        # The config says enabled/disabled (the ECS setting's words); the stack needs a yes or no.
        container_insights=reader.choice("containerInsights", ContainerInsights) == "enabled",
        alarm_email=email,
        alarm_cpu_high_percent=reader.integer("alarmCpuHighPercent", minimum=1, maximum=100),
        alarm_memory_high_percent=reader.integer("alarmMemoryHighPercent", minimum=1,
                                                 maximum=100),
        alarm_evaluation_minutes=reader.integer("alarmEvaluationMinutes", minimum=1,
                                                maximum=60),
    )
