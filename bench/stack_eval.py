"""How long evaluating the whole stack under Pulumi mocks takes, as a multiple of the bare import
time of the SDK modules it uses, both measured here and now in fresh interpreters.

Each sample is a new Python process that starts a clock, then either only imports the SDK modules
(the baseline) or imports them and evaluates `__main__.py` for one stack file, config loaded as the
CLI loads it (the measured case). Interpreter start-up is outside both clocks. The figure per stack
is median(evaluate) / median(import); the target is at most 2x.

    python -m bench.stack_eval [--repeats N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from tools.mock_engine import ROOT, stack_names

TARGET = 2.0
# Everything the program imports from the SDKs: pulumi_aws loads its submodules lazily, so each
# one the components touch is named (and loaded in full, see CHILD).
SDK_MODULES = (
    "pulumi", "pulumi_aws", "pulumi_aws.cloudwatch", "pulumi_aws.ec2", "pulumi_aws.ecs",
    "pulumi_aws.iam", "pulumi_aws.secretsmanager", "pulumi_awsx", "pulumi_awsx.ec2",
)

CHILD = """
import time
start = time.perf_counter()
import importlib
for module in {modules!r}:
    # pulumi_aws's submodules are lazy: the first attribute access really loads them.
    getattr(importlib.import_module(module), "__all__", None)
stack = {stack!r}
if stack:
    from tools.mock_engine import evaluate_stack
    evaluation = evaluate_stack(stack)
    assert evaluation.one("aws:ecs/service:Service", "worker-service"), "no worker service"
print(time.perf_counter() - start)
"""


def sample(stack: str | None) -> float:
    code = CHILD.format(modules=SDK_MODULES, stack=stack)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per case")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    # Interleave cases so machine load drifts over all of them alike.
    names = stack_names()
    times: dict[str, list[float]] = {"import": [], **{name: [] for name in names}}
    for _ in range(args.repeats):
        times["import"].append(sample(None))
        for name in names:
            times[name].append(sample(name))

    baseline = statistics.median(times["import"])
    print(f"SDK import ({len(SDK_MODULES)} modules), median of {args.repeats}: {baseline:.3f} s")
    print(f"{'stack':<10} {'evaluate (s)':>12} {'ratio':>7}")
    ratios = {}
    for name in names:
        median = statistics.median(times[name])
        ratios[name] = median / baseline
        print(f"{name:<10} {median:>12.3f} {ratios[name]:>6.2f}x")
    worst = max(ratios.values())
    verdict = "within" if worst <= TARGET else "OVER"
    print(f"worst ratio {worst:.2f}x: {verdict} the {TARGET:.0f}x target")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"import_s": times["import"], "evaluate_s": {
            n: times[n] for n in names}, "ratios": ratios, "target": TARGET}, indent=2))
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
