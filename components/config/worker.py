"""The worker's own keys: its work pool and queues, its task's platform, the flow runs' IAM
policies and the stack's tags."""

from __future__ import annotations

import re
from typing import Literal

from components.config.reader import ConfigError

CpuArchitecture = Literal["X86_64", "ARM64"]
CapacityProvider = Literal["FARGATE", "FARGATE_SPOT"]

MAX_WORKERS = 10
# Prefect refuses these characters in object names (prefect.types.BANNED_CHARACTERS).
PREFECT_BANNED_CHARACTERS = ("/", "%", "&", ">", "<")
POLICY_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(aws|\d{12}):policy/[A-Za-z0-9/_+=,.@-]+$")
TAG_KEY = re.compile(r"^[\w.:/=+\-@ ]{1,128}$", re.UNICODE)
# Prefect caps a pool's concurrent runs with any whole number; 0 here means "no limit".
MAX_WORK_POOL_CONCURRENCY = 10_000


def parse_work_pool_name(name: str) -> str:
    banned = [c for c in PREFECT_BANNED_CHARACTERS if c in name]
    if banned or name.strip() != name or len(name) > 255 or name.lower().startswith("prefect"):
        raise ConfigError(
            "workPoolName", name,
            "1-255 characters without / % & > < or surrounding spaces, not starting with "
            "'prefect' (Prefect reserves that prefix)",
        )
    return name


def parse_work_queues(queues: tuple[str, ...]) -> tuple[str, ...]:
    for queue in queues:
        if any(c in queue for c in PREFECT_BANNED_CHARACTERS) or queue.strip() != queue:
            raise ConfigError("workQueues", list(queues),
                              "queue names without / % & > < or surrounding spaces")
    if len(set(queues)) != len(queues):
        raise ConfigError("workQueues", list(queues), "a list without duplicates")
    return queues


def parse_policy_arns(arns: tuple[str, ...]) -> tuple[str, ...]:
    bad = [a for a in arns if not POLICY_ARN.match(a)]
    if bad:
        raise ConfigError("flowRunPolicyArns", list(arns),
                          "IAM policy ARNs, arn:aws:iam::<account or aws>:policy/<name>")
    if "arn:aws:iam::aws:policy/AdministratorAccess" in arns:
        raise ConfigError("flowRunPolicyArns", list(arns),
                          "policies narrower than AdministratorAccess: flow code runs with them")
    return arns


def parse_tags(entries: tuple[str, ...], project: str, stack: str) -> dict[str, str]:
    accepted = ("Key=Value entries, keys of 1-128 characters not starting with 'aws:', values up "
                "to 256 characters, each key once")
    tags: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if (not sep or key in tags or key.lower().startswith("aws:") or not TAG_KEY.match(key)
                or len(value) > 256):
            raise ConfigError("tags", list(entries), accepted)
        tags[key] = value
    return {"project": project, "stack": stack, "managed-by": "pulumi", **tags}
