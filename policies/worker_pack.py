"""CrossGuard adapter: each rule of `worker_rules` as a mandatory Pulumi policy.

The policy SDK hands over properties as read-only proxies (secrets already unwrapped); they are
copied into plain dicts and lists, the shape the rules and the unit tests use. A property that is
still unknown during preview raises the SDK's UnknownValueError while copying, and the SDK then
skips that resource for this policy instead of failing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (EnforcementLevel, ReportViolation, ResourceValidationArgs,
                           ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy)

from worker_rules import RESOURCE_RULES, STACK_RULES, ResourceRule, StackRule

PACK_NAME = "prefect-ecs-worker-security"


def plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: plain(value[key]) for key in value}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(item) for item in value]
    return value


def resource_policy(rule: ResourceRule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in rule.types:
            return
        for message in rule(args.resource_type, plain(args.props)):
            report_violation(message, None)

    return ResourceValidationPolicy(name=rule.name, description=rule.description,
                                    validate=validate,
                                    enforcement_level=EnforcementLevel.MANDATORY)


def stack_policy(rule: StackRule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [(r.resource_type, plain(r.props)) for r in args.resources]
        for message in rule(resources):
            report_violation(message, None)

    return StackValidationPolicy(name=rule.name, description=rule.description, validate=validate,
                                 enforcement_level=EnforcementLevel.MANDATORY)


def policies() -> list:
    return [*map(resource_policy, RESOURCE_RULES), *map(stack_policy, STACK_RULES)]
