"""Hardening keys: VPC flow logs and flow-run egress (issue 10).

Parsed once, like every other key, before any resource is declared; a bad value is a
`ConfigError` naming the key, the value and what is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

FlowRunEgress = Literal["any", "https"]
FLOW_RUN_EGRESS: tuple[str, ...] = get_args(FlowRunEgress)


@dataclass(frozen=True)
class HardeningSettings:
    # VPC flow logs of the created VPC (an adopted VPC is its owner's to log).
    vpc_flow_logs: bool = True
    vpc_flow_log_retention_days: int = 90
    # any: flow code reaches whatever it needs (the default); https: TCP 443 only.
    flow_run_egress: FlowRunEgress = "any"


def parse_hardening(reader, log_retention_days: tuple[int, ...]) -> HardeningSettings:
    """`reader` is settings' `_Reader`; the retention values are CloudWatch Logs' own list."""
    return HardeningSettings(
        vpc_flow_logs=reader.boolean("vpcFlowLogs", True),
        vpc_flow_log_retention_days=reader.choice_int("vpcFlowLogRetentionDays", 90,
                                                      log_retention_days),
        flow_run_egress=reader.choice("flowRunEgress", "any", FLOW_RUN_EGRESS),  # type: ignore[arg-type]
    )
