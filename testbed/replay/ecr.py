"""Replay handlers for ECR: the repository, its lifecycle policy and its repository policy.

moto checks a lifecycle policy's enum values and a repository policy's JSON; AWS also checks the
rules below (Amazon ECR User Guide, "Lifecycle policy properties",
https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html), and that
every principal of a repository policy exists (testbed/replay/resource_policy.py).
"""

from __future__ import annotations

import json
from typing import Any

from tools.mock_engine import Declared
from testbed.replay.core import HANDLERS, Inputs, Replay, ReplayError, aws_tags
from testbed.replay.resource_policy import check_resource_policy

LIFECYCLE_REFUSAL = "InvalidParameterException: Lifecycle policy validation failure"
POLICY_REFUSAL = "InvalidParameterException: Invalid repository policy provided"
COUNT_TYPES = ("imageCountMoreThan", "sinceImagePushed")
MAX_WILDCARDS = 4


def lifecycle_problems(document: dict[str, Any]) -> list[str]:
    """What AWS's lifecycle policy schema refuses beyond the enum values moto checks."""
    problems = []
    rules = document.get("rules") or []
    if not rules:
        problems.append("a policy needs at least one rule")
    priorities = [rule.get("rulePriority") for rule in rules]
    if any(not isinstance(p, int) or isinstance(p, bool) or p < 1 for p in priorities):
        problems.append(f"rulePriority must be a whole number of 1 or more: {priorities}")
    if len(set(map(str, priorities))) != len(priorities):
        problems.append(f"rulePriority values must be unique: {priorities}")
    highest = max((p for p in priorities if isinstance(p, int)), default=0)
    for rule in rules:
        selection = rule.get("selection") or {}
        status, count_type = selection.get("tagStatus"), selection.get("countType")
        where = f"rule {rule.get('rulePriority')}"
        prefixes, patterns = selection.get("tagPrefixList"), selection.get("tagPatternList")
        if status == "tagged" and not (prefixes or patterns):
            problems.append(f"{where}: tagStatus tagged needs tagPrefixList or tagPatternList")
        if prefixes and patterns:
            problems.append(f"{where}: tagPrefixList and tagPatternList exclude each other")
        if status != "tagged" and (prefixes or patterns):
            problems.append(f"{where}: tag lists apply to tagStatus tagged only")
        if any(str(p).count("*") > MAX_WILDCARDS for p in patterns or []):
            problems.append(f"{where}: a tag pattern has at most {MAX_WILDCARDS} wildcards")
        if status == "any" and rule.get("rulePriority") != highest:
            problems.append(f"{where}: a tagStatus any rule must have the highest rulePriority")
        if count_type == "sinceImagePushed" and selection.get("countUnit") != "days":
            problems.append(f"{where}: countType sinceImagePushed needs countUnit days")
        if count_type == "imageCountMoreThan" and "countUnit" in selection:
            problems.append(f"{where}: countType imageCountMoreThan takes no countUnit")
        number = selection.get("countNumber")
        if not isinstance(number, int) or isinstance(number, bool):
            problems.append(f"{where}: countNumber must be a whole number, not {number!r}")
    return problems


def ecr_repository(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    request: dict[str, Any] = {"repositoryName": inputs.require("name"),
                               "tags": aws_tags(inputs.get("tags"))}
    inputs.copy(request, {"imageTagMutability": "imageTagMutability"})
    scanning = inputs.get("imageScanningConfiguration")
    if scanning is not None:
        request["imageScanningConfiguration"] = {"scanOnPush": bool(scanning.get("scanOnPush"))}
    encryption = inputs.get("encryptionConfigurations") or []
    if len(encryption) > 1:
        raise ReplayError(resource, "a repository has one encryption configuration")
    if encryption:
        kind, key = encryption[0].get("encryptionType", "AES256"), encryption[0].get("kmsKey")
        if key and kind == "AES256":
            raise ReplayError(resource, "InvalidParameterException: a KMS key needs "
                                        "encryptionType KMS")
        request["encryptionConfiguration"] = {"encryptionType": kind,
                                              **({"kmsKey": key} if key else {})}
    filters = inputs.get("imageTagMutabilityExclusionFilters")
    if filters:
        request["imageTagMutabilityExclusionFilters"] = [
            {"filterType": f["filterType"], "filter": f["filter"]} for f in filters]
    # Applies when the repository is deleted (delete it with its images), not at create.
    inputs.engine_side("forceDelete")
    repository = replay.client("ecr").create_repository(**request)["repository"]
    replay.map(resource.id, repository["repositoryName"])
    return {"name": repository["repositoryName"], "arn": repository["repositoryArn"],
            "uri": repository["repositoryUri"]}


def ecr_lifecycle_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    text = inputs.require("policy")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReplayError(resource, f"{LIFECYCLE_REFUSAL}: not JSON ({error})") from error
    problems = lifecycle_problems(document)
    if problems:
        raise ReplayError(resource, f"{LIFECYCLE_REFUSAL}: " + "; ".join(problems))
    name = inputs.require("repository")
    replay.client("ecr").put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=text)
    return {"repository": name}


def ecr_repository_policy(replay: Replay, resource: Declared, inputs: Inputs) -> dict[str, Any]:
    text = inputs.require("policy")
    check_resource_policy(replay, resource, text, POLICY_REFUSAL, has_resource=False)
    name = inputs.require("repository")
    replay.client("ecr").set_repository_policy(repositoryName=name, policyText=text)
    return {"repository": name}


HANDLERS.update({
    "aws:ecr/repository:Repository": ecr_repository,
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": ecr_lifecycle_policy,
    "aws:ecr/repositoryPolicy:RepositoryPolicy": ecr_repository_policy,
})
