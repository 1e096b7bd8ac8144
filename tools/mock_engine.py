"""The mock engine: run the stack program under Pulumi mocks, with config loaded the way the CLI
loads it, and return what it declared. Used by the offline plan (`python -m tools.plan`), the cost
comparison (`python -m tools.cost`) and the tests.

`load_stack_config` merges `Pulumi.yaml`'s project defaults under a stack file's values (what the CLI
does before the program starts); `evaluate` runs `__main__.py` in-process against `RecordingMocks`
and returns every resource the program declared, its inputs as the engine would see them (camelCase,
numbers as floats), the invokes it made and its exports. The mocks answer with the ids and ARNs AWS
would compute, made up: this is a declaration, never a read of an account.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import gc
import json
import runpy
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import pulumi
import yaml

from components.config.reader import NAMESPACE as PROJECT
from components.config.credential import API_KEY, SECRET_VALUE_KEYS
from components.config.settings import Settings, load_settings
from components.prefect.api import whole_numbers  # noqa: F401  (the tools' and tests' name for it)
from tools.mock_structure import Structure, recording_structure

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
REGION = "us-east-1"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
# Placeholders for what a user sets with `pulumi config set` before the first `up`: a Prefect
# Cloud workspace URL and an API key of the right shape. Nothing ever calls them.
CLOUD_URL = (
    "https://api.prefect.cloud/api/accounts/0b1a4c3e-3d8c-4a1e-9f34-6f2b8c1d2e3f"
    "/workspaces/7e9d2f10-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
)
PLACEHOLDER_API_KEY = "pnu_test0000000000000000000000000000000000"
# Config keys whose values the CLI would hold as secrets (set with --secret).
SECRET_CONFIG_KEYS = tuple(f"{PROJECT}:{key}" for key in SECRET_VALUE_KEYS)
# What the mocked `aws.secretsmanager.getRandomPassword` answers (the generated auth string's
# password, the Redis token): tests look for it where it must never appear.
GENERATED_PASSWORD = "MockGeneratedPassword0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
# A Python dynamic resource registers under the SDK's provider package, not our own.
WORK_POOL = "pulumi-python:dynamic/prefect:WorkPool"


# The seed report's architecture as a stack file, priced and checked like the stacks.
SEED_STACK_FILE = ROOT / "examples" / "Pulumi.seed.yaml"


def stack_names() -> list[str]:
    """The stacks with a stack file at the root (`Pulumi.<stack>.yaml`): the one glob for them."""
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))


def stack_file(stack: str) -> Path:
    """A stack's file: `Pulumi.<stack>.yaml`, or the seed example for `seed`."""
    path = SEED_STACK_FILE if stack == "seed" else ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise SystemExit(f"no stack file {path.relative_to(ROOT)}; stacks: "
                         + ", ".join(stack_names()) + ", seed")
    return path


def _config_string(value: Any) -> str:
    """The CLI hands structured values to the program as JSON, scalars as their text."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# libyaml's parser where PyYAML was built with it: the same documents, ten times faster than the pure
# Python one, which costs more than the program itself when every test loads a stack's config.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=64)
def _parsed(path: Path, mtime_ns: int, size: int) -> Any:
    return yaml.load(path.read_text(), Loader=_YAML_LOADER)


def read_yaml(path: Path) -> Any:
    """A YAML file's document, parsed once per version of the file; each caller gets its own copy."""
    stat = path.stat()
    return copy.deepcopy(_parsed(path, stat.st_mtime_ns, stat.st_size))


def project_defaults(project_file: Path = ROOT / "Pulumi.yaml") -> dict[str, Any]:
    """Each key's default as Pulumi.yaml declares it (its one home), without the namespace."""
    project = read_yaml(project_file)
    return {key: spec["default"] for key, spec in project.get("config", {}).items()
            if isinstance(spec, dict) and "default" in spec}


