"""One stack, brought up on this machine the way `pulumi up` and ECS would bring it up on AWS.

`Platform.up()` evaluates the program with the stack file's config (tools/mock_engine.py), replays
every declared resource into moto (testbed/replay/), then starts the Prefect side by the stack's
`prefectServer`:

- `none`: a local Prefect server (SQLite, UI on) stands in for the external API the stack points
  at; the stack's own providers create the work pool and the stuck-run automation on it, as
  `pulumi up` does on the real one.
- `single` / `ha`: PostgreSQL gets what RDS creates from the replayed instance (its master user,
  database and managed-secret password, TLS only), and for `ha` Redis gets the stack's AUTH token
  (TLS only); then each declared server container runs as ECS starts it
  (testbed/server_containers.py), the database verified against the local server's CA: the
  server task's `prefect-migrate` first (in `ha`, the first API task's), then the server (`ha`:
  its API and services tasks); the worker task's pool bootstrap
  creates the pool and the automation, and exits 0 before the worker starts (`dependsOn`).

Then as many declared workers as the worker service's desired count, with their exact command,
environment and secrets; only the API URL, the health-check port and the AWS endpoint (the
emulator) are local. `TaskRunner` (testbed/ecs_tasks.py) runs the flow-run tasks they start.

Every process is in `processes` (testbed/processes.py), stopped by `down()`.
"""

from __future__ import annotations

import datetime
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

