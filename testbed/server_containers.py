"""Run a container the stack declares as a local process, started the way ECS starts it.

ECS starts a container with its task definition's `entryPoint` + `command`, the declared
`environment`, and each of `secrets` read from Secrets Manager (or SSM) at task start by its
`valueFrom`. `container_launch` does the same from an `Evaluation` replayed into moto: the secrets
come from moto's Secrets Manager, resolved as ECS resolves them, JSON key and version included
(`resolve_value_from`). Then only what cannot be the same here changes, each change named by the
caller and refused if the declared container has no such setting:

- the network endpoints (`endpoints`: an env name to a value, or to a function of the declared
  value such as `relocate_url`): RDS, Redis and the server URL become the loopback servers;
- the listening address: `--host 0.0.0.0` becomes 127.0.0.1 and the port a free one, since the
  task's own network namespace is this machine's loopback here;
- PREFECT_HOME and HOME are an empty directory, as a fresh container's are, and PATH finds the
  `prefect` the image would have; the database CA file (on the task's /tmp volume) is written
  there too;
- the `ha` install step (requirements-server-ha.txt) is left out, the test venv holding exactly
  those versions, unless the caller keeps it (`keep_install`) to test the install itself.

The database's CA is the one seam for TLS: a test passes its own CA's PEM text as the endpoint
`DATABASE_CA_BUNDLE`, in place of the RDS root CAs the stack declares.

Nothing else of the process's environment leaks in (no `os.environ`), so a setting the stack
forgets is missing here too: that is what lets a test see the server fall back to SQLite.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable, Optional, Union

from testbed.databases import Postgres
from testbed.replay import Replay
from testbed.servers import BIN, _default_sigint, free_port, spawn, stop
from tools.mock_engine import (
    PROJECT, Declared, Evaluation, evaluate, load_stack_config, read_yaml, stack_file, stack_names,
    with_credentials,
)

# arn:aws:secretsmanager:region:account:secret:name-AbCdEf[:json-key:version-stage:version-id]
# (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/secrets-envvar-secrets-manager.html)
SECRETS_MANAGER_VALUE_FROM = re.compile(
    r"^(?P<arn>arn:aws[a-z-]*:secretsmanager:[^:]+:\d{12}:secret:[^:]+)"
    r"(?::(?P<key>[^:]*):(?P<stage>[^:]*):(?P<version>[^:]*))?$")
SSM_VALUE_FROM = re.compile(r"^(?:arn:aws[a-z-]*:ssm:[^:]+:\d{12}:parameter)?(?P<name>/?[^:]+)$")
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
LISTEN_HOST = re.compile(r"(--host[= ])(\S+)")
LISTEN_PORT = re.compile(r"(--port[= ])(\d+)")

Endpoint = Union[str, Callable[[str], str]]


class SecretResolutionError(AssertionError):
    """What ECS reports as ResourceInitializationError: the task never starts."""


def resolve_value_from(replayed: Replay, value_from: str) -> str:
    """A `secrets` entry's value as ECS injects it: the whole secret string, or with a JSON key the
    key's value (a string as is, anything else as JSON); a missing key fails the task start."""
    match = SECRETS_MANAGER_VALUE_FROM.match(value_from)
    if match is None:
        parameter = SSM_VALUE_FROM.match(value_from)
        if parameter is None or value_from.startswith("arn:aws:secretsmanager"):
            raise SecretResolutionError(f"valueFrom {value_from!r} is neither a Secrets Manager "
                                        f"ARN nor an SSM parameter")
        return replayed.client("ssm").get_parameter(
            Name=parameter.group("name"), WithDecryption=True)["Parameter"]["Value"]
    request: dict[str, str] = {"SecretId": match.group("arn")}
    if match.group("stage"):
        request["VersionStage"] = match.group("stage")
    if match.group("version"):
        request["VersionId"] = match.group("version")
    secret_string = replayed.client("secretsmanager").get_secret_value(**request)["SecretString"]
    key = match.group("key")
    if not key:
        return secret_string
    try:
        document = json.loads(secret_string)
    except json.JSONDecodeError:
        raise SecretResolutionError(f"{match.group('arn')} is not JSON; ECS cannot read key "
                                    f"{key!r} from it") from None
    if not isinstance(document, dict) or key not in document:
        raise SecretResolutionError(f"{match.group('arn')} has no JSON key {key!r}")
    value = document[key]
    return value if isinstance(value, str) else json.dumps(value)


