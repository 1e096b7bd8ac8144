#!/usr/bin/env python3
"""Check a live deployment of the stack, one line per check, and exit non-zero on any failure.

    make verify STACK=dev
    python scripts/verify.py --stack dev                # reads `pulumi stack output --json`
    python scripts/verify.py --outputs outputs.json     # or a saved copy of those outputs

AWS credentials and region come from the usual boto3 chain (AWS_PROFILE, AWS_REGION, ...). The
Prefect check runs when an API URL is given (--prefect-api-url or PREFECT_API_URL); the credential
is read from PREFECT_API_KEY (or PREFECT_API_AUTH_STRING for a self-hosted server with basic auth)
in the environment only, never from the command line, where `ps` and shell history would keep it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional

import boto3

CREDENTIAL_NAMES = ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")
# The line `prefect worker start` prints once it polls its pool.
WORKER_STARTED = re.compile(r"Worker '([^']+)' started!")
LOG_LOOKBACK_HOURS = 24


@dataclass
class Result:
    ok: Optional[bool]  # None: skipped
    name: str
    evidence: str

    def line(self) -> str:
        mark = {True: "✓", False: "✗", None: "-"}[self.ok]
        return f"{mark} {self.name}: {self.evidence}"


class Failed(Exception):
    """A check's negative finding, with its evidence."""


def load_outputs(stack: Optional[str], outputs_file: Optional[str]) -> dict[str, Any]:
    if outputs_file:
        with open(outputs_file) as handle:
            return json.load(handle)
    command = ["pulumi", "stack", "output", "--json", "--stack", str(stack)]
    try:
        done = subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("verify: the pulumi CLI is not installed; pass --outputs FILE.json instead")
    except subprocess.CalledProcessError as error:
        sys.exit(f"verify: {' '.join(command)} failed: {error.stderr.strip()}")
    return json.loads(done.stdout)


