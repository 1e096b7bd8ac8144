"""The checks AWS makes on a request and moto does not: the replay's one emulation of AWS behaviour.

moto accepts what botocore's model accepts and stores it; AWS also validates values against rules
written in its API references and guides. Each rule here is one function named after what it
protects, its docstring linking the document it follows, and it raises `ReplayError` for the
resource with the error AWS would return. The service modules (`ec2.py`, `sqs.py`...) translate
inputs to API calls and call these before the call moto would accept.

What awsx checks itself at deploy time (NAT strategy, subnet room) stays with the awsx emulation in
`ec2.py`: those are awsx's rules, not AWS's.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from tools.mock_engine import Declared
from testbed.replay.core import ReplayError


def policy_grammar(resource: Declared, document: str) -> None:
    """A resource policy (SQS queue, SNS topic, KMS key) follows the IAM policy grammar, which AWS
    validates on write; moto's SQS and SNS only parse the JSON, so moto's IAM validator (the one
    CreatePolicy uses) stands in.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html"""
    from moto.iam.exceptions import MalformedPolicyDocument
    from moto.iam.policy_validation import IAMPolicyDocumentValidator

    try:
        IAMPolicyDocumentValidator(document).validate()
    except MalformedPolicyDocument as error:
        raise ReplayError(resource, f"MalformedPolicyDocument: {error.message}") from error


# --- KMS ------------------------------------------------------------------------------------------

def _allows_account_to_manage_key(document: dict[str, Any], account: str) -> bool:
    root = {f"arn:aws:iam::{account}:root", account}
    for statement in document.get("Statement", []):
        principals = (statement.get("Principal") or {})
        principals = principals.get("AWS", []) if isinstance(principals, dict) else principals
        principals = [principals] if isinstance(principals, str) else principals
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if (statement.get("Effect") == "Allow" and (root & set(principals) or "*" in principals)
                and {"kms:*", "kms:PutKeyPolicy", "*"} & set(actions)):
            return True
    return False


def kms_key_policy_lockout(resource: Declared, document: dict[str, Any], account: str) -> None:
    """CreateKey refuses a key policy that would not let the caller (here the account) change the
    policy later, unless BypassPolicyLockoutSafetyCheck is set (the caller skips this rule then);
    moto stores any key policy.
    https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateKey.html#KMS-CreateKey-request-BypassPolicyLockoutSafetyCheck"""
    if not _allows_account_to_manage_key(document, account):
        raise ReplayError(resource, "MalformedPolicyDocumentException: the key policy would "
                                    "not let the account change it later (CreateKey's lockout "
                                    "safety check)")


def kms_deletion_window(resource: Declared, window: Optional[int]) -> None:
    """ScheduleKeyDeletion, which the provider calls on delete, accepts a window of 7 to 30 days.
    https://docs.aws.amazon.com/kms/latest/APIReference/API_ScheduleKeyDeletion.html#KMS-ScheduleKeyDeletion-request-PendingWindowInDays"""
    if window is not None and not 7 <= window <= 30:
        raise ReplayError(resource, f"deletionWindowInDays = {window} is outside 7..30")


# --- RDS ------------------------------------------------------------------------------------------

def rds_snapshot_key_usable(resource: Declared, snapshot: str, key_id: Optional[str],
                            key_state: Optional[str]) -> None:
    """Copying or restoring an encrypted DB snapshot uses its KMS key; RDS fails with
    KMSKeyNotAccessibleFault when that key is disabled or pending deletion (a key pending deletion
    can be used in no cryptographic operation). moto copies and restores regardless.
    https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CopyDBSnapshot.html#API_CopyDBSnapshot_Errors
    https://docs.aws.amazon.com/kms/latest/developerguide/deleting-keys.html"""
    if key_id is not None and key_state != "Enabled":
        raise ReplayError(resource, f"KMSKeyNotAccessibleFault: snapshot {snapshot!r} is "
                                    f"encrypted with {key_id}, which is {key_state}")


def rds_restored_key_is_declared(resource: Declared, snapshot: str, snapshot_key: Optional[str],
                                 declared_key: Optional[str]) -> None:
    """RestoreDBInstanceFromDBSnapshot takes no KMS key: the instance is encrypted with its
    snapshot's. The provider sends no `kmsKeyId` then, reads the snapshot's back, and since
    `kmsKeyId` forces a new instance, plans to replace the database at every `pulumi up` when the
    declared key differs. (Re-encrypting takes CopyDBSnapshot with a KmsKeyId first.)
    https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_RestoreDBInstanceFromDBSnapshot.html
    https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CopyDBSnapshot.html#API_CopyDBSnapshot_RequestParameters"""
    if declared_key is not None and declared_key != snapshot_key:
        raise ReplayError(resource, f"kmsKeyId {declared_key} is not the key of snapshot "
                                    f"{snapshot!r} ({snapshot_key}), which the restored instance "
                                    f"gets: every pulumi up would replace it")


