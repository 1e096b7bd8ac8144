"""Each stack file evaluated once per test run: the tests only read the result.

Under xdist the workers share the evaluations too: the first worker to need one makes it and
leaves it pickled in the run's shared directory (`share_between_workers`, set by tests/conftest.py);
another worker loads it in milliseconds instead of evaluating the stack again (0.2-0.6 s each)."""

from __future__ import annotations

import fcntl
import hashlib
import pickle
from functools import cache
from pathlib import Path
from typing import Optional

from tests.support.harness import Evaluation, evaluate_stack

_shared_dir: Optional[Path] = None


def share_between_workers(directory: Path) -> None:
    """Keep evaluations in `directory`, which every worker of this run sees."""
    global _shared_dir
    directory.mkdir(exist_ok=True)
    _shared_dir = directory


@cache
def evaluated(stack: str, **overrides: str) -> Evaluation:
    if _shared_dir is None:
        return evaluate_stack(stack, **overrides)
    key = hashlib.sha256(repr((stack, sorted(overrides.items()))).encode()).hexdigest()[:20]
    kept = _shared_dir / f"{key}.pickle"
    with open(_shared_dir / f"{key}.lock", "w") as lock:
        # Held while evaluating: a worker that needs the same stack waits and then loads it, and
        # nobody reads a file half written. An evaluation that raises leaves nothing behind.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if kept.exists():
            evaluation: Evaluation = pickle.loads(kept.read_bytes())
            return evaluation
        evaluation = evaluate_stack(stack, **overrides)
        kept.write_bytes(pickle.dumps(evaluation))
        return evaluation


@cache
def evaluated_seed() -> Evaluation:
    """The seed report's architecture (examples/Pulumi.seed.yaml), priced and checked like a stack."""
    return evaluated("seed")
