#!/usr/bin/env python3
"""`make plan STACK=dev`: the offline plan of one stack file (see tools/plan.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.plan import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
