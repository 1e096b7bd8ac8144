#!/usr/bin/env python3
"""Monthly cost of each stack file as a ratio to the seed report's architecture.

The seed (examples/Pulumi.seed.yaml: two AZs, one NAT gateway, one on-demand x86 worker of dev's
size) is priced by the same program and the same price table as the stacks, so the ratios compare
like with like: the same secret, logs, alarms and security posture (no inbound, key in Secrets
Manager). Figures are estimates of what the stacks declare, not of a bill.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.cost import PriceTable, ratio  # noqa: E402
from tools.plan import make_plan  # noqa: E402

STACKS = ("dev", "staging", "prod", "selfhosted-dev", "selfhosted-prod")
DEV_TARGET = 0.25
# Dev with its own Prefect server (single, internal): the seed also needed a paid Prefect plan.
SELF_HOSTED_DEV_TARGET = 0.75


def costs(prices: PriceTable) -> dict[str, tuple[float, float]]:
    """stack -> (steady-state total, ceiling with autoscaling) for the seed and each stack."""
    result = {}
    for stack in ("seed", *STACKS):
        estimate = make_plan(stack, prices).cost
        result[stack] = (estimate.total, estimate.ceiling)
    return result


def main() -> int:
    prices = PriceTable.load()
    figures = costs(prices)
    seed = figures["seed"][0]
    print(f"Monthly estimate, {prices.region} list prices of {prices.as_of}; seed = "
          f"${seed:.2f}/month")
    print(f"{'stack':<16} {'$/month':>9} {'x seed':>7} {'ceiling':>9}")
    for stack in ("seed", *STACKS):
        total, ceiling = figures[stack]
        extra = f"${ceiling:.2f}" if ceiling != total else ""
        print(f"{stack:<16} {f'${total:.2f}':>9} {ratio(total, seed):>7.3f} {extra:>9}".rstrip())
    met = True
    for stack, target in (("dev", DEV_TARGET), ("selfhosted-dev", SELF_HOSTED_DEV_TARGET)):
        stack_ratio = ratio(figures[stack][0], seed)
        verdict = "meets" if stack_ratio <= target else "misses"
        met = met and stack_ratio <= target
        print(f"{stack} is {stack_ratio:.3f}x the seed: {verdict} the {target}x target")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
