"""The stack-evaluation benchmark runs end to end and prints a ratio per stack file."""

import json
import re
import subprocess
import sys

import pytest

from tests.support.harness import ROOT, stack_names


@pytest.mark.slow
def test_benchmark_reports_a_ratio_for_every_stack_file(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "bench.stack_eval", "--repeats", "1",
                             "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr  # 1 = over the target, still a report
    for stack in stack_names():
        assert re.search(rf"^{stack}\s+\d+\.\d+\s+\d+\.\d+x$", result.stdout, re.M), result.stdout
    numbers = json.loads(out.read_text())
    assert set(numbers["ratios"]) == set(stack_names())
    assert all(t > 0 for t in numbers["import_s"])