def load_stack_config(stack: Optional[str] = None, project_file: Path = ROOT / "Pulumi.yaml",
                      stack_file: Optional[Path] = None) -> dict[str, str]:
    """Project defaults from Pulumi.yaml, then the stack file's values over them."""
    merged: dict[str, Any] = {
        f"{PROJECT}:{key}": default for key, default in project_defaults(project_file).items()}
    if stack is not None or stack_file is not None:
        path = stack_file or ROOT / f"Pulumi.{stack}.yaml"
        merged.update((read_yaml(path) or {}).get("config", {}))
    return {key: _config_string(value) for key, value in merged.items()}


def with_credentials(config: dict[str, str], **overrides: str) -> dict[str, str]:
    """What a user adds with `pulumi config set` before the first `up`: the URL and the key.
    A stack with its own server (`prefectServer` single or ha) needs neither."""
    merged = dict(config)
    if merged.get(f"{PROJECT}:prefectServer", "none") == "none":
        merged.setdefault(f"{PROJECT}:prefectApiUrl", CLOUD_URL)
        merged[f"{PROJECT}:{API_KEY}"] = PLACEHOLDER_API_KEY
    merged.update({f"{PROJECT}:{key}": value for key, value in overrides.items()})
    return merged


@dataclass
class Declared:
    type: str
    name: str
    inputs: dict[str, Any]
    # What the mock answered: the id and outputs later resources reference (replay maps them).
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    # Input property -> the URNs of the resources its value came from (what Pulumi orders by).
    dependencies: dict[str, list[str]] = field(default_factory=dict)
    urn: str = ""
    # The URNs it waits for, its properties' and `depends_on`'s together.
    depends_on: list[str] = field(default_factory=list)
    # The properties `pulumi up` leaves alone once the resource exists (ResourceOptions).
    ignore_changes: list[str] = field(default_factory=list)
    # Whether `pulumi destroy` leaves the cloud resource in place (ResourceOptions.retain_on_delete).
    retain_on_delete: bool = False


@dataclass
class Evaluation:
    resources: list[Declared]
    calls: list[str]
    exports: dict[str, Any] = field(default_factory=dict)
    secret_exports: set[str] = field(default_factory=set)
    # The resource tree as Python built it (tools/mock_structure.py).
    structure: Structure = field(default_factory=Structure)

    def of_type(self, type_: str) -> list[Declared]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: Optional[str] = None) -> Declared:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r.name for r in found]}"
        return found[0]


def _arn(service: str, resource: str, *, region: str = REGION) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


