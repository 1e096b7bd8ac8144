"""Rung 3 for the hardening: the worker container, as the dev stack declares it, runs with a
read-only root filesystem, and the task-definition families it registers are the ones its role
may register.

The declared command runs in a private mount namespace where every mount is read-only and only
the task definition's volumes (`PREFECT_HOME`, `/tmp`) are writable, empty tmpfs each
(testbed/sandbox.py; without root it skips with its reason, and under CI=true that skip fails).
It goes ONLINE, answers its health check, and submits a flow run:
RegisterTaskDefinition and RunTask reach moto. The family it registered is read back from moto
and matched against the worker task role's RegisterTaskDefinition resource.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from testbed import sandbox
from tests.support.harness import evaluate_stack
from testbed.prefect_worker import (deploy, deploy_and_run, health_status, wait_for, wait_online,
                                  worker_container, worker_launch)
from testbed.servers import spawn, stop

pytestmark = pytest.mark.slow
# The worker's sandbox remounts in a private mount namespace: root only. Without root the tests
# that run the worker skip with the one-line reason (and fail under CI=true); the others run.
needs_root = pytest.mark.skipif(bool(sandbox.available()), reason=sandbox.available())

POOL = "ecs-read-only"
ONLINE_WITHIN_S = 180  # a loaded 2-core machine: the worker imports prefect before it polls
RUN_TASK_WITHIN_S = 90
FAST_WORKER = {"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_HEARTBEAT_SECONDS": "2"}


@pytest.fixture(scope="module")
def deployed(moto_server, prefect_server):
    """The dev stack replayed into moto, its pool on Prefect, and its worker container."""
    evaluation = evaluate_stack("dev", workPoolName=POOL)
    stack = deploy(evaluation, moto_server, prefect_api_url=prefect_server.api_url)
    container = worker_container(evaluation, stack.replayed)
    try:
        yield {"stack": stack, "container": container,
               "volumes": {m["containerPath"] for m in container["mountPoints"]},
               "declared_home": {e["name"]: e["value"]
                                 for e in container["environment"]}["PREFECT_HOME"]}
    finally:
        stack.replayed.delete_work_pools()


@pytest.fixture(scope="module")
def read_only_worker(deployed, moto_server, prefect_server, tmp_path_factory):
    stack, volumes, declared_home = deployed["stack"], deployed["volumes"], deployed["declared_home"]
    # PREFECT_HOME's volume at a stand-in path (the container's does not exist on this machine);
    # /tmp at /tmp itself. HOME stays the image's (root's), read-only like the rest.
    home = Path(tempfile.mkdtemp(prefix="prefect-home-", dir="/dev/shm"))
    launch = worker_launch(stack.evaluation, stack.replayed, api_url=prefect_server.api_url,
                           home=home, aws_env=moto_server.client_env(),
                           extra_env={**FAST_WORKER, "HOME": "/root"})
    writable = [home if path == declared_home else Path(path) for path in sorted(volumes)]
    log_path = tmp_path_factory.mktemp("read-only-worker") / "worker.log"
    process = spawn(sandbox.read_only_command(launch.command, writable), launch.env, log_path)
    try:
        yield {**deployed, "launch": launch, "process": process, "log_path": log_path,
               "home": home}
    finally:
        stop(process)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def submitted(read_only_worker, prefect_server):
    """The worker ONLINE in its sandbox, then one flow run submitted to moto's ECS."""
    w = read_only_worker
    online = wait_online(prefect_server.api_url, POOL, ONLINE_WITHIN_S, w["process"])
    mounts = sandbox.mounts_of(w["process"].pid)
    run_id = deploy_and_run(prefect_server.api_url, POOL)
    ecs = w["stack"].replayed.client("ecs")
    cluster = w["stack"].exports["clusterArn"]
    wait_for("the flow run's task in the stack's cluster",
             lambda: ecs.list_tasks(cluster=cluster)["taskArns"], RUN_TASK_WITHIN_S, w["log_path"])
    worker_family = w["stack"].evaluation.one("aws:ecs/taskDefinition:TaskDefinition").inputs[
        "family"]
    registered = [arn for arn in ecs.list_task_definitions()["taskDefinitionArns"]
                  if f"task-definition/{worker_family}:" not in arn]
    return {"online": online, "mounts": mounts, "run_id": run_id, "registered": registered,
            "health": health_status(w["launch"].health_port),
            "written": {path: sandbox.files_written(w["process"].pid, str(
                w["home"] if path == w["declared_home"] else path)) for path in w["volumes"]}}


