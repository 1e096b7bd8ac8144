"""An offline plan: what a stack file declares, whether it keeps the security rules, and what it
would cost a month, with no Pulumi CLI and no AWS credentials.

It runs `__main__.py` under the mock engine the tests also use (tools/mock_engine.py), with the
stack file merged over Pulumi.yaml's defaults the way the CLI merges them and a placeholder Prefect
URL and key. It is a declaration, not a diff against AWS: nothing is read from an account, and what
AWS would compute (ids, ARNs) is made up by the mocks.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from policies import worker_rules
from tools.cost import Estimate, PriceTable, estimate, render
from tools.mock_engine import Evaluation, evaluate_stack, whole_numbers

# The few properties a reviewer looks at, per type; nested paths use dots.
KEY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "awsx:ec2:Vpc": ("cidrBlock", "numberOfAvailabilityZones", "natGateways.strategy"),
    "aws:ec2/securityGroup:SecurityGroup": ("description", "ingress", "egress"),
    "aws:ecs/cluster:Cluster": ("name", "settings"),
    "aws:ecs/service:Service": ("desiredCount", "capacityProviderStrategies",
                                "networkConfiguration.assignPublicIp"),
    "aws:ecs/taskDefinition:TaskDefinition": ("family", "cpu", "memory",
                                              "runtimePlatform.cpuArchitecture", "image"),
    "aws:cloudwatch/logGroup:LogGroup": ("name", "retentionInDays"),
    "aws:secretsmanager/secret:Secret": ("recoveryWindowInDays",),
    "aws:iam/role:Role": ("description",),
    "aws:iam/rolePolicy:RolePolicy": ("actions",),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ("policyArn",),
    "aws:appautoscaling/target:Target": ("minCapacity", "maxCapacity"),
    "aws:appautoscaling/policy:Policy": (
        "targetTrackingScalingPolicyConfiguration.predefinedMetricSpecification"
        ".predefinedMetricType",
        "targetTrackingScalingPolicyConfiguration.targetValue"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("name", "metricName", "threshold"),
    "aws:cloudwatch/eventRule:EventRule": ("name",),
    "aws:sns/topic:Topic": ("name", "kmsMasterKeyId"),
    "aws:kms/key:Key": ("enableKeyRotation",),
}


@dataclass(frozen=True)
class Plan:
    stack: str
    resources: tuple[tuple[str, str, Mapping[str, Any]], ...]
    policy_results: Mapping[str, list[str]]
    cost: Estimate
    prices: PriceTable

    @property
    def declared(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [(type_, inputs) for type_, _, inputs in self.resources]

    @property
    def violations(self) -> dict[str, list[str]]:
        return {name: found for name, found in self.policy_results.items() if found}


def make_plan(stack: str, prices: Optional[PriceTable] = None,
              evaluate: Callable[[str], Evaluation] = evaluate_stack) -> Plan:
    """`evaluate`: how the stack is evaluated; the tests pass their session's shared evaluations."""
    prices = prices or PriceTable.load()
    evaluation = evaluate(stack)
    resources = tuple((r.type, r.name, r.inputs) for r in evaluation.resources)
    declared = [(type_, inputs) for type_, _, inputs in resources]
    return Plan(stack, resources, worker_rules.evaluate(declared), estimate(declared, prices), prices)


def _lookup(inputs: Mapping[str, Any], path: str) -> Any:
    value: Any = inputs
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def key_properties(type_: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for path in KEY_PROPERTIES.get(type_, ()):
        if path == "image":
            shown[path] = [c.get("image") for c in json.loads(inputs["containerDefinitions"])]
        elif path == "actions":
            document = json.loads(inputs["policy"])
            shown[path] = sorted({a for s in document["Statement"]
                                  for a in ([s["Action"]] if isinstance(s["Action"], str)
                                            else s["Action"])})
        elif path in ("ingress", "egress"):
            rules = inputs.get(path) or []
            shown[path] = [f"{r.get('protocol')} {int(r.get('fromPort', 0))}-{int(r.get('toPort', 0))} "
                           f"{','.join(r.get('cidrBlocks') or [])}" for r in rules]
        else:
            value = _lookup(inputs, path)
            if value is not None:
                shown[path.rsplit(".", 1)[-1]] = whole_numbers(value)
    return shown


def render_plan(plan: Plan) -> str:
    lines = [
        f"Offline plan for stack '{plan.stack}': what the program declares under the mock engine "
        "with this stack file.",
        "A declaration, not a diff against AWS: no account is read; ids and ARNs are made up; the "
        "Prefect URL and key are placeholders.",
        "",
        f"Resources ({len(plan.resources)}):",
    ]
    for type_, name, inputs in sorted(plan.resources, key=lambda r: (r[0], r[1])):
        props = key_properties(type_, inputs)
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in props.items())
        lines.append(f"  {type_:<56} {name:<40} {shown}".rstrip())
    lines += ["", "Policy pack (policies/worker_rules.py):"]
    for rule, found in plan.policy_results.items():
        lines.append(f"  {'FAIL' if found else 'pass'}  {rule}")
        lines += [f"        {message}" for message in found]
    lines += ["", *render(plan.cost, plan.prices)]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="dev, staging, prod (Pulumi.<stack>.yaml) or seed "
                        "(examples/Pulumi.seed.yaml)")
    args = parser.parse_args(argv)
    plan = make_plan(args.stack)
    print(render_plan(plan))
    return 1 if plan.violations else 0


if __name__ == "__main__":
    sys.exit(main())