def declared_containers(evaluation: Evaluation) -> list[tuple[Declared, dict[str, Any]]]:
    """Every container of every declared task definition, with its task definition."""
    return [(definition, container)
            for definition in evaluation.of_type(TASK_DEFINITION)
            for container in json.loads(definition.inputs["containerDefinitions"])]


def find_container(evaluation: Evaluation, name: str, family: Optional[str] = None
                   ) -> tuple[Declared, dict[str, Any]]:
    """The container `name` (of the task definition family `family`, when several tasks have a
    container of that name, as every `ha` task has `prefect-migrate`)."""
    found = [(d, c) for d, c in declared_containers(evaluation) if c["name"] == name
             and (family is None or d.inputs["family"] == family)]
    if len(found) != 1:
        families = [d.inputs["family"] for d, _ in found]
        raise AssertionError(f"{len(found)} containers named {name!r} (families {families}); "
                             f"name the family")
    return found[0]


def family_of(evaluation: Evaluation, container: str) -> str:
    """The task definition family of the one task that runs `container`."""
    return str(find_container(evaluation, container)[0].inputs["family"])


# The ha stack's processes by role, and the container each role's task runs.
HA_ROLES = (("api", "prefect-api"), ("services", "prefect-services"), ("worker", "prefect-worker"))


def families_by_role(evaluation: Evaluation) -> dict[str, str]:
    """The ha stack's role -> task definition family, read from which container each family runs."""
    return {role: family_of(evaluation, container) for role, container in HA_ROLES}


def families(evaluation: Evaluation) -> dict[str, list[str]]:
    """Each task definition family and its container names, in declared order."""
    return {d.inputs["family"]: [c["name"] for c in json.loads(d.inputs["containerDefinitions"])]
            for d in evaluation.of_type(TASK_DEFINITION)}


def desired_counts(evaluation: Evaluation) -> dict[str, int]:
    """Task definition family -> the desired count of the ECS service that runs it."""
    return {s.inputs["taskDefinition"].rsplit("/", 1)[1].rsplit(":", 1)[0]:
            int(s.inputs.get("desiredCount", 1)) for s in evaluation.of_type(SERVICE)}


def relocate_url(url: str, host: str, port: int, scheme: Optional[str] = None) -> str:
    """`url` with its host and port replaced, its credentials and path kept."""
    parts = urllib.parse.urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urllib.parse.urlunsplit((scheme or parts.scheme, netloc, parts.path, parts.query,
                                    parts.fragment))


@dataclass
class ContainerLaunch:
    name: str
    command: list[str]
    env: dict[str, str]
    declared_env: dict[str, str]
    secret_names: list[str]
    # The loopback port the process listens on (its `--port`, or PREFECT_SERVER_API_PORT).
    port: int
    task_definition: Declared = field(repr=False)
    container: dict[str, Any] = field(repr=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, log_path: Path, new_session: bool = False) -> subprocess.Popen:
        return spawn(self.command, self.env, log_path, new_session=new_session)

    def start_timed(self) -> "TimedProcess":
        """Start with each output line recorded with its arrival time (wall clock, as a
        database's clock_timestamp() reads it on this machine)."""
        return TimedProcess(self)

    def run(self, log_path: Path, timeout: float) -> tuple[int, str]:
        """Run to completion (a one-off task); its exit code and log. Stopped by PID on timeout."""
        process = self.start(log_path)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            stop(process)
            raise
        return process.returncode, log_path.read_text(errors="replace")

    def __repr__(self) -> str:  # the environment holds resolved secrets
        return f"ContainerLaunch(name={self.name!r}, command={self.command!r}, port={self.port})"