# --- SQS ------------------------------------------------------------------------------------------

# The ranges CreateQueue's Attributes give; moto checks only MaximumMessageSize.
SQS_RANGES = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 262144),
    "MessageRetentionPeriod": (60, 1209600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43200),
    "KmsDataKeyReusePeriodSeconds": (60, 86400),
}


def sqs_attribute_range(resource: Declared, key: str, attribute: str, value: Any) -> None:
    """A queue attribute with a numeric range lies within it.
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html#API_CreateQueue_RequestSyntax"""
    bounds = SQS_RANGES.get(attribute)
    if bounds and not bounds[0] <= float(value) <= bounds[1]:
        raise ReplayError(resource, f"{key} = {value!r} is outside {bounds[0]}..{bounds[1]}, "
                                    f"the range SQS accepts for {attribute}")


# --- SNS ------------------------------------------------------------------------------------------

SNS_PROTOCOLS = ("http", "https", "email", "email-json", "sms", "sqs", "application", "lambda",
                 "firehose")


def sns_subscription_protocol(resource: Declared, protocol: str) -> None:
    """Subscribe accepts only the protocols SNS delivers to; moto stores any string.
    https://docs.aws.amazon.com/sns/latest/api/API_Subscribe.html#API_Subscribe_RequestParameters"""
    if protocol not in SNS_PROTOCOLS:
        raise ReplayError(resource, f"InvalidParameter: protocol {protocol!r} is not one of "
                                    f"{', '.join(SNS_PROTOCOLS)}")


# --- CloudWatch alarms ----------------------------------------------------------------------------

def alarm_period(resource: Declared, period: Optional[int]) -> None:
    """An alarm's period is 10, 20 or 30 seconds (high resolution) or a multiple of 60.
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html#API_PutMetricAlarm_RequestParameters"""
    if period is not None and period not in (10, 20, 30) and period % 60:
        raise ReplayError(resource, f"period {period} is not 10, 20, 30 or a multiple of 60, "
                                    f"the periods PutMetricAlarm accepts")


def alarm_datapoints(resource: Declared, datapoints: int, evaluation_periods: Optional[int]) -> None:
    """DatapointsToAlarm is at most EvaluationPeriods ("M out of N", M <= N).
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html#alarm-evaluation"""
    if evaluation_periods is not None and datapoints > evaluation_periods:
        raise ReplayError(resource, f"datapointsToAlarm {datapoints} exceeds "
                                    f"evaluationPeriods {evaluation_periods}")


def alarm_one_metric_source(resource: Declared, has_queries: bool, single: list[str]) -> None:
    """An alarm reads either one metric (MetricName, Namespace, Statistic...) or Metrics (metric
    math), never both.
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html#API_PutMetricAlarm_RequestParameters"""
    if has_queries and single:
        raise ReplayError(resource, f"InvalidParameterCombination: metricQueries with {single}; "
                                    f"an alarm reads one metric or a metric math expression")


def alarm_threshold(resource: Declared, request: dict[str, Any]) -> None:
    """An alarm compares against Threshold, or against ThresholdMetricId for an anomaly band.
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html#API_PutMetricAlarm_RequestParameters"""
    if "Threshold" not in request and "ThresholdMetricId" not in request:
        raise ReplayError(resource, "declares neither threshold nor thresholdMetricId")


def alarm_metric_queries_return_one(resource: Declared, queries: list[dict[str, Any]]) -> None:
    """Of an alarm's metric queries exactly one has ReturnData true: the one the alarm watches.
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDataQuery.html"""
    returning = [q.get("id") for q in queries if q.get("returnData")]
    if len(returning) != 1:
        raise ReplayError(resource, f"ValidationError: exactly one metric query must return data, "
                                    f"{len(returning)} do ({returning})")


