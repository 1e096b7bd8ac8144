"""EventBridge's content filtering, enough to check this stack's rules against sample events.

moto's matcher does not descend into arrays of objects (ECS puts exit codes in
`detail.containers[]`), so the rules are checked with this one, written from the EventBridge
pattern reference: a field matches if any of its values matches any of the pattern's filters, and
a pattern object applied to an array of objects matches if any element matches.
"""

from __future__ import annotations

import operator
from typing import Any

MISSING = object()
_NUMERIC = {"<": operator.lt, "<=": operator.le, "=": operator.eq, ">=": operator.ge,
            ">": operator.gt}


def matches(pattern: dict[str, Any], event: Any) -> bool:
    if isinstance(event, list):
        return any(matches(pattern, item) for item in event)
    if not isinstance(event, dict):
        return False
    for key, sub in pattern.items():
        value = event.get(key, MISSING)
        if isinstance(sub, dict):
            if not matches(sub, value):
                return False
        elif not _field_matches(sub, value):
            return False
    return True


def _field_matches(filters: list[Any], value: Any) -> bool:
    if value is MISSING:
        return False
    values = value if isinstance(value, list) else [value]
    return any(_filter_matches(f, v) for f in filters for v in values)


def _filter_matches(rule: Any, value: Any) -> bool:
    if not isinstance(rule, dict):
        # JSON true is not 1: EventBridge compares types as well as values.
        return value == rule and isinstance(value, bool) == isinstance(rule, bool)
    (name, arg), = rule.items()
    if name == "prefix":
        return isinstance(value, str) and value.startswith(arg)
    if name == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        pairs = zip(arg[::2], arg[1::2], strict=False)
        return all(_NUMERIC[op](value, bound) for op, bound in pairs)
    if name == "anything-but":
        excluded = arg if isinstance(arg, list) else [arg]
        return value not in excluded
    if name == "exists":
        return bool(arg)
    raise ValueError(f"filter {name} is not supported here")
