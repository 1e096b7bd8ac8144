"""End to end: after the stack, a deployment with no job variables runs as an ECS task with the
pool's defaults, and a task that stops with a non-zero exit code marks its run Crashed.

What the program declared (under mocks) is replayed into moto through boto3: the VPC, subnets and
security group (moto picks its own ids, so the declared ids are mapped to moto's in the pool
template), the cluster, the flow-run roles, the credential secret, the log group, the events
queues and the EventBridge rule with its declared pattern. The declared pool is created on a real
Prefect server through the stack's own provider. The worker runs with the declared command,
environment and secrets (resolved from moto as ECS would), plus what a laptop needs instead of a
task: PREFECT_HOME, a free health port, a 2 s poll, and AWS_ENDPOINT_URL pointing at moto.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import httpx
import pytest

from components.work_pool import WorkPoolProvider
from tests.harness import TEST_API_KEY, WORK_POOL, evaluate_stack
from tests.servers import BIN, free_port, spawn, stop

pytestmark = pytest.mark.slow

STACK = "staging"


def wait_for(what: str, probe, timeout: float, log: Path, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
    raise AssertionError(f"{what} did not happen within {timeout}s; worker log:\n{tail}")


class Replay:
    """The declared AWS resources, created in moto; `ids` maps declared ids to moto's."""

    def __init__(self, evaluation):
        self.evaluation = evaluation
        self.exports = evaluation.exports
        self.ids: dict[str, str] = {}
        ec2, iam = boto3.client("ec2"), boto3.client("iam")

        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        # moto's RunTask needs DNS hostnames; the declared VPC has them on too.
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        self.ids[self.exports["vpcId"]] = vpc
        for index, subnet in enumerate(self.exports["workerSubnetIds"]):
            self.ids[subnet] = ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.20.{index * 16}.0/20")["Subnet"]["SubnetId"]
        self.ids[self.exports["flowRunSecurityGroupId"]] = ec2.create_security_group(
            GroupName="flow-run", Description="flow runs", VpcId=vpc)["GroupId"]

        for key in ("flowRunExecutionRoleArn", "flowRunTaskRoleArn"):
            # Under mocks a role's physical name is its logical name plus a counter.
            arn = self.exports[key]
            name = arn.split("/")[-1]
            role = evaluation.one("aws:iam/role:Role", name.rsplit("-", 1)[0])
            self.ids[arn] = iam.create_role(
                RoleName=name, AssumeRolePolicyDocument=role.inputs["assumeRolePolicy"])["Role"]["Arn"]

        boto3.client("ecs").create_cluster(clusterName=self.exports["clusterName"])
        boto3.client("logs").create_log_group(logGroupName=self.exports["logGroupName"])
        secret = evaluation.one("aws:secretsmanager/secret:Secret")
        self.ids[self.exports["credentialSecretArn"]] = boto3.client("secretsmanager").create_secret(
            Name=secret.name, SecretString=TEST_API_KEY)["ARN"]

        sqs = boto3.client("sqs")
        for queue in sorted(evaluation.of_type("aws:sqs/queue:Queue"),
                            key=lambda q: "redrivePolicy" in q.inputs):
            attributes = {"SqsManagedSseEnabled": "true"}
            if "redrivePolicy" in queue.inputs:
                attributes["RedrivePolicy"] = queue.inputs["redrivePolicy"]
            sqs.create_queue(QueueName=queue.inputs["name"], Attributes=attributes)
        rule = evaluation.one("aws:cloudwatch/eventRule:EventRule")
        events = boto3.client("events")
        events.put_rule(Name=rule.name, EventPattern=rule.inputs["eventPattern"])
        target = evaluation.one("aws:cloudwatch/eventTarget:EventTarget")
        events.put_targets(Rule=rule.name,
                           Targets=[{"Id": "worker-events", "Arn": target.inputs["arn"]}])

    def mapped(self, document):
        text = json.dumps(document)
        for declared, real in self.ids.items():
            text = text.replace(declared, real)
        return json.loads(text)


def recorded(moto_url: str, target: str) -> list[dict]:
    """The bodies of the recorded requests to one AWS JSON-protocol operation."""
    with urllib.request.urlopen(f"{moto_url}/moto-api/recorder/download-recording") as response:
        lines = response.read().decode().splitlines()
    bodies = []
    for line in lines:
        entry = json.loads(line)
        if entry["headers"].get("X-Amz-Target", "").endswith(target):
            body = base64.b64decode(entry["body"]) if entry["body_encoded"] else entry["body"]
            bodies.append(json.loads(body))
    return bodies


def moto_post(moto_url: str, path: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}{path}", method="POST")).close()