class RecordingMocks(pulumi.runtime.Mocks):
    """Records each declaration and answers with the outputs AWS would compute."""

    def __init__(self) -> None:
        self.resources: list[Declared] = []
        self.calls: list[str] = []
        self._count = 0

    def _id(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}-{self._count:017x}"

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        self._count += 1
        declared = Declared(args.typ, args.name, inputs)
        request = getattr(_REGISTERING, "request", None)
        if request is not None and (request.type, request.name) == (args.typ, args.name):
            declared.urn = _REGISTERING.urn
            declared.dependencies = {prop: sorted(deps.urns)
                                     for prop, deps in request.propertyDependencies.items()}
            declared.ignore_changes = list(request.ignoreChanges)
            declared.retain_on_delete = bool(request.retainOnDelete)
            declared.depends_on = sorted(request.dependencies)
        self.resources.append(declared)
        declared.id, declared.outputs = self._answer(args.typ, args.name, inputs)
        return declared.id, declared.outputs

    def _answer(self, typ: str, logical_name: str, inputs: dict[str, Any]) -> tuple[str, dict]:
        name = inputs.get("name") or f"{logical_name}-{self._count:07x}"
        outputs: dict[str, Any] = {"name": name}
        resource_id = name
        if typ == "awsx:ec2:Vpc":
            # awsx is remote: return only its outputs, never its inputs (their names collide).
            az_count = int(inputs.get("numberOfAvailabilityZones", 3))
            types = [spec["type"] for spec in inputs.get("subnetSpecs", [])]
            return self._id("vpc"), {
                "vpcId": self._id("vpc"),
                "publicSubnetIds": [self._id("subnet") for _ in range(az_count)]
                if "Public" in types else [],
                "privateSubnetIds": [self._id("subnet") for _ in range(az_count)]
                if "Private" in types else [],
                "isolatedSubnetIds": [self._id("subnet") for _ in range(az_count)]
                if "Isolated" in types else [],
            }
        if typ == "aws:iam/role:Role":
            outputs["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{name}"
        elif typ == "aws:secretsmanager/secret:Secret":
            outputs["arn"] = _arn("secretsmanager", f"secret:{name}-AbC123")
            resource_id = outputs["arn"]
        elif typ == "aws:ecs/cluster:Cluster":
            outputs["arn"] = _arn("ecs", f"cluster/{name}")
            resource_id = outputs["arn"]
        elif typ == "aws:ecs/taskDefinition:TaskDefinition":
            outputs["arn"] = _arn("ecs", f"task-definition/{inputs['family']}:1")
            outputs["revision"] = 1
        elif typ == "aws:ecs/service:Service":
            resource_id = _arn("ecs", f"service/{name}")
            outputs["arn"] = resource_id
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            outputs["arn"] = _arn("logs", f"log-group:{name}")
        elif typ == "aws:sqs/queue:Queue":
            outputs["arn"] = _arn("sqs", name)
            outputs["url"] = resource_id = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        elif typ == "aws:cloudwatch/eventRule:EventRule":
            outputs["arn"] = _arn("events", f"rule/{name}")
        elif typ == WORK_POOL:
            outputs["pool_id"] = resource_id = f"00000000-0000-4000-8000-{self._count:012x}"
        elif typ == "aws:ec2/securityGroup:SecurityGroup":
            resource_id = self._id("sg")
            outputs["arn"] = _arn("ec2", f"security-group/{resource_id}")
        elif typ == "aws:kms/key:Key":
            resource_id = self._id("key")
            outputs.update(keyId=resource_id, arn=_arn("kms", f"key/{resource_id}"))
        elif typ == "aws:sns/topic:Topic":
            outputs["arn"] = _arn("sns", name)
        else:
            resource_id = self._answer_server(typ, name, inputs, outputs) or resource_id
        return resource_id, {**inputs, **outputs}

    def _answer_server(self, typ: str, name: str, inputs: dict[str, Any],
                       outputs: dict[str, Any]) -> Optional[str]:
        """The self-hosted server's resource types (components/server*.py, database, redis)."""
        if typ == "aws:rds/instance:Instance":
            ident = inputs.get("identifier", name)
            outputs.update(
                identifier=ident, arn=_arn("rds", f"db:{ident}"),
                address=f"{ident}.c0ffee000000.{REGION}.rds.amazonaws.com",
                endpoint=f"{ident}.c0ffee000000.{REGION}.rds.amazonaws.com:5432",
                masterUserSecrets=[{
                    "secretArn": _arn("secretsmanager", f"secret:rds!db-{self._count:08x}-AbC123"),
                    "secretStatus": "active", "kmsKeyId": ""}])
            return ident
        if typ == "aws:elasticache/replicationGroup:ReplicationGroup":
            ident = inputs["replicationGroupId"]
            outputs.update(arn=_arn("elasticache", f"replicationgroup:{ident}"),
                           primaryEndpointAddress=f"master.{ident}.abc123.use1.cache.amazonaws.com")
            return ident
        if typ in ("aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"):
            kind = "loadbalancer/app" if typ.endswith("LoadBalancer") else "targetgroup"
            suffix = f"{kind}/{name}/{self._count:016x}"
            outputs.update(arn=_arn("elasticloadbalancing", suffix), arnSuffix=suffix,
                           dnsName=f"{name}-{self._count}.{REGION}.elb.amazonaws.com",
                           zoneId="Z35SXDOTRQ7X7K")
            return outputs["arn"]
        if typ == "aws:lb/listener:Listener":
            outputs["arn"] = _arn("elasticloadbalancing", f"listener/app/{self._count:016x}")
            return outputs["arn"]
        if typ == "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace":
            ident = f"ns-{self._count:016x}"
            outputs.update(arn=_arn("servicediscovery", f"namespace/{ident}"),
                           hostedZone=f"Z{self._count:012X}")
            return ident
        if typ == "aws:servicediscovery/service:Service":
            ident = f"srv-{self._count:016x}"
            outputs["arn"] = _arn("servicediscovery", f"service/{ident}")
            return ident
        if typ == "aws:acm/certificate:Certificate":
            outputs["arn"] = _arn("acm", f"certificate/{self._count:08x}-0000-4000-8000-"
                                  f"{self._count:012x}")
            domain = inputs.get("domainName", "example.com")
            outputs["domainValidationOptions"] = [{
                "domainName": domain, "resourceRecordName": f"_c0ffee.{domain}.",
                "resourceRecordType": "CNAME", "resourceRecordValue": "_c0ffee.acm-validations.aws."}]
            return outputs["arn"]
        if typ == "aws:acm/certificateValidation:CertificateValidation":
            outputs["certificateArn"] = inputs["certificateArn"]
        elif typ == "aws:route53/record:Record":
            outputs["fqdn"] = inputs.get("name", name).rstrip(".")
        elif typ == "aws:sfn/stateMachine:StateMachine":
            outputs["arn"] = _arn("states", f"stateMachine:{name}")
            return outputs["arn"]
        elif typ in ("aws:rds/subnetGroup:SubnetGroup", "aws:rds/parameterGroup:ParameterGroup"):
            outputs["arn"] = _arn("rds", f"{'subgrp' if 'subnet' in typ else 'pg'}:{name}")
        elif typ == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
            return f"sgr-{self._count:017x}"
        return None

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args.token)
        if args.token == "aws:index/getPartition:getPartition":
            return {"id": "aws", "partition": "aws", "dnsSuffix": "amazonaws.com",
                    "reverseDnsPrefix": "com.amazonaws"}
        if args.token == "aws:index/getRegion:getRegion":
            return {"id": REGION, "name": REGION, "region": REGION, "endpoint": "", "description": ""}
        if args.token == "aws:secretsmanager/getRandomPassword:getRandomPassword":
            length = int(args.args.get("passwordLength", 32))
            return {"id": "aws", "randomPassword": GENERATED_PASSWORD[:length]}
        if args.token == "aws:rds/getInstances:getInstances":
            # A stack about to be deployed: no database of its identifier exists yet.
            return {"id": REGION, "instanceIdentifiers": [], "instanceArns": []}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"id": ACCOUNT, "accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test",
                    "userId": "AIDATEST"}
        raise NotImplementedError(f"no mock for invoke {args.token}")


