"""The ECS work pool's base job template: prefect-aws's own, with this stack's defaults filled in.

`templates/ecs-base-job-template.json` is a verbatim copy of what prefect-aws produces (the version
is recorded in the file; `scripts/refresh_job_template.py` regenerates it). The stack changes only
variable defaults, so a deployment that passes no job variables runs in this stack's cluster,
subnets, security group and roles, with the Prefect credential from Secrets Manager and its logs in
the stack's log group. Two additions to the job configuration's container: a `memory` equal to
the task's (harmless on Fargate, and required by EC2 capacity and by moto, which the tests run on),
and the JSON logging variables. The worker passes only Prefect *settings* on to flow-run tasks and
the logging handler overrides are not settings, so without them flow runs would log plain text; in
the task definition (not the `env` variable) they stay when a deployment sets its own `env`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pulumi

from components.platform.fargate import JSON_LOGGING_ENVIRONMENT, awslogs

TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "ecs-base-job-template.json"
# Streams are `<prefix>/<container>/<ECS task id>`: one stream per flow run. A run id in the
# prefix itself would register a new task-definition revision for every run (Prefect #16485).
FLOW_RUN_STREAM_PREFIX = "flow-run"


def upstream_document() -> dict[str, Any]:
    return json.loads(TEMPLATE_PATH.read_text())


def upstream_template() -> dict[str, Any]:
    return upstream_document()["base_job_template"]


@dataclass(frozen=True)
class FlowRunDefaults:
    """Where and how a flow run starts when its deployment sets nothing."""

    cluster_arn: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    security_group_id: pulumi.Input[str]
    assign_public_ip: bool
    execution_role_arn: pulumi.Input[str]
    task_role_arn: pulumi.Input[str]
    credential_env_name: str
    credential_secret_arn: pulumi.Input[str]
    log_group_name: str
    region: pulumi.Input[str]
    capacity_provider: str
    cpu: int
    memory: int
    image: pulumi.Input[str]

    def job_variables(self) -> pulumi.Output[dict[str, Any]]:
        secret_variable = (
            "prefect_api_key_secret_arn" if self.credential_env_name == "PREFECT_API_KEY"
            else "prefect_api_auth_string_secret_arn"
        )
        return pulumi.Output.all(
            cluster=self.cluster_arn,
            vpc_id=self.vpc_id,
            subnets=self.subnet_ids,
            security_group=self.security_group_id,
            execution_role_arn=self.execution_role_arn,
            task_role_arn=self.task_role_arn,
            secret_arn=self.credential_secret_arn,
            region=self.region,
            image=self.image,
        ).apply(lambda v: {
            "cluster": v["cluster"],
            "vpc_id": v["vpc_id"],
            "network_configuration": {
                "subnets": list(v["subnets"]),
                "securityGroups": [v["security_group"]],
                "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
            },
            "execution_role_arn": v["execution_role_arn"],
            "task_role_arn": v["task_role_arn"],
            # The flow-run container gets the credential from Secrets Manager, and the worker
            # drops its own copy from the task's plain environment (Prefect #16232).
            secret_variable: v["secret_arn"],
            "configure_cloudwatch_logs": True,
            "cloudwatch_logs_options": {
                **awslogs(self.log_group_name, v["region"], FLOW_RUN_STREAM_PREFIX)["options"],
                # The stack owns the group; creating groups would need logs:CreateLogGroup.
                "awslogs-create-group": "false",
            },
            # Reuse the family's latest revision when it matches instead of registering one per
            # run (Prefect #16485).
            "match_latest_revision_in_family": True,
            "capacity_provider_strategy": [
                {"capacityProvider": self.capacity_provider, "weight": 1, "base": 0}
            ],
            "cpu": self.cpu,
            "memory": self.memory,
            "image": v["image"],
        })

    def base_job_template(self) -> pulumi.Output[dict[str, Any]]:
        return self.job_variables().apply(base_job_template)


def base_job_template(defaults: dict[str, Any]) -> dict[str, Any]:
    """prefect-aws's template with these variable defaults, a container-level memory and the JSON
    logging variables."""
    template = copy.deepcopy(upstream_template())
    properties = template["variables"]["properties"]
    unknown = sorted(set(defaults) - set(properties))
    if unknown:
        raise ValueError(f"prefect-aws's ECS template has no variables {unknown}")
    for name, value in defaults.items():
        properties[name]["default"] = value
    container = template["job_configuration"]["task_definition"]["containerDefinitions"][0]
    container.setdefault("memory", "{{ memory }}")
    container.setdefault("environment", [
        {"name": name, "value": value} for name, value in JSON_LOGGING_ENVIRONMENT])
    return template
