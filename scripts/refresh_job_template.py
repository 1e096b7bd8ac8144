"""Regenerate components/prefect/templates/ecs-base-job-template.json from the installed prefect-aws.

Run after bumping prefect-aws in requirements-dev.txt:

    python scripts/refresh_job_template.py

The file records the prefect-aws version it came from; tests/unit/test_job_template.py fails while the
checked-in copy differs from what the installed prefect-aws produces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TEMPLATE_PATH = (
    Path(__file__).resolve().parent.parent / "components" / "prefect" / "templates" / "ecs-base-job-template.json"
)


def upstream() -> dict[str, Any]:
    """prefect-aws's own ECS base job template, with the version it came from."""
    import prefect_aws
    from prefect_aws.workers.ecs_worker import ECSWorker

    return {
        "prefect_aws_version": prefect_aws.__version__,
        "source": "prefect_aws.workers.ecs_worker.ECSWorker.get_default_base_job_template()",
        "base_job_template": ECSWorker.get_default_base_job_template(),
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> int:
    TEMPLATE_PATH.write_text(render(upstream()))
    print(f"wrote {TEMPLATE_PATH} (prefect-aws {upstream()['prefect_aws_version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