# The RegisterResource request the mock monitor is answering on this thread: `new_resource` reads
# the URN and the property dependencies from it, which MockResourceArgs does not carry.
_REGISTERING = threading.local()


def _record_registrations(monitor: Any) -> None:
    register = monitor.RegisterResource

    def recording(request: Any) -> Any:
        _REGISTERING.request = request
        _REGISTERING.urn = monitor.make_urn(request.parent, request.type, request.name)
        try:
            return register(request)
        finally:
            _REGISTERING.request = None

    monitor.RegisterResource = recording


def _thread_event_loop() -> asyncio.AbstractEventLoop:
    """The calling thread's event loop, made current if it has none or a closed one.

    `set_mocks` declares the stack's root resource, whose outputs are `asyncio.Future()`s bound to
    the current loop, before Pulumi ensures there is one. A fresh main thread gets a loop on first
    use, but `asyncio.run` ends by setting the loop to None, after which asyncio refuses to make
    one ("There is no current event loop in thread 'MainThread'"): any test that ran
    `asyncio.run` earlier in the same process (an xdist worker runs many files) broke every later
    evaluation there."""
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop


# The gen-0 collection threshold while the program runs under mocks. Each evaluation makes some
# 25,000 asyncio tasks, futures and callbacks, most of them in reference cycles that live until the
# evaluation ends; at Python's default (700) the collector runs hundreds of times an evaluation and
# rescans the same live objects each time. Measured on selfhosted-prod: 0.50-0.71 s an evaluation at
# the default, 0.27-0.31 s at this threshold, for 19 MB more peak memory.
_EVALUATION_GC_THRESHOLD = 50_000


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(_EVALUATION_GC_THRESHOLD, *saved[1:])
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def evaluate(config: dict[str, str], stack: str = "test",
             secret_keys: Iterable[str] = SECRET_CONFIG_KEYS,
             mocks: Optional[RecordingMocks] = None) -> Evaluation:
    """Run `__main__.py` under mocks with this config; return what it declared and exported.

    Pass `mocks` to inspect what was recorded when the program raises (a refused config)."""
    mocks = mocks if mocks is not None else RecordingMocks()
    _thread_event_loop()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False)
    _record_registrations(pulumi.runtime.settings.SETTINGS.monitor)
    pulumi.runtime.set_all_config(config, [k for k in secret_keys if k in config])
    captured: dict[str, Any] = {}
    secret_exports: set[str] = set()

    @pulumi.runtime.test
    def run():
        namespace = runpy.run_path(str(ROOT / "__main__.py"), run_name="__pulumi__")
        exports = namespace["stack"].exports()

        def keep(key: str, value: Any) -> None:
            captured[key] = value

        async def note_secret(key: str, output: pulumi.Output) -> None:
            if await output.is_secret():
                secret_exports.add(key)

        outputs = []
        for key, value in exports.items():
            output = pulumi.Output.from_input(value)
            outputs.append(output.apply(functools.partial(keep, key)))
            outputs.append(pulumi.Output.from_input(note_secret(key, output)))
        return pulumi.Output.all(*outputs)

    with _fewer_collections(), recording_structure() as structure:
        run()
    return Evaluation(mocks.resources, mocks.calls, captured, secret_exports, structure)


