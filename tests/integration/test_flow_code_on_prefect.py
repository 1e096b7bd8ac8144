"""Rung 3 for flow-code delivery: flow code shipped through the stack's bucket, end to end.

The dev stack is replayed into moto with its pool on a real Prefect server, and its worker runs as
the container would. A flow's code is uploaded to the stack's bucket; a deployment on the stack's
pool pulls it from there with `flow.from_source` and prefect-aws's `S3Bucket` block, and keeps its
result in the bucket through job variables. The worker submits the run to ECS (moto); the test
then runs that task's command in the environment ECS would give its container (the task
definition's environment and secrets, the RunTask override on top), with moto's dummy credentials
standing in for the flow-run task role's. The run completes and its result is in the bucket.

moto evaluates a bucket policy's conditions without the request's context, so the TLS-only
policy's conditional Deny would refuse every object request, TLS or not. Once the replay has
stored and checked it (tests/integration/test_flow_code_replay.py reads it back), this test removes it: here
boto3 talks plain HTTP to moto, in AWS it speaks HTTPS, which the policy allows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.support.flow_code_stack import POOL, create_publisher, published
from testbed.prefect_worker import Deployed, api, wait_for, wait_online, worker_launch
from testbed.replay import real_exports, replay
from testbed.servers import BIN, stop

pytestmark = pytest.mark.slow

FAST_WORKER = {"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_HEARTBEAT_SECONDS": "2"}
WITHIN_S = 90  # each step takes 1-10 s; generous for a loaded 2-core CI box
FLOW_CODE = '''\
from prefect import flow, get_run_logger


@flow(name="hello-from-s3")
def hello(name: str = "ECS") -> str:
    get_run_logger().info("running code pulled from the stack's bucket")
    return f"hello {name}, from s3"
'''
# What a team runs once per flow version, with the publisher's credentials.
DEPLOY = '''\
import sys
from prefect import flow
from prefect_aws import S3Bucket

bucket, pool = sys.argv[1], sys.argv[2]
S3Bucket(bucket_name=bucket, bucket_folder="flows/hello").save("flow-code", overwrite=True)
S3Bucket(bucket_name=bucket, bucket_folder="results").save("flow-results", overwrite=True)
deployment_id = flow.from_source(
    source=S3Bucket.load("flow-code"), entrypoint="hello_s3.py:hello",
).deploy(name="from-s3", work_pool_name=pool, print_next_steps=False, job_variables={"env": {
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
    "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": "s3-bucket/flow-results",
    "PREFECT_RESULTS_DEFAULT_SERIALIZER": "json",
}})
print(deployment_id)
'''


@pytest.fixture(scope="module")
def stack(evaluated, moto_server, prefect_server):
    """Staging with a publisher role (tests/support/flow_code_stack.py), deployed into an emptied moto
    where the publisher already exists, its pool on the Prefect server."""
    evaluation = published(evaluated)
    moto_server.reset()
    create_publisher(moto_server.url)
    replayed = replay(evaluation, moto_server.url, prefect_api_url=prefect_server.api_url)
    deployed = Deployed(evaluation, replayed, real_exports(evaluation, replayed))
    # See the module docstring: moto cannot evaluate aws:SecureTransport.
    deployed.replayed.client("s3").delete_bucket_policy(Bucket=deployed.exports["flowCodeBucketName"])
    yield deployed
    deployed.replayed.delete_work_pools()


@pytest.fixture(scope="module")
def worker(stack, moto_server, prefect_server, tmp_path_factory):
    home = tmp_path_factory.mktemp("flow-code-worker")
    launch = worker_launch(stack.evaluation, stack.replayed, api_url=prefect_server.api_url,
                           home=home, aws_env=moto_server.client_env(), extra_env=FAST_WORKER)
    log_path = home / "worker.log"
    process = launch.start(log_path)
    yield process, log_path
    stop(process)


def client_env(home, moto_server, prefect_server) -> dict[str, str]:
    return {**prefect_server.client_env(), **moto_server.client_env(), "PREFECT_HOME": str(home),
            "HOME": str(home), "PATH": f"{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"}


def task_environment(stack, run_task: dict) -> tuple[list[str], dict[str, str]]:
    """The flow-run container's command and environment as ECS would start it: the task
    definition's environment and secrets (read from Secrets Manager), the override on top."""
    definition = stack.replayed.client("ecs").describe_task_definition(
        taskDefinition=run_task["taskDefinition"])["taskDefinition"]
    (container,) = definition["containerDefinitions"]
    (override,) = run_task["overrides"]["containerOverrides"]
    env = {e["name"]: e["value"]
           for e in [*container.get("environment", []), *override.get("environment", [])]}
    secrets = stack.replayed.client("secretsmanager")
    for secret in container.get("secrets", []):
        env[secret["name"]] = secrets.get_secret_value(SecretId=secret["valueFrom"])["SecretString"]
    return override.get("command") or container["command"], env


