"""What AWS checks in a resource policy (an ECR repository policy, an S3 bucket policy) that moto
does not: the grammar, and that every principal the policy names exists.

AWS resolves each IAM principal ARN to the principal's unique id when the policy is saved, and
refuses the policy when it cannot ("Invalid principal in policy" from S3, "Invalid repository policy
provided" from ECR): IAM User Guide, "AWS JSON policy elements: Principal", section "IAM role
principals". moto stores the ARN as text. Principals in the replay's own account are looked up in
moto's IAM; a principal in another account cannot be checked here and is reported as such.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tools.mock_engine import Declared
from testbed.replay.core import Replay, ReplayError

PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):(role|user)/(?:.*/)?([^/]+)$")


def principals(document: dict[str, Any]) -> list[str]:
    """Every "AWS" principal the policy names, "*" included."""
    named = []
    for statement in document.get("Statement", []):
        principal = statement.get("Principal")
        if principal == "*":
            named.append("*")
        elif isinstance(principal, dict):
            values = principal.get("AWS", [])
            named += [values] if isinstance(values, str) else list(values)
    return named


def check_grammar(resource: Declared, text: str, refusal: str, *, has_resource: bool) -> None:
    """moto's IAM policy validator (the one CreatePolicy uses). A repository policy applies to its
    repository and names no Resource, as moto's ECR itself allows."""
    from moto.iam.exceptions import MalformedPolicyDocument
    from moto.iam.policy_validation import IAMPolicyDocumentValidator

    validator = IAMPolicyDocumentValidator(text)
    if not has_resource:
        validator._validate_resource_exist = lambda: None  # type: ignore[method-assign]
    try:
        validator.validate()
    except MalformedPolicyDocument as error:
        raise ReplayError(resource, f"{refusal}: {error.message}") from error


def check_resource_policy(replay: Replay, resource: Declared, text: str, refusal: str, *,
                          has_resource: bool = True) -> None:
    """Grammar, then each principal of the replay's account must exist; `refusal` is the error
    the service answers with."""
    check_grammar(resource, text, refusal, has_resource=has_resource)
    account = replay.account()
    iam = replay.client("iam")
    for principal in principals(json.loads(text)):
        if principal == "*" or re.fullmatch(r"\d{12}", principal):
            continue
        match = PRINCIPAL_ARN.match(principal)
        if match is None:
            if principal.endswith(":root"):
                continue
            raise ReplayError(resource, f"{refusal}: {principal!r} is not a principal ARN")
        principal_account, kind, name = match.groups()
        if principal_account != account:
            raise ReplayError(resource, f"{refusal}: {principal} is in account "
                                        f"{principal_account}, which this replay cannot check")
        try:
            if kind == "role":
                iam.get_role(RoleName=name)
            else:
                iam.get_user(UserName=name)
        except iam.exceptions.NoSuchEntityException:
            raise ReplayError(resource, f"{refusal}: the principal {principal} does not "
                                        f"exist") from None