def evaluate_stack(stack: str, **overrides: str) -> Evaluation:
    """A stack file (`seed` for the example) evaluated with the credentials a user adds."""
    config = load_stack_config(stack_file=stack_file(stack))
    return evaluate(with_credentials(config, **overrides), stack=stack)


def read_settings(config: dict[str, str], stack: str = "test",
                  secret_keys: Iterable[str] = SECRET_CONFIG_KEYS) -> Settings:
    """The validated settings of this config, read as `__main__.py` reads them, without running the
    program: for what depends on the config alone (a `ConfigError` raises here as in preview)."""
    _thread_event_loop()
    pulumi.runtime.set_all_config(config, [k for k in secret_keys if k in config])
    return load_settings(pulumi.Config(PROJECT), PROJECT, stack)


def stack_settings(stack: str, **overrides: str) -> Settings:
    """A stack file's settings, with the credentials a user adds."""
    config = with_credentials(load_stack_config(stack_file=stack_file(stack)), **overrides)
    return read_settings(config, stack)


def is_secret_input(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"


def worker_container(evaluation: Evaluation) -> dict[str, Any]:
    """The worker task definition's `prefect-worker` container, parsed from `containerDefinitions`
    (with the stack's own server, the task also holds the pool bootstrap, and the stack declares
    the server's task definitions too)."""
    containers = json.loads(evaluation.one(
        "aws:ecs/taskDefinition:TaskDefinition", "worker-task").inputs["containerDefinitions"])
    (container,) = [c for c in containers if c["name"] == "prefect-worker"]
    return container