def worker_process_spec(evaluation, replay: Replay, tmp_path: Path, moto_env: dict[str, str]):
    [container] = json.loads(
        evaluation.one("aws:ecs/taskDefinition:TaskDefinition").inputs["containerDefinitions"])
    secrets = boto3.client("secretsmanager")
    env = {e["name"]: e["value"] for e in container["environment"]}
    for secret in container["secrets"]:
        env[secret["name"]] = secrets.get_secret_value(
            SecretId=replay.mapped(secret["valueFrom"]))["SecretString"]
    env.update({
        "PATH": os.environ["PATH"],
        "PREFECT_HOME": str(tmp_path / "worker-home"),
        "PREFECT_WORKER_WEBSERVER_PORT": str(free_port()),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "AWS_ENDPOINT_URL": moto_env["AWS_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": moto_env["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": moto_env["AWS_SECRET_ACCESS_KEY"],
    })
    command = [str(BIN / container["command"][0]), *container["command"][1:]]
    return command, env, container


@pytest.fixture
def moto_env(moto_server, monkeypatch) -> dict[str, str]:
    """An empty moto, with boto3 in this process pointed at it."""
    moto_server.reset()
    env = moto_server.client_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_deployment_without_job_variables_runs_on_the_stack_and_crashes_are_seen(
        moto_server, moto_env, prefect_server, tmp_path):
    api = prefect_server.api_url
    evaluation = evaluate_stack(STACK, prefectApiUrl=api)
    replay = Replay(evaluation)

    declared_pool = evaluation.one(WORK_POOL).inputs
    provider = WorkPoolProvider()
    props = {key: declared_pool.get(key) for key in
             ("api_url", "name", "type", "description", "concurrency_limit")}
    props["base_job_template"] = replay.mapped(declared_pool["base_job_template"])
    pool = provider.create(props)

    client = httpx.Client(base_url=api, timeout=10)
    flow = client.post("/flows/", json={"name": f"e2e-{uuid.uuid4().hex[:6]}"}).json()
    deployment = client.post("/deployments/", json={
        "name": "on-ecs", "flow_id": flow["id"], "work_pool_name": props["name"],
        "entrypoint": "flows.py:hello"}).json()
    assert client.get(f"/deployments/{deployment['id']}").json()["job_variables"] == {}
    flow_run = client.post(f"/deployments/{deployment['id']}/create_flow_run", json={}).json()

    moto_post(moto_server.url, "/moto-api/recorder/start-recording")
    command, env, container = worker_process_spec(evaluation, replay, tmp_path, moto_env)
    assert "--no-create-pool-if-not-found" in command
    log = tmp_path / "worker.log"
    worker = spawn(command, env, log)
    try:
        ecs = boto3.client("ecs")
        cluster = replay.exports["clusterName"]
        [task_arn] = wait_for("a flow-run task in moto",
                              lambda: ecs.list_tasks(cluster=cluster)["taskArns"], 90, log)

        [run_task] = recorded(moto_server.url, ".RunTask")
        network = run_task["networkConfiguration"]["awsvpcConfiguration"]
        assert run_task["cluster"] == replay.exports["clusterArn"]
        assert network["subnets"] == [replay.ids[s] for s in replay.exports["workerSubnetIds"]]
        assert network["securityGroups"] == [replay.ids[replay.exports["flowRunSecurityGroupId"]]]
        assert network["assignPublicIp"] == "DISABLED"
        assert run_task["overrides"]["taskRoleArn"] == replay.exports["flowRunTaskRoleArn"]
        assert run_task["capacityProviderStrategy"][0]["capacityProvider"] == "FARGATE"
        assert "launchType" not in run_task
        override_env = {e["name"] for e in run_task["overrides"]["containerOverrides"][0]["environment"]}
        assert "PREFECT_API_KEY" not in override_env, "the key must come from Secrets Manager"

        [task_definition] = recorded(moto_server.url, ".RegisterTaskDefinition")
        [flow_container] = task_definition["containerDefinitions"]
        assert task_definition["executionRoleArn"] == replay.exports["flowRunExecutionRoleArn"]
        assert flow_container["secrets"] == [{
            "name": "PREFECT_API_KEY",
            "valueFrom": replay.ids[replay.exports["credentialSecretArn"]]}]
        assert flow_container["logConfiguration"]["options"]["awslogs-group"] == replay.exports["logGroupName"]
        assert flow_container["image"] == "prefecthq/prefect:3.9.1-python3.12"
        assert (task_definition["cpu"], task_definition["memory"]) == ("512", "1024")

        task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn], include=["TAGS"])["tasks"][0]
        tags = {t["key"]: t["value"] for t in task["tags"]}
        assert tags["prefect.io/flow-run-id"] == flow_run["id"]

        # The container exits 1: ECS emits a STOPPED task event, which the rule routes to the queue.
        detail = {
            "clusterArn": task["clusterArn"], "taskArn": task_arn,
            "taskDefinitionArn": task["taskDefinitionArn"],
            "lastStatus": "STOPPED", "desiredStatus": "STOPPED", "stopCode": "EssentialContainerExited",
            "containers": [{"name": "prefect", "exitCode": 1, "lastStatus": "STOPPED"}],
        }
        boto3.client("events").put_events(Entries=[{
            "Source": "aws.ecs", "DetailType": "ECS Task State Change", "Detail": json.dumps(detail)}])

        def crashed():
            state = client.get(f"/flow_runs/{flow_run['id']}").json()["state"]
            return state if state["type"] == "CRASHED" else None

        state = wait_for("the run turning Crashed", crashed, 60, log)
        assert "non-zero exit code" in state["message"]
    finally:
        stop(worker)
        moto_post(moto_server.url, "/moto-api/recorder/stop-recording")
        provider.delete(pool.id, pool.outs)


def test_worker_waits_for_a_missing_pool_instead_of_creating_it(
        moto_env, prefect_server, tmp_path):
    """With manageWorkPool false the pool is someone else's: the declared worker never makes one."""
    evaluation = evaluate_stack(STACK, prefectApiUrl=prefect_server.api_url,
                                workPoolName="someone-elses-pool", manageWorkPool="false")
    command, env, _ = worker_process_spec(evaluation, Replay(evaluation), tmp_path, moto_env)
    log = tmp_path / "worker.log"
    worker = spawn(command, env, log)
    try:
        wait_for("the worker noticing the missing pool",
                 lambda: "'someone-elses-pool' not found" in log.read_text(errors="replace"), 60, log)
        time.sleep(3)  # a few more polls
        response = httpx.get(f"{prefect_server.api_url}/work_pools/someone-elses-pool", timeout=10)
        assert response.status_code == 404
        assert worker.poll() is None, "the worker keeps running and polling"
    finally:
        stop(worker)