class TimedProcess:
    def __init__(self, launch: ContainerLaunch):
        self.name = launch.name
        self.lines: list[tuple[float, str]] = []
        self.process = subprocess.Popen(
            launch.command, env=launch.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=_default_sigint)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None  # started with stdout=PIPE
        for raw in self.process.stdout:
            self.lines.append((time.time(), raw.decode(errors="replace").rstrip("\n")))

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            stop(self.process)
            raise
        self._reader.join(10)
        return code

    def at(self, text: str) -> float:
        """When the first line holding `text` arrived."""
        return next(t for t, line in self.lines if text in line)

    @property
    def log(self) -> str:
        return "\n".join(line for _, line in self.lines)


def _listen_locally(command: list[str], port: int) -> tuple[list[str], bool]:
    """The command with its listening host made 127.0.0.1 and its `--port` the free one (also
    inside a `sh -c` string); whether it named a port."""
    named_port = False
    local = []
    for arg in command:
        arg = LISTEN_HOST.sub(lambda m: f"{m.group(1)}127.0.0.1", arg)
        if LISTEN_PORT.search(arg):
            named_port = True
            arg = LISTEN_PORT.sub(lambda m: f"{m.group(1)}{port}", arg)
        local.append(arg)
    # `--host`/`--port` as separate argv items: the value is the next item.
    for index, arg in enumerate(local[:-1]):
        if arg == "--host":
            local[index + 1] = "127.0.0.1"
        elif arg == "--port":
            local[index + 1] = str(port)
            named_port = True
    return local, named_port


# The pool bootstrap's template travels compressed (components/prefect/pool_bootstrap.py); the ids the
# mocks made up inside it (VPC, subnets, groups, roles) stand for moto's, as everywhere else.
COMPRESSED_TEMPLATE = "PREFECT_WORK_POOL_TEMPLATE_GZIP_B64"


def _real_template(replayed: Replay, name: str, value: str) -> str:
    if name != COMPRESSED_TEMPLATE:
        return value
    from components.prefect.pool_bootstrap import decode_template, encode_template

    return encode_template(replayed.real(decode_template(value)))


def _image_installs(name: str, env: dict[str, str]) -> None:
    """The Prefect image's entrypoint pip-installs `EXTRA_PIP_PACKAGES`, and the `ha` commands
    install requirements-server-ha.txt (`SERVER_REQUIREMENTS`) onto the PREFECT_HOME volume,
    before Prefect runs; here the test venv must already hold exactly those versions, or the
    process would run other code than the task would."""
    from components.server.server import REQUIREMENTS_ENV

    pinned = [line.split()[0] for line in env.get(REQUIREMENTS_ENV, "").splitlines()
              if "==" in line and not line.lstrip().startswith("#")]
    requirements = [*env.get("EXTRA_PIP_PACKAGES", "").split(), *pinned]
    for requirement in requirements:
        package, _, version = requirement.partition("==")
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if not version or installed != version:
            raise AssertionError(f"{name}: the image would install {requirement!r}; the test "
                                 f"venv has {package} {installed} (pin it in "
                                 f"requirements-dev.txt)")


def _installed_already(command: list[str]) -> list[str]:
    """The command without its install step (components/server/server.py EXTRA_PACKAGES_INSTALL): the
    packages are in the test venv already (`_image_installs` checks the versions), and PyPI is
    not for a test to reach."""
    from components.server.server import EXTRA_PACKAGES_INSTALL

    return [arg.replace(EXTRA_PACKAGES_INSTALL, "") for arg in command]