from components.config.credential import CREDENTIAL_KEYS
from components.server.migrate import CA_BUNDLE_ENV
from testbed.server_containers import (
    ContainerLaunch, container_launch, desired_counts, family_of, find_container, rds_master,
    resolve_value_from,
)
from testbed.databases import Postgres, Redis, postgres, redis
from testbed.ecs_tasks import TaskRunner
from testbed.prefect_worker import (
    FINAL, Deployed, api, basic_auth, deploy, wait_online, worker_launch, workers,
)
from testbed.processes import Processes
from testbed.replay.prefect import AUTOMATION
from testbed.servers import MotoServer, PrefectServer, free_port, wait_for_http
from tools.mock_engine import (
    PROJECT, WORK_POOL, Evaluation, evaluate, load_stack_config, stack_file, with_credentials,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "flows"
# Deployment name -> entrypoint, relative to examples/flows.
SAMPLES = {"hello": "hello.py:hello", "failing": "failing.py:failing"}
HEALTHY_WITHIN_S = 300  # the server migrates an empty database first: ~20 s idle, minutes loaded
ONLINE_WITHIN_S = 180
BOOTSTRAP_WITHIN_S = 300
# The stand-in for an external API runs its UI; the rest as the test bed's servers run.
LOCAL_SERVER_ENV = {"PREFECT_UI_ENABLED": "true"}


def stack_path(stack: str) -> tuple[str, Path]:
    """A stack's name and file: `dev` is Pulumi.dev.yaml; a path to a stack file is taken as is,
    its name read from it (`Pulumi.<name>.yaml`)."""
    if stack.endswith((".yaml", ".yml")):
        path = Path(stack).resolve()
        if not path.is_file():
            raise SystemExit(f"no stack file {stack}")
        return path.stem.removeprefix("Pulumi."), path
    return stack, stack_file(stack)


def stack_config(path: Path) -> dict[str, str]:
    """The config `pulumi up` would see: Pulumi.yaml's defaults, the stack file over them, and
    for a stack without its own server a stand-in credential (the local server takes no key),
    never the stack's real one."""
    config = load_stack_config(stack_file=path)
    config = {k: v for k, v in config.items()
              if k.partition(":")[2] not in CREDENTIAL_KEYS or not k.startswith(f"{PROJECT}:")}
    return with_credentials(config)


def _timestamp(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


class Platform:
    def __init__(self, stack: str, workdir: Path, report: Callable[[str], None] = print):
        self.stack, self.stack_file = stack_path(stack)
        self.workdir = workdir
        self.report = report
        self.processes = Processes()
        self.mode = "none"
        self.moto: Optional[MotoServer] = None
        self.deployed: Optional[Deployed] = None
        self.tasks: Optional[TaskRunner] = None
        self.api_url = ""
        self.ui_url = ""
        self.auth_string: Optional[str] = None
        self.auth_file: Optional[Path] = None
        self.worker_name = ""
        # Where each worker's PREFECT_API_URL points, in turn (ha: every API; else the one).
        self.worker_api_urls: list[str] = []
        # name -> process that must keep running (`watch` reports the first that stops).
        self.core: dict[str, Any] = {}
        self._deployments: dict[str, str] = {}

    # --- bring-up ---------------------------------------------------------------------------

    def up(self) -> None:
        config = stack_config(self.stack_file)
        self.mode = config.get(f"{PROJECT}:prefectServer", "none")
        self.moto = MotoServer(self.workdir, new_session=True)
        self._keep("moto", self.moto.process)
        if self.mode == "none":
            self._up_external(config)
        else:
            self._up_server(config)
        assert self.deployed is not None
        self.tasks = TaskRunner(self.deployed.replayed, self.deployed.exports["clusterArn"],
                                self.processes, self.workdir, self.moto.client_env(),
                                self.report).start()
        self._start_workers()
        wait_for_http(f"{self.ui_url}/", 60)
        for name in SAMPLES:
            self.deployment(name)

    def _keep(self, name: str, process: Any) -> None:
        self.processes.add(name, process)
        self.core[name] = process

    def _evaluate(self, config: dict[str, str]) -> Evaluation:
        evaluation = evaluate(config, stack=self.stack)
        self.report(f"{len(evaluation.resources)} resources declared by {self.stack_file.name}")
        return evaluation

    def _replay(self, evaluation: Evaluation) -> Deployed:
        assert self.moto is not None
        deployed = deploy(evaluation, self.moto, prefect_api_url=None)
        # ECS tasks stay RUNNING in moto until their process ends (ecs_tasks stops them).
        self.moto.hold_tasks(10**9)
        self.report(f"{len(deployed.replayed.created)} resources replayed into the AWS emulator")
        return deployed

    @property
    def resource_count(self) -> int:
        return len(self.deployed.replayed.created) if self.deployed else 0

    @property
    def pool(self) -> str:
        assert self.deployed is not None
        return self.deployed.exports["workPoolName"]

    @property
    def cluster_name(self) -> str:
        assert self.deployed is not None
        return self.deployed.exports["clusterName"]

    def _up_external(self, config: dict[str, str]) -> None:
        """`prefectServer: none`: a local server stands in for the external API."""
        server = PrefectServer(self.workdir, LOCAL_SERVER_ENV, new_session=True, wait=False)
        self._keep("prefect server", server.process)
        evaluation = self._evaluate(config)
        if not evaluation.of_type(WORK_POOL):
            raise RuntimeError("the stack does not manage its work pool (manageWorkPool: false), "
                               "so nothing here would create it")
        self.deployed = self._replay(evaluation)
        server.wait_healthy(HEALTHY_WITHIN_S)
        self.api_url = server.api_url
        self.ui_url = server.api_url[:-len("/api")]
        # The pool and the automation, through the stack's providers, as `pulumi up` creates them.
        replayed = self.deployed.replayed
        replayed.prefect_api_url = server.api_url
        for declared in [*evaluation.of_type(WORK_POOL), *evaluation.of_type(AUTOMATION)]:
            replayed.replay_one(declared)
        self.report(f"Prefect server up; pool {self.pool} and the stuck-run automation created "
                    f"by the stack's providers")

    def _up_server(self, config: dict[str, str]) -> None:
        """`single` / `ha`: the declared server containers on a local PostgreSQL (and Redis)."""
        with ThreadPoolExecutor(1) as background:
            starting = background.submit(postgres, user="postgres", database="postgres",
                                         ssl=True)
            try:
                evaluation = self._evaluate(config)
            finally:
                db: Postgres = starting.result()
                self.processes.add_server("postgresql", db.pid, db.stop)
        self.deployed = self._replay(evaluation)
        master = rds_master(self.deployed.replayed)
        db.rds_database(master.user, master.password, master.database)
        assert db.ca_file is not None
        # The database verified against the local PostgreSQL's own CA, in place of the RDS root
        # CAs the stack declares: the one TLS seam (components/server/migrate.py).
        database = {"PREFECT_SERVER_DATABASE_HOST": "127.0.0.1",
                    "PREFECT_SERVER_DATABASE_PORT": str(db.port),
                    CA_BUNDLE_ENV: db.ca_file.read_text()}
        endpoints, extra = dict(database), {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        main = "prefect-api" if self.mode == "ha" else "prefect-server"
        self._migrate(database, self._family(main))
        if self.mode == "ha":
            cache = self._redis()
            endpoints.update({"PREFECT_REDIS_MESSAGING_HOST": cache.host,
                              "PREFECT_REDIS_MESSAGING_PORT": str(cache.port)})
            # The image trusts the public CAs that sign ElastiCache's certificate; here, Redis's.
            extra["SSL_CERT_FILE"] = str(cache.ca_file)
            server, server_name = self._up_ha(endpoints, extra), "prefect-api-0"
        else:
            server = self._container("prefect-server", endpoints=endpoints, extra_env=extra)
            server_name = "prefect-server"
            self._keep(server_name, server.start(self._log(server_name), new_session=True))
        self.api_url = server.api_url
        self.ui_url = server.api_url[:-len("/api")]
        self.auth_string = server.env.get("PREFECT_SERVER_API_AUTH_STRING")
        if self.auth_string:
            self.auth_file = self.workdir / "auth"
            self.auth_file.touch(mode=0o600)
            self.auth_file.write_text(self.auth_string)
        # The worker task's first container waits for the API itself, as in ECS.
        bootstrap = self._container("prefect-work-pool", family=self._family("prefect-worker"),
                                    endpoints={"PREFECT_API_URL": self.api_url})
        bootstrap_process = bootstrap.start(self._log("prefect-work-pool"), new_session=True)
        self.processes.add("prefect-work-pool", bootstrap_process)
        wait_for_http(f"{self.api_url}/health", HEALTHY_WITHIN_S, self.core[server_name])
        self.report(f"{server_name} up on PostgreSQL (the declared container)")
        code = bootstrap_process.wait(BOOTSTRAP_WITHIN_S)
        if code != 0:
            raise RuntimeError(f"prefect-work-pool exited with {code}: "
                               f"{self._log('prefect-work-pool').read_text()[-1500:]}")
        self.report(f"pool {self.pool} and the stuck-run automation created by the worker "
                    f"task's prefect-work-pool container")

    def _redis(self) -> Redis:
        """Redis with the AUTH token of the stack's secret, TLS only, as ElastiCache serves it."""
        assert self.deployed is not None
        _, api_container = find_container(self.deployed.evaluation, "prefect-api")
        (token,) = [s["valueFrom"] for s in self.deployed.replayed.real(api_container)["secrets"]
                    if s["name"] == "PREFECT_REDIS_MESSAGING_PASSWORD"]
        cache = redis(resolve_value_from(self.deployed.replayed, token), tls=True)
        self.processes.add_server("redis", cache.pid, cache.stop)
        return cache

    def _migrate(self, database: dict[str, str], family: str) -> None:
        """The server (`ha`: the first API) task's `prefect-migrate`, to exit 0 (`dependsOn:
        SUCCESS`); in `ha` the other tasks' would find the schema at head
        (tests/integration/test_server_ha_on_postgres.py runs them all at once)."""
        migrate = self._container("prefect-migrate", family=family, endpoints=database,
                                  extra_env={"PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        process = self.processes.add("prefect-migrate", migrate.start(
            self._log("prefect-migrate"), new_session=True))
        if process.wait(HEALTHY_WITHIN_S) != 0:
            raise RuntimeError(f"prefect-migrate exited with {process.returncode}: "
                               f"{self._log('prefect-migrate').read_text()[-1500:]}")
        self.report("the database migrated by the declared prefect-migrate container")

    def _up_ha(self, endpoints: dict[str, str], extra: dict[str, str]) -> ContainerLaunch:
        """Every API task and the services task, once the database is migrated."""
        api_family = self._family("prefect-api")
        assert self.deployed is not None
        apis = []
        for index in range(desired_counts(self.deployed.evaluation)[api_family]):
            launch = self._container("prefect-api", family=api_family, endpoints=endpoints,
                                     extra_env=extra, home=f"prefect-api-{index}")
            self._keep(f"prefect-api-{index}", launch.start(self._log(f"prefect-api-{index}"),
                                                            new_session=True))
            apis.append(launch)
        services = self._container("prefect-services", endpoints=endpoints, extra_env=extra)
        self._keep("prefect-services", services.start(self._log("prefect-services"),
                                                      new_session=True))
        # The first API serves the UI, as the load balancer would serve any of them; the workers
        # take them in turn, as Cloud Map's multivalue answers spread them.
        self.worker_api_urls = [launch.api_url for launch in apis]
        return apis[0]

    def _family(self, container: str) -> str:
        assert self.deployed is not None
        return family_of(self.deployed.evaluation, container)

    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _container(self, name: str, family: Optional[str] = None, home: Optional[str] = None,
                   **kwargs: Any) -> ContainerLaunch:
        assert self.deployed is not None
        return container_launch(self.deployed.evaluation, self.deployed.replayed, name,
                                family=family, home=self.workdir / (home or name), **kwargs)

    def _start_workers(self) -> None:
        assert self.deployed is not None and self.moto is not None
        evaluation, replayed = self.deployed.evaluation, self.deployed.replayed
        family = self._family("prefect-worker")
        count = desired_counts(evaluation).get(family, 1)
        processes = []
        for index in range(count):
            name = f"prefect-worker-{index}"
            if self.mode == "none":
                launch: Any = worker_launch(evaluation, replayed, api_url=self.api_url,
                                            home=self.workdir / name,
                                            aws_env=self.moto.client_env())
            else:
                apis = self.worker_api_urls or [self.api_url]
                launch = self._container(
                    "prefect-worker", family=family, home=name,
                    endpoints={"PREFECT_API_URL": apis[index % len(apis)],
                               "PREFECT_WORKER_WEBSERVER_PORT": str(free_port())},
                    aws_env=self.moto.client_env())
            (self.workdir / name).mkdir(exist_ok=True)
            process = launch.start(self._log(name), new_session=True)
            self._keep(name, process)
            processes.append(process)
        online = wait_online(self.api_url, self.pool, ONLINE_WITHIN_S, processes[0],
                             headers=basic_auth(self.auth_string))
        self.worker_name = online["name"]
        deadline = time.monotonic() + ONLINE_WITHIN_S
        while len([w for w in workers(self.api_url, self.pool, basic_auth(self.auth_string))
                   if w["status"] == "ONLINE"]) < count:
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {count} workers ONLINE within {ONLINE_WITHIN_S}s")
            time.sleep(0.5)
        self.report(f"{count} worker{'s' if count > 1 else ''} ONLINE in pool {self.pool} "
                    f"(the declared container)")

    # --- flow runs --------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return api(self.api_url, method, path, body, headers=basic_auth(self.auth_string))

    def deployment(self, name: str) -> str:
        """A sample of examples/flows deployed onto the pool; its id. Its code is read from this
        checkout (a `set_working_directory` pull step), as an image would carry it."""
        if name not in self._deployments:
            entrypoint = SAMPLES[name]
            flow = self.call("POST", "/flows/", {"name": entrypoint.rsplit(":", 1)[1]})
            self._deployments[name] = self.call("POST", "/deployments/", {
                "name": "sample", "flow_id": flow["id"], "work_pool_name": self.pool,
                "entrypoint": entrypoint, "enforce_parameter_schema": False,
                "pull_steps": [{"prefect.deployments.steps.set_working_directory": {
                    "directory": str(EXAMPLES)}}],
            })["id"]
        return self._deployments[name]

    def run_sample(self, name: str = "hello", parameters: Optional[dict[str, Any]] = None
                   ) -> str:
        deployment = self.deployment(name)
        return self.call("POST", f"/deployments/{deployment}/create_flow_run",
                         {"parameters": parameters or {}})["id"]

    def state(self, run_id: str) -> dict[str, Any]:
        return self.call("GET", f"/flow_runs/{run_id}")["state"]

    def wait_task_stopped(self, run_id: str, timeout: float) -> None:
        """Until the run's ECS task, if it started, has stopped (its STOPPED event sent)."""
        assert self.tasks is not None
        deadline = time.monotonic() + timeout
        while self.tasks.task_of(run_id) is not None and time.monotonic() < deadline:
            time.sleep(0.2)

    def wait_final(self, run_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(run_id)
            if state["type"] in FINAL or time.monotonic() > deadline:
                return state
            self.check_alive()
            time.sleep(0.5)

    def run_seconds(self, run_id: str) -> float:
        """From the run's creation to its current state, both by the server's clock."""
        run = self.call("GET", f"/flow_runs/{run_id}")
        return round((_timestamp(run["state"]["timestamp"]) - _timestamp(run["created"]))
                     .total_seconds(), 1)

    # --- running and stopping ---------------------------------------------------------------

    def check_alive(self) -> None:
        for name, process in self.core.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; its log: "
                                   f"{self._log(name)}")

    def watch(self) -> None:
        """Until interrupted, or until a server or worker stops by itself."""
        while True:
            self.check_alive()
            time.sleep(1)

    def down(self) -> list[int]:
        """Stop everything started, flow-run tasks first; the PIDs still alive after."""
        if self.tasks is not None:
            self.tasks.stop()
        self.processes.stop_all(self.report)
        return self.processes.left()

