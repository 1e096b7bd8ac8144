"""The flow-code delivery keys: the ECR repository for flow images and the S3 bucket for flow code
and results. Each is one switch (`create`, `adopt` an existing one by name, or `none`), read and
validated here before any resource is declared.

The name rules are the ones the services enforce, so a name they would refuse stops preview instead
of `pulumi up`: ECR's repository-name pattern (CreateRepository API reference) and S3's
general-purpose bucket naming rules (S3 User Guide, "Bucket naming rules").
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable, Literal, Optional

from components.config.reader import ConfigError, Reader

Mode = Literal["create", "adopt", "none"]

# CreateRepository: 2-256 characters, lowercase, path segments separated by "/".
REPOSITORY_NAME = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
REPOSITORY_NAME_LENGTH = (2, 256)
# S3 general-purpose buckets: 3-63 characters of a-z 0-9 . -, starting and ending with a letter or
# digit, no "..", not an IP address, and a few reserved prefixes and suffixes.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
# ECR keeps at most 10,000 images a repository by default; lifecycle counts are 1 or more.
MAX_KEPT_IMAGES = 10_000
MAX_DAYS = 3650
# The default bucket name ends in the 12-digit account id, which makes it globally unique.
ACCOUNT_PLACEHOLDER = "0" * 12
# Where flow code and flow results live in the bucket; the result lifecycle rule filters on this.
CODE_PREFIX = "flows/"
RESULTS_PREFIX = "results/"


@dataclass(frozen=True)
class FlowImageSettings:
    mode: Mode
    # The repository's name: the stack's own (create) or an existing one (adopt).
    name: str
    keep_tagged_count: int
    untagged_expiry_days: int
    # The one principal besides the stack's roles that the repository policy names.
    publisher_role_arn: Optional[str]


@dataclass(frozen=True)
class FlowCodeBucketSettings:
    mode: Mode
    # None when created without a name: `<prefix>-flows-<account id>`, made at deploy time.
    name: Optional[str]
    result_retention_days: int


@dataclass(frozen=True)
class FlowCodeSettings:
    repository: FlowImageSettings
    bucket: FlowCodeBucketSettings

    @property
    def enabled(self) -> bool:
        return self.repository.mode != "none" or self.bucket.mode != "none"


def default_repository_name(prefix: str) -> str:
    return f"{prefix}-flows".lower()


def default_bucket_name(prefix: str, account_id: str) -> str:
    return f"{prefix}-flows-{account_id}".lower()


def bucket_name_problem(name: str) -> Optional[str]:
    """Why S3 would refuse `name` for a general-purpose bucket, or None."""
    if not BUCKET_NAME.match(name):
        return ("3-63 characters of lowercase letters, digits, '.' and '-', starting and ending "
                "with a letter or digit")
    if ".." in name:
        return "no two adjacent periods"
    try:
        ipaddress.IPv4Address(name)
        return "not formatted as an IP address"
    except ValueError:
        pass
    if name.startswith(BUCKET_RESERVED_PREFIXES) or name.endswith(BUCKET_RESERVED_SUFFIXES):
        return ("not starting with " + ", ".join(BUCKET_RESERVED_PREFIXES) + " or ending with "
                + ", ".join(BUCKET_RESERVED_SUFFIXES) + " (S3 reserves them)")
    return None


def repository_name_problem(name: str) -> Optional[str]:
    low, high = REPOSITORY_NAME_LENGTH
    if not low <= len(name) <= high or not REPOSITORY_NAME.match(name):
        return (f"{low}-{high} characters: lowercase letters and digits, separated by single "
                "'.', '_' or '-', in '/'-separated path segments")
    return None


def parse_flow_code(reader: Reader, prefix: str) -> FlowCodeSettings:
    """The flow-code keys; `prefix` (`<project>-<stack>`) names what the stack creates."""
    repository_mode = reader.choice("flowImageRepository", Mode)
    repository_name = _named(reader, "flowImageRepositoryName", "flowImageRepository",
                             repository_mode, default_repository_name(prefix),
                             repository_name_problem)
    keep = reader.integer("flowImageKeepTaggedCount", minimum=1, maximum=MAX_KEPT_IMAGES)
    untagged = reader.integer("flowImageUntaggedExpiryDays", minimum=1, maximum=MAX_DAYS)
    publisher = reader.optional("flowPublisherRoleArn")
    if publisher is not None and not ROLE_ARN.match(publisher):
        raise ConfigError("flowPublisherRoleArn", publisher,
                          "an IAM role ARN, arn:aws:iam::<account>:role/[<path>/]<name>")

    bucket_mode = reader.choice("flowCodeBucket", Mode)
    bucket_name = _named(reader, "flowCodeBucketName", "flowCodeBucket", bucket_mode, None,
                         bucket_name_problem)
    if bucket_mode == "create" and bucket_name is None:
        # The account id is known only at deploy time; its 12 digits change neither the length
        # nor the characters, so the default can be checked now.
        problem = bucket_name_problem(default_bucket_name(prefix, ACCOUNT_PLACEHOLDER))
        if problem:
            raise ConfigError("flowCodeBucketName", None,
                              f"a name for the bucket: the default "
                              f"{default_bucket_name(prefix, '<account id>')!r} breaks S3's "
                              f"rule: {problem}")
    retention = reader.integer("flowResultRetentionDays", minimum=1, maximum=MAX_DAYS)
    return FlowCodeSettings(
        repository=FlowImageSettings(
            mode=repository_mode,
            name=repository_name or "",
            keep_tagged_count=keep,
            untagged_expiry_days=untagged,
            publisher_role_arn=publisher,
        ),
        bucket=FlowCodeBucketSettings(
            mode=bucket_mode,
            name=bucket_name,
            result_retention_days=retention,
        ),
    )


def _named(reader: Reader, key: str, switch: str, mode: str, default: Optional[str],
           problem_of: Callable[[str], Optional[str]]) -> Optional[str]:
    """A name key: required to adopt, optional to create, refused when its switch is off."""
    name = reader.optional(key)
    if mode == "none":
        if name is not None:
            raise ConfigError(key, name, f"unset while {switch} is none")
        return None
    if name is None:
        if mode == "adopt":
            raise ConfigError(key, None, f"the name of the existing one to use: {switch} is adopt")
        if default is not None and problem_of(default):
            raise ConfigError(key, None, f"a name: the default {default!r} (from the project "
                                         f"and stack names) breaks the rule: "
                                         f"{problem_of(default)}")
        return default
    problem = problem_of(name)
    if problem:
        raise ConfigError(key, name, problem)
    return name
