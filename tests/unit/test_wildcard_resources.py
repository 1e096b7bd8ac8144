"""Every IAM `*` resource in the program carries a comment with the AWS reason it cannot be
narrower: a `"Resource"` whose value holds a `*` (the whole of "*", or an ARN or prefix ending in
one), in any policy any module of components/ builds, identity or resource policy alike."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.harness import ROOT
from tests.support.sources import nodes, source

# A reason sits on the lines just above the key (or the dict's opening lines), or on the line.
REASON_WINDOW = 4


def wildcard_resources(path: Path) -> list[int]:
    """The line of each `"Resource": <value with a *>` in a dict literal of this module."""
    text = source(path)
    lines = []
    for node in nodes(path):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values, strict=True):
            if (isinstance(key, ast.Constant) and key.value == "Resource"
                    and "*" in (ast.get_source_segment(text, value) or "")):
                lines.append(key.lineno)
    return lines


def unexplained(path: Path) -> list[int]:
    text = source(path).splitlines()
    return [line for line in wildcard_resources(path)
            if not any("#" in row for row in text[max(0, line - 1 - REASON_WINDOW):line])]


PROGRAM = sorted((ROOT / "components").rglob("*.py"))


def test_every_wildcard_resource_of_the_program_says_why():
    found = {path.relative_to(ROOT).as_posix(): wildcard_resources(path) for path in PROGRAM}
    # The scan reaches every module that grants on a wildcard, the key policies included.
    assert {"components/worker/iam.py", "components/worker/alarms.py",
            "components/platform/stack_key.py", "components/platform/flow_code.py",
            "components/platform/vpc_hardening.py", "components/server/server.py",
            "components/server/composition.py"} <= {name for name, lines in found.items() if lines}
    missing = {name: unexplained(ROOT / name) for name in found if unexplained(ROOT / name)}
    assert not missing, f"a * resource without the AWS reason above it: {missing}"


def test_the_scan_flags_an_unexplained_wildcard(tmp_path):
    module = tmp_path / "policy.py"
    module.write_text('STATEMENT = {\n    "Action": "s3:GetObject",\n    "Resource": f"{ARN}/*",\n}\n'
                      'EXPLAINED = {\n    # AWS: the action has no resource type.\n'
                      '    "Resource": "*",\n}\n')
    assert wildcard_resources(module) == [3, 7]
    assert unexplained(module) == [3]