def container_launch(evaluation: Evaluation, replayed: Replay, name: str, *, home: Path,
                     family: Optional[str] = None,
                     endpoints: Optional[dict[str, Endpoint]] = None,
                     aws_env: Optional[dict[str, str]] = None,
                     extra_env: Optional[dict[str, str]] = None,
                     keep_install: bool = False) -> ContainerLaunch:
    """The named container's exact process: entryPoint + command, environment, and secrets
    resolved from moto, with only the endpoints and the listening address made local.

    `endpoints` maps an env name (declared or from `secrets`) to its loopback value, or to a
    function of the declared value; a name the container does not have is an error, so a renamed
    setting cannot pass unnoticed. `extra_env` adds settings the test needs (speed, AWS endpoint)
    and is refused for any name the container declares."""
    definition, container = find_container(evaluation, name, family)
    container = replayed.real(container)
    declared_env = {item["name"]: _real_template(replayed, item["name"], item["value"])
                    for item in container.get("environment", [])}
    env = dict(declared_env)
    secret_names = [item["name"] for item in container.get("secrets", [])]
    for item in container.get("secrets", []):
        env[item["name"]] = resolve_value_from(replayed, item["valueFrom"])
    for key, value in (endpoints or {}).items():
        if key not in env:
            raise AssertionError(f"container {name!r} declares no {key}: cannot point it at the "
                                 f"local server (declared: {sorted(env)})")
        env[key] = value(env[key]) if callable(value) else value
    _image_installs(name, env)
    clashes = sorted(set(extra_env or {}) & set(env))
    if clashes:
        raise AssertionError(f"extra_env would replace what {name!r} declares: {clashes}")
    port = free_port()
    declared_command = [*(container.get("entryPoint") or []), *(container.get("command") or [])]
    command, named_port = _listen_locally(
        declared_command if keep_install else _installed_already(declared_command), port)
    home.mkdir(parents=True, exist_ok=True)
    from components.server.migrate import CA_FILE_ENV

    if CA_FILE_ENV in env:  # a file on the task's /tmp volume: this container's own here
        env[CA_FILE_ENV] = str(home / Path(env[CA_FILE_ENV]).name)
    env.update({
        # A fresh container: an empty home, and the `prefect` the image would have on PATH.
        "PREFECT_HOME": str(home),
        "HOME": str(home),
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        **(aws_env or {}),
        **(extra_env or {}),
    })
    if not named_port:
        # The port inside the task's own network namespace; a free loopback port here.
        env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
        env["PREFECT_SERVER_API_PORT"] = str(port)
    return ContainerLaunch(name, command, env, declared_env, secret_names, port, definition,
                           container)


def server_stack_name(mode: str) -> Optional[str]:
    """The first stack file whose `prefectServer` is `mode`."""
    for stack in stack_names():
        values = (read_yaml(stack_file(stack)) or {}).get("config", {})
        if str(values.get(f"{PROJECT}:prefectServer", "none")) == mode:
            return stack
    return None


@cache
def server_evaluation(mode: str) -> Evaluation:
    """The first stack file whose `prefectServer` is `mode`, evaluated; without one, the dev stack
    with `prefectServer` set to it (what `pulumi config set prefectServer <mode>` makes)."""
    stack = server_stack_name(mode)
    if stack is not None:
        return evaluate(with_credentials(load_stack_config(stack)), stack=stack)
    config = load_stack_config("dev")
    config[f"{PROJECT}:prefectServer"] = mode
    if mode == "ha":  # the stack refuses ha on a micro database (too few connections)
        config[f"{PROJECT}:serverDbInstanceClass"] = "db.t4g.small"
    return evaluate(with_credentials(config), stack="dev")


@dataclass
class RdsMaster:
    """What the replayed RDS instance says a client connects with: its endpoint, master user and
    database, and the password its managed secret holds now."""
    address: str
    port: int
    user: str
    database: str
    password: str = field(repr=False)
    secret_arn: str


def rds_master(replayed: Replay) -> RdsMaster:
    (instance,) = replayed.client("rds").describe_db_instances()["DBInstances"]
    secret_arn = instance["MasterUserSecret"]["SecretArn"]
    password = json.loads(replayed.client("secretsmanager").get_secret_value(
        SecretId=secret_arn)["SecretString"])["password"]
    return RdsMaster(instance["Endpoint"]["Address"], int(instance["Endpoint"]["Port"]),
                     instance["MasterUsername"], instance["DBName"], password, secret_arn)


def serve_rds_master(replayed: Replay, postgres: Postgres) -> RdsMaster:
    """The replayed RDS instance's master user and database, made on a local PostgreSQL (TLS, as
    RDS forces it), so the declared containers reach the database the stack says they do."""
    master = rds_master(replayed)
    postgres.rds_database(master.user, master.password, master.database)
    return master
