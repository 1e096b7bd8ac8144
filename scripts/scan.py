"""A stack's evaluated resources as a Terraform plan (`terraform show -json`), for checkov.

checkov reads Terraform and CloudFormation, not Pulumi. pulumi-aws is bridged from the Terraform
AWS provider, so each resource is a Terraform resource under another name (`aws:rds/instance:
Instance` is `aws_db_instance`) with the same attributes in camelCase: the mock engine's
evaluation (tools/mock_engine.py) converts one to one. Blocks that Pulumi gives as one object are
lists of one object in a plan; a reference (an input equal to another resource's mock id, ARN or
name) becomes a configuration `references` entry, so checkov's graph checks see which bucket a
policy or an encryption configuration belongs to. Components and awsx's VPC (whose children the
mocks never see) are left out.

    python -m scripts.scan STACK [--out plan.json]      # write the plan
    checkov -f plan.json --framework terraform_plan   # scan it (tests/tooling/test_scan.py)

The findings the stacks keep on purpose, each with its reason, are in `TRIAGE` (one home; the
table in docs/hardening.md is generated from it).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from tools.mock_engine import Declared, Evaluation, evaluate_stack

# Pulumi module/Type -> Terraform type, where it is not `aws_<module>_<type in snake case>`.
TERRAFORM_TYPES = {
    "aws:ec2/securityGroup:SecurityGroup": "aws_security_group",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "aws_default_security_group",
    "aws:ec2/flowLog:FlowLog": "aws_flow_log",
    "aws:rds/instance:Instance": "aws_db_instance",
    "aws:rds/subnetGroup:SubnetGroup": "aws_db_subnet_group",
    "aws:rds/parameterGroup:ParameterGroup": "aws_db_parameter_group",
    "aws:lb/loadBalancer:LoadBalancer": "aws_lb",
    "aws:lb/listener:Listener": "aws_lb_listener",
    "aws:lb/targetGroup:TargetGroup": "aws_lb_target_group",
    "aws:s3/bucket:Bucket": "aws_s3_bucket",
    "aws:s3/bucketV2:BucketV2": "aws_s3_bucket",
    "aws:sfn/stateMachine:StateMachine": "aws_sfn_state_machine",
    "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace":
        "aws_service_discovery_private_dns_namespace",
    "aws:servicediscovery/service:Service": "aws_service_discovery_service",
    "aws:appautoscaling/target:Target": "aws_appautoscaling_target",
    "aws:appautoscaling/policy:Policy": "aws_appautoscaling_policy",
    "aws:route53/record:Record": "aws_route53_record",
    "aws:acm/certificate:Certificate": "aws_acm_certificate",
    "aws:acm/certificateValidation:CertificateValidation": "aws_acm_certificate_validation",
    "aws:sns/topicSubscription:TopicSubscription": "aws_sns_topic_subscription",
}
# Terraform map attributes (not blocks): kept as objects.
MAP_ATTRIBUTES = {"tags", "tags_all", "dimensions", "options", "parameters_map", "variables"}
PROVIDER = "registry.terraform.io/hashicorp/aws"


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def terraform_type(token: str) -> Optional[str]:
    """`aws:ecs/cluster:Cluster` -> `aws_ecs_cluster`; None for what is not an AWS resource."""
    if token in TERRAFORM_TYPES:
        return TERRAFORM_TYPES[token]
    match = re.fullmatch(r"aws:([a-z0-9]+)/([A-Za-z0-9]+):[A-Za-z0-9]+", token)
    if not match:
        return None
    module, kind = match.groups()
    return f"aws_{module}_{snake(kind)}"


def _unsecret(value: Any) -> Any:
    if isinstance(value, dict):
        if "4dabf18193072939515e22adb298388d" in value:
            return "(secret)"
        return {k: _unsecret(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsecret(v) for v in value]
    return value


# Repeated blocks Pulumi names in the plural where Terraform's name already is.
PLURAL_BLOCKS = {"ingress", "egress", "dns_records"}


def block_name(name: str) -> str:
    """Pulumi names a repeated block in the plural (`rules`), Terraform in the singular (`rule`)."""
    if name in PLURAL_BLOCKS or not name.endswith("s"):
        return name
    return name[:-3] + "y" if name.endswith("ies") else name[:-1]


def terraform_values(inputs: dict[str, Any]) -> dict[str, Any]:
    """camelCase inputs as a plan's values: snake_case keys, one-object blocks as lists."""
    values: dict[str, Any] = {}
    for key, value in _unsecret(inputs).items():
        name = snake(key)
        if isinstance(value, dict) and name not in MAP_ATTRIBUTES:
            value = [terraform_values(value)]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            name = block_name(name)
            value = [terraform_values(v) for v in value]
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        values[name] = value
    return values


def _address(type_: str, declared: Declared) -> str:
    return f"{type_}.{re.sub(r'[^A-Za-z0-9_-]', '_', declared.name)}"


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def plan(evaluation: Evaluation) -> dict[str, Any]:
    """The `terraform show -json` document checkov's terraform_plan framework reads."""
    resources, configuration = [], []
    known: dict[str, str] = {}
    converted = [(terraform_type(r.type), r) for r in evaluation.resources]
    for type_, declared in converted:
        if type_ is None:
            continue
        address = _address(type_, declared)
        for value in (declared.id, declared.outputs.get("arn"), declared.outputs.get("id"),
                      declared.outputs.get("name"), declared.outputs.get("dnsName"),
                      declared.inputs.get("bucket")):
            if isinstance(value, str) and len(value) > 8:
                known.setdefault(value, address)
    for type_, declared in converted:
        if type_ is None:
            continue
        address = _address(type_, declared)
        # Another resource's id or ARN is unknown in a real plan (null, with a reference in the
        # configuration): checkov links the two resources by that reference.
        inputs = {key: (None if isinstance(value, str) and value in known else
                        [None if isinstance(v, str) and v in known else v for v in value]
                        if isinstance(value, list) and any(isinstance(v, str) and v in known
                                                           for v in value) else value)
                  for key, value in declared.inputs.items()}
        values = terraform_values(inputs)
        resources.append({"address": address, "mode": "managed", "type": type_,
                          "name": address.split(".", 1)[1], "provider_name": PROVIDER,
                          "schema_version": 0, "values": values})
        expressions: dict[str, Any] = {}
        for key, value in declared.inputs.items():
            refs = sorted({known[s] for s in _strings(value) if s in known and known[s] != address})
            if refs:
                expressions[snake(key)] = {"references": [f"{r}.id" for r in refs] + refs}
        configuration.append({"address": address, "mode": "managed", "type": type_,
                              "name": address.split(".", 1)[1],
                              "provider_config_key": "aws", "expressions": expressions})
    return {
        "format_version": "1.2",
        "terraform_version": "1.9.8",
        "planned_values": {"root_module": {"resources": resources}},
        "resource_changes": [{"address": r["address"], "mode": "managed", "type": r["type"],
                              "name": r["name"], "provider_name": PROVIDER,
                              "change": {"actions": ["create"], "before": None,
                                         "after": r["values"], "after_unknown": {}}}
                             for r in resources],
        "configuration": {"provider_config": {"aws": {"name": "aws",
                                                      "full_name": PROVIDER}},
                          "root_module": {"resources": configuration}},
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stack")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    document = json.dumps(plan(evaluate_stack(args.stack)), indent=1, default=str)
    if args.out:
        args.out.write_text(document)
    else:
        print(document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
