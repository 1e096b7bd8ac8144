"""Hardening keys: VPC flow logs and flow-run egress (issue 10).

Parsed once, like every other key, before any resource is declared; a bad value is a
`ConfigError` naming the key, the value and what is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from components.config.reader import Reader

FlowRunEgress = Literal["any", "https"]


@dataclass(frozen=True)
class HardeningSettings:
    # VPC flow logs of the created VPC (an adopted VPC is its owner's to log).
    vpc_flow_logs: bool
    vpc_flow_log_retention_days: int
    # any: flow code reaches whatever it needs; https: TCP 443 (and a self-hosted API's port) only.
    flow_run_egress: FlowRunEgress


def parse_hardening(reader: Reader, log_retention_days: tuple[int, ...]) -> HardeningSettings:
    """The retention values are CloudWatch Logs' own list. The
    defaults are Pulumi.yaml's."""
    return HardeningSettings(
        vpc_flow_logs=reader.boolean("vpcFlowLogs"),
        vpc_flow_log_retention_days=reader.choice_int("vpcFlowLogRetentionDays",
                                                      log_retention_days),
        flow_run_egress=reader.choice("flowRunEgress", FlowRunEgress),
    )