def alarm_expression_reads_defined_ids(resource: Declared, expression: str,
                                       ids: Iterable[Optional[str]]) -> None:
    """A metric math expression reads only the ids of the alarm's own metric queries.
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html"""
    unknown = sorted(set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", expression)) - set(ids))
    if unknown:
        raise ReplayError(resource, f"ValidationError: expression {expression!r} reads {unknown}, "
                                    f"which no metric query of this alarm defines")


# --- EventBridge ----------------------------------------------------------------------------------

# What an input template may name besides its own input paths (EventBridge's predefined variables).
EVENTBRIDGE_VARIABLES = {"aws.events.rule-arn", "aws.events.rule-name", "aws.events.event",
                         "aws.events.event.json", "aws.events.event.ingestion-time"}


def input_transformer(resource: Declared, paths: dict[str, Any], template: str) -> None:
    """PutTargets refuses a template placeholder that no input path (nor a predefined variable)
    defines, and an input path that is not a JSON path; moto checks neither.
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html"""
    undefined = sorted(set(re.findall(r"<([^<>\s]+)>", template)) - set(paths)
                       - EVENTBRIDGE_VARIABLES)
    if undefined:
        raise ReplayError(resource, f"ValidationException: the input template names {undefined}, "
                                    f"which no input path defines")
    not_paths = sorted(k for k, path in paths.items() if not str(path).startswith("$"))
    if not_paths:
        raise ReplayError(resource, f"ValidationException: input paths {not_paths} are not JSON "
                                    f"paths")


# --- Application Auto Scaling ---------------------------------------------------------------------

def scaling_capacity_range(resource: Declared, low: Optional[int], high: Optional[int]) -> None:
    """RegisterScalableTarget refuses a MinCapacity above MaxCapacity.
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_RegisterScalableTarget.html"""
    if low is not None and high is not None and low > high:
        raise ReplayError(resource, f"ValidationException: minCapacity {low} is above "
                                    f"maxCapacity {high}")


def scaling_policy_target_registered(resource: Declared, registered: list[Any],
                                     target: dict[str, str]) -> None:
    """PutScalingPolicy needs a scalable target registered for the resource and dimension
    (ObjectNotFoundException); moto stores the policy.
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PutScalingPolicy.html#API_PutScalingPolicy_Errors"""
    if not registered:
        raise ReplayError(resource, f"ObjectNotFoundException: no scalable target registered "
                                    f"for {target['ResourceId']} {target['ScalableDimension']}")


# --- IAM ------------------------------------------------------------------------------------------

def aws_managed_policy_exists(resource: Declared, policy_arn: str, path: Optional[str],
                              known: Optional[dict[str, Any]]) -> dict[str, Any]:
    """AttachRolePolicy with an `arn:aws:iam::aws:policy/...` ARN fails (NoSuchEntity) unless AWS
    manages a policy of that path and name; moto starts with none, so its copy of AWS's list is
    what the name is looked up in.
    https://docs.aws.amazon.com/IAM/latest/APIReference/API_AttachRolePolicy.html#API_AttachRolePolicy_Errors"""
    if known is None or known["Path"].strip("/") != (path or ""):
        raise ReplayError(resource, f"{policy_arn} is not an AWS managed policy "
                                    f"(moto's copy of AWS's list has no such name and path)")
    return known


# --- EC2 ------------------------------------------------------------------------------------------

def availability_zone_count(resource: Declared, asked: int, zones: list[str]) -> None:
    """A VPC spreads over at most the region's Availability Zones.
    https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-regions-availability-zones.html"""
    if asked > len(zones):
        raise ReplayError(resource, f"{asked} AZs asked, the region has {len(zones)}")


# --- IAM ------------------------------------------------------------------------------------------

ECS_TASKS_SERVICE = "ecs-tasks.amazonaws.com"


def roles_an_ecs_request_passes(request: dict[str, Any]) -> list[str]:
    """The roles a RegisterTaskDefinition or RunTask request hands to ECS: the task and execution
    roles, and a RunTask override's. ECS checks that its caller may `iam:PassRole` each one.
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html
    ("The user ... must have iam:PassRole"; the same holds for the task role)"""
    overrides = request.get("overrides") or {}
    found = [request.get("taskRoleArn"), request.get("executionRoleArn"),
             overrides.get("taskRoleArn"), overrides.get("executionRoleArn")]
    return [arn for arn in found if arn]


def pass_role_refusals(policies: Iterable[str], request: dict[str, Any],
                       service: str = ECS_TASKS_SERVICE) -> list[str]:
    """The roles of `request` the caller's identity policies do not let it pass to `service`:
    moto evaluates IAM only for the action called, never the iam:PassRole that AWS checks
    inside ECS, so its own policy engine evaluates that here, with `iam:PassedToService`.
    An explicit Deny wins; anything not allowed is refused (IAM policy evaluation logic:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    documents = list(policies)
    refused = []
    for role_arn in roles_an_ecs_request_passes(request):
        results = [IAMPolicy(document).is_action_permitted(
            "iam:PassRole", role_arn, incoming_condition_values={
                "iam:PassedToService": service}) for document in documents]
        if PermissionResult.DENIED in results or PermissionResult.PERMITTED not in results:
            refused.append(role_arn)
    return refused