def test_a_flow_shipped_through_the_bucket_runs_and_writes_its_result_back(
        stack, worker, moto_server, prefect_server, tmp_path):
    process, log_path = worker
    exports, s3 = stack.exports, stack.replayed.client("s3")
    bucket = exports["flowCodeBucketName"]

    # 1. The code goes to the stack's bucket, under the prefix the publisher may write.
    s3.put_object(Bucket=bucket, Key="flows/hello/hello_s3.py", Body=FLOW_CODE.encode())
    # 2. A deployment on the stack's pool that pulls it from there (the deployer's side).
    deployer = tmp_path / "deployer"
    deployer.mkdir()
    (deployer / "deploy.py").write_text(DEPLOY)
    deployed = subprocess.run(
        [sys.executable, "deploy.py", bucket, POOL], cwd=deployer, capture_output=True, text=True,
        env=client_env(deployer, moto_server, prefect_server), timeout=WITHIN_S)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    deployment_id = deployed.stdout.strip().splitlines()[-1]
    # The worker started with the fixture; it went online while the deployer ran.
    wait_online(prefect_server.api_url, POOL, WITHIN_S, process)
    deployment = api(prefect_server.api_url, "GET", f"/deployments/{deployment_id}")
    assert deployment["pull_steps"] == [{"prefect.deployments.steps.pull_with_block": {
        "block_type_slug": "s3-bucket", "block_document_name": "flow-code"}}]

    # 3. The worker submits a run of it to ECS with the stack's flow-run roles.
    moto_server.start_recording()
    run_id = api(prefect_server.api_url, "POST", f"/deployments/{deployment_id}/create_flow_run",
                 {})["id"]

    def submitted():
        return [r for r in moto_server.recorded("RunTask")
                if {"name": "PREFECT__FLOW_RUN_ID", "value": run_id}
                in r["overrides"]["containerOverrides"][0].get("environment", [])]

    (run_task,) = wait_for("the run's RunTask", submitted, WITHIN_S, log_path)
    moto_server.stop_recording()
    assert run_task["overrides"]["taskRoleArn"] == exports["flowRunTaskRoleArn"]
    task_role = exports["flowRunTaskRoleArn"].rsplit("/", 1)[1]
    iam = stack.replayed.client("iam")
    (grant,) = iam.list_role_policies(RoleName=task_role)["PolicyNames"]
    granted = json.dumps(iam.get_role_policy(RoleName=task_role, PolicyName=grant)["PolicyDocument"])
    assert f"arn:aws:s3:::{bucket}/*" in granted

    # 4. The task's container, as ECS would start it; the task role's credentials are moto's.
    command, env = task_environment(stack, run_task)
    assert env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] == "s3-bucket/flow-results"
    container = tmp_path / "container"
    container.mkdir()
    env.update({**moto_server.client_env(), "PREFECT_HOME": str(container / ".prefect"),
                "HOME": str(container), "PATH": f"{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"})
    started = time.monotonic()
    ran = subprocess.run(command, cwd=container, env=env, capture_output=True, text=True,
                         timeout=WITHIN_S)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    assert "running code pulled from the stack's bucket" in ran.stdout + ran.stderr
    state = api(prefect_server.api_url, "GET", f"/flow_runs/{run_id}")["state"]
    assert state["type"] == "COMPLETED", state
    assert time.monotonic() - started < WITHIN_S

    # 5. The result is in the bucket, under the prefix whose objects expire.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="results/").get(
        "Contents", [])]
    assert keys, "no result object under results/"
    bodies = [s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode() for key in keys]
    assert any("hello ECS, from s3" in body for body in bodies), bodies