class Verifier:
    def __init__(self, outputs: dict[str, Any], region: Optional[str] = None,
                 prefect_api_url: Optional[str] = None, env: Optional[dict[str, str]] = None):
        self.outputs = outputs
        self.region = region or outputs["clusterArn"].split(":")[3]
        self.prefect_api_url = prefect_api_url
        self.env = os.environ if env is None else env
        self.ecs = boto3.client("ecs", region_name=self.region)
        self.ec2 = boto3.client("ec2", region_name=self.region)
        self.logs = boto3.client("logs", region_name=self.region)
        self.secretsmanager = boto3.client("secretsmanager", region_name=self.region)
        self._service: Optional[dict[str, Any]] = None

    # -- helpers --
    @property
    def cluster(self) -> str:
        return self.outputs["clusterArn"]

    def service(self) -> dict[str, Any]:
        if self._service is None:
            found = self.ecs.describe_services(cluster=self.cluster,
                                               services=[self.outputs["serviceName"]])
            if not found["services"]:
                raise Failed(f"service {self.outputs['serviceName']} not found: {found['failures']}")
            self._service = found["services"][0]
        return self._service

    def service_tasks(self) -> list[dict[str, Any]]:
        name = self.service()["serviceName"]
        arns = self.ecs.list_tasks(cluster=self.cluster, serviceName=name,
                                   desiredStatus="RUNNING")["taskArns"]
        if not arns:
            return []
        tasks = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"]
        # ECS names a service's tasks' group `service:<name>`.
        return [t for t in tasks if t.get("group") == f"service:{name}"]

    # -- checks --
    def cluster_active(self) -> str:
        """The stack's cluster has status `ACTIVE`."""
        (cluster,) = self.ecs.describe_clusters(clusters=[self.cluster])["clusters"] or [None]
        if cluster is None or cluster["status"] != "ACTIVE":
            raise Failed(f"{self.cluster} is {cluster and cluster['status']}")
        return f"{cluster['clusterName']} is ACTIVE"

    def service_stable(self) -> str:
        """Running count equals desired count and the primary deployment's rollout is
        `COMPLETED`."""
        service = self.service()
        primary = [d for d in service["deployments"] if d["status"] == "PRIMARY"]
        rollout = primary[0].get("rolloutState") if primary else None
        evidence = (f"{service['serviceName']}: running {service['runningCount']}, desired "
                    f"{service['desiredCount']}, rollout {rollout}, "
                    f"{len(service['deployments'])} deployment(s)")
        if service["runningCount"] != service["desiredCount"] or rollout != "COMPLETED":
            raise Failed(evidence)
        return evidence

    def service_runs_stack_task_definition(self) -> str:
        """The service's task definition is the stack's `taskDefinitionArn` output."""
        running = self.service()["taskDefinition"]
        if running != self.outputs["taskDefinitionArn"]:
            raise Failed(f"service runs {running}, the stack declares {self.outputs['taskDefinitionArn']}")
        return running.rsplit("/", 1)[1]

    def tasks_in_intended_subnets(self) -> str:
        """Every running task of the service sits in `workerSubnetIds`."""
        tasks = self.service_tasks()
        intended = set(self.outputs["workerSubnetIds"])
        if not tasks:
            raise Failed("no RUNNING task of the service")
        placed = {}
        for task in tasks:
            details = {d["name"]: d["value"] for a in task.get("attachments", [])
                       if a["type"] == "ElasticNetworkInterface" for d in a["details"]}
            placed[task["taskArn"].rsplit("/", 1)[1]] = details.get("subnetId")
        outside = {task: subnet for task, subnet in placed.items() if subnet not in intended}
        if outside:
            raise Failed(f"tasks outside {sorted(intended)}: {outside}")
        return f"{len(placed)} task(s) in {sorted(set(placed.values()), key=str)}"

    def public_ip_setting(self) -> str:
        """The service's `assignPublicIp` matches `workerAssignsPublicIp`; with no public IP
        intended, no task interface has one."""
        wanted = "ENABLED" if self.outputs["workerAssignsPublicIp"] else "DISABLED"
        network = self.service()["networkConfiguration"]["awsvpcConfiguration"]
        actual = network.get("assignPublicIp", "DISABLED")
        if actual != wanted:
            raise Failed(f"service assignPublicIp {actual}, intended {wanted}")
        if wanted == "DISABLED":
            # A task reachable from the internet is the risk; look at each task's interface.
            enis = [d["value"] for t in self.service_tasks() for a in t.get("attachments", [])
                    for d in a["details"] if d["name"] == "networkInterfaceId"]
            if enis:
                interfaces = self.ec2.describe_network_interfaces(
                    NetworkInterfaceIds=enis)["NetworkInterfaces"]
                public = [i["NetworkInterfaceId"] for i in interfaces
                          if i.get("Association", {}).get("PublicIp")]
                if public:
                    raise Failed(f"tasks have public IPs on {public}, intended none")
        return f"assignPublicIp {actual}, as intended"

    def credential_from_secrets(self) -> str:
        """The container takes `PREFECT_API_KEY` (or `PREFECT_API_AUTH_STRING`) from `secrets`
        with the stack's secret ARN, and no plain variable carries it (only names are printed,
        never values)."""
        definition = self.ecs.describe_task_definition(
            taskDefinition=self.service()["taskDefinition"])["taskDefinition"]
        secret_arn = self.outputs["credentialSecretArn"]
        problems, evidence = [], []
        for container in definition["containerDefinitions"]:
            plain = [e["name"] for e in container.get("environment", [])
                     if e["name"] in CREDENTIAL_NAMES or e.get("value", "").startswith("pnu_")]
            if plain:
                # Names only: the value is the secret.
                problems.append(f"{container['name']} has {plain} in plain environment")
            from_secret = [s["name"] for s in container.get("secrets", [])
                           if s["name"] in CREDENTIAL_NAMES and s["valueFrom"] == secret_arn]
            if from_secret:
                evidence.append(f"{container['name']} reads {from_secret[0]} from secrets")
        if not evidence:
            problems.append(f"no container takes {' or '.join(CREDENTIAL_NAMES)} from {secret_arn}")
        if problems:
            raise Failed("; ".join(problems))
        return "; ".join(evidence)

    def secret_exists(self) -> str:
        """The secret is not scheduled for deletion and has an `AWSCURRENT` version."""
        secret = self.secretsmanager.describe_secret(SecretId=self.outputs["credentialSecretArn"])
        if secret.get("DeletedDate"):
            raise Failed(f"{secret['Name']} is scheduled for deletion on {secret['DeletedDate']}")
        current = [v for v, stages in (secret.get("VersionIdsToStages") or {}).items()
                   if "AWSCURRENT" in stages]
        if not current:
            raise Failed(f"{secret['Name']} has no AWSCURRENT version (no value set)")
        return f"{secret['Name']} with a current version"

    def worker_start_logged(self) -> str:
        """The log group holds `Worker '…' started!` in a `worker/*` stream within the last 24
        h."""
        group = self.outputs["logGroupName"]
        since = int((time.time() - LOG_LOOKBACK_HOURS * 3600) * 1000)
        found: list[dict[str, Any]] = []
        paginator = self.logs.get_paginator("filter_log_events")
        for page in paginator.paginate(logGroupName=group, logStreamNamePrefix="worker/",
                                       filterPattern='"started!"', startTime=since):
            found += [e for e in page["events"] if WORKER_STARTED.search(e["message"])]
        if not found:
            raise Failed(f"no \"Worker '...' started!\" line in {group} (streams worker/*) "
                         f"in the last {LOG_LOOKBACK_HOURS} h")
        latest = max(found, key=lambda e: e["timestamp"])
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(latest["timestamp"] / 1000))
        started = WORKER_STARTED.search(latest["message"])
        line = started.group(0) if started else latest["message"]  # `found` holds matches only
        return f"{line} in {latest['logStreamName']} at {when}"

    def prefect_worker_online(self) -> Optional[str]:
        """With `PREFECT_API_URL` (or `--prefect-api-url`) set, the pool lists at least the
        service's desired count of workers `ONLINE`; skipped (`-`) without a URL."""
        if not self.prefect_api_url:
            return None
        headers = {"Content-Type": "application/json"}
        if self.env.get("PREFECT_API_KEY"):
            headers["Authorization"] = f"Bearer {self.env['PREFECT_API_KEY']}"
        elif self.env.get("PREFECT_API_AUTH_STRING"):
            token = base64.b64encode(self.env["PREFECT_API_AUTH_STRING"].encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        pool = self.outputs["workPoolName"]
        headers.update(self._csrf_headers(headers))
        request = urllib.request.Request(
            f"{self.prefect_api_url.rstrip('/')}/work_pools/{pool}/workers/filter",
            data=b"{}", headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                workers = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise Failed(f"Prefect API answered {error.code} for pool {pool!r}") from error
        except urllib.error.URLError as error:
            raise Failed(f"Prefect API unreachable: {error.reason}") from error
        online = [w["name"] for w in workers if w.get("status") == "ONLINE"]
        try:
            wanted = max(self.service()["desiredCount"], 1)
        except Exception:  # the service check reports that failure; one worker is the floor
            wanted = 1
        if len(online) < wanted:
            raise Failed(f"{len(online)} worker(s) ONLINE in pool {pool!r}, want {wanted}: "
                         f"{[(w['name'], w.get('status')) for w in workers]}")
        return f"{len(online)} ONLINE in pool {pool!r}: {online}"

    def _csrf_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """A CSRF token for a fresh client id, as Prefect's client fetches one: the stack's own
        server refuses a POST without it. 404 (Prefect Cloud, older servers) or 422 (protection
        off): none needed."""
        client = str(uuid.uuid4())
        request = urllib.request.Request(
            f"{(self.prefect_api_url or '').rstrip('/')}/csrf-token?client={client}",
            headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                token = json.loads(response.read())["token"]
        except urllib.error.HTTPError as error:
            if error.code in (404, 422):
                return {}
            raise Failed(f"Prefect API answered {error.code} for a CSRF token") from error
        except urllib.error.URLError as error:
            raise Failed(f"Prefect API unreachable: {error.reason}") from error
        return {"Prefect-Csrf-Token": token, "Prefect-Csrf-Client": client}

    def checks(self) -> list[tuple[str, Callable[[], Optional[str]]]]:
        return [
            ("cluster active", self.cluster_active),
            ("service stable", self.service_stable),
            ("service runs the stack's task definition", self.service_runs_stack_task_definition),
            ("tasks in the intended subnets", self.tasks_in_intended_subnets),
            ("public IP as intended", self.public_ip_setting),
            ("credential from secrets, not environment", self.credential_from_secrets),
            ("credential secret exists", self.secret_exists),
            ("worker start line in the logs", self.worker_start_logged),
            ("worker ONLINE in Prefect", self.prefect_worker_online),
        ]

    def run(self) -> list[Result]:
        results = []
        for name, check in self.checks():
            try:
                evidence = check()
                results.append(Result(None, name, "skipped: no --prefect-api-url")
                               if evidence is None else Result(True, name, evidence))
            except Failed as failure:
                results.append(Result(False, name, str(failure)))
            except Exception as error:  # an API error is a failed check, not a crash
                results.append(Result(False, name, f"{type(error).__name__}: {error}"))
        return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="read `pulumi stack output --json` of this stack")
    source.add_argument("--outputs", help="a JSON file holding the stack's outputs")
    parser.add_argument("--region", help="AWS region (default: the cluster ARN's)")
    parser.add_argument("--prefect-api-url", default=os.environ.get("PREFECT_API_URL"),
                        help="Prefect API URL (default: $PREFECT_API_URL); the credential is "
                             "read from $PREFECT_API_KEY or $PREFECT_API_AUTH_STRING")
    args = parser.parse_args(argv)
    outputs = load_outputs(args.stack, args.outputs)
    results = Verifier(outputs, args.region, args.prefect_api_url).run()
    for result in results:
        print(result.line())
    failed = [r for r in results if r.ok is False]
    skipped = sum(r.ok is None for r in results)
    print(f"{len(failed)} of {len(results)} checks failed" if failed
          else f"all checks passed ({skipped} skipped)" if skipped else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