def test_worker_declares_a_read_only_root_with_a_volume_for_prefect_home_and_tmp(deployed):
    w = deployed
    assert w["container"]["readonlyRootFilesystem"] is True
    assert w["volumes"] == {w["declared_home"], "/tmp"}


@needs_root
def test_worker_runs_and_submits_a_flow_run_with_only_its_volumes_writable(
        read_only_worker, submitted):
    w = read_only_worker
    mounts = submitted["mounts"]
    assert "ro" in mounts["/"].split(","), "the worker's root filesystem is read-only"
    assert all("ro" in options.split(",") for point, options in mounts.items()
               if not point.startswith(("/proc", "/sys", "/dev", "/tmp", str(w["home"])))
               or point == "/dev/shm")
    for path in ("/tmp", str(w["home"])):
        assert "rw" in mounts[path].split(","), path
    assert submitted["health"] == 200
    assert submitted["registered"], "the worker registered the flow run's task definition"
    log = w["log_path"].read_text(errors="replace")
    assert "Read-only file system" not in log and "Errno 30" not in log
    assert w["process"].poll() is None
    print("written under the volumes:", json.dumps(submitted["written"]))


@needs_root
def test_registered_families_are_the_ones_the_worker_role_may_register(read_only_worker,
                                                                      submitted):
    stack = read_only_worker["stack"]
    statements = json.loads(stack.evaluation.one(
        "aws:iam/rolePolicy:RolePolicy", "iam-worker-task").inputs["policy"])["Statement"]
    (register,) = [s for s in statements if s["Action"] == "ecs:RegisterTaskDefinition"]
    pattern = stack.replayed.real(register["Resource"])
    for arn in submitted["registered"]:
        family = arn.rsplit("/", 1)[1].rsplit(":", 1)[0]
        assert family.startswith(f"prefect_{POOL}_"), family
        assert fnmatch.fnmatchcase(arn, pattern), (arn, pattern)
    print("families registered:", sorted({a.rsplit("/", 1)[1].rsplit(":", 1)[0]
                                          for a in submitted["registered"]}))


def test_dev_reads_back_from_moto_encrypted_closed_and_logged(deployed):
    """The replay the worker runs on: what AWS stores for the hardening resources."""
    stack = deployed["stack"]
    replayed, exports, evaluation = stack.replayed, stack.exports, stack.evaluation
    key = replayed.created[("aws:kms/key:Key", "stack-key-key")]
    kms = replayed.client("kms")
    assert kms.get_key_rotation_status(KeyId=key["key_id"])["KeyRotationEnabled"] is True
    stored = json.loads(kms.get_key_policy(KeyId=key["key_id"], PolicyName="default")["Policy"])
    assert stored == json.loads(replayed.real(
        evaluation.one("aws:kms/keyPolicy:KeyPolicy").inputs["policy"]))
    secret = replayed.client("secretsmanager").describe_secret(
        SecretId=exports["credentialSecretArn"])
    assert secret["KmsKeyId"] == key["arn"]
    groups = {g["logGroupName"]: g for g in replayed.client("logs").describe_log_groups()[
        "logGroups"]}
    for name in (exports["logGroupName"], exports["vpcFlowLogGroupName"]):
        assert groups[name]["kmsKeyId"] == key["arn"]

    ec2 = replayed.client("ec2")
    (default,) = ec2.describe_security_groups(GroupIds=[exports["defaultSecurityGroupId"]])[
        "SecurityGroups"]
    assert (default["GroupName"], default["VpcId"]) == ("default", exports["vpcId"])
    assert default["IpPermissions"] == [] and default["IpPermissionsEgress"] == []
    (flow_log,) = ec2.describe_flow_logs()["FlowLogs"]
    assert flow_log["ResourceId"] == exports["vpcId"]
    assert flow_log["LogDestination"].endswith(f":log-group:{exports['vpcFlowLogGroupName']}")
    assert flow_log["TrafficType"] == "ALL" and flow_log["MaxAggregationInterval"] == 600
