"""Config of the stack's flow-run recovery: how long a run may stay Pending before the stack's
automation hands it back to the pool (components/prefect/stuck_run_automation.py)."""

from __future__ import annotations

from dataclasses import dataclass

from components.config.reader import ConfigError, Reader

# A Fargate task normally leaves PENDING in under a minute; an image pull of a few GB or a
# capacity shortage (Spot) can take several. A run rescheduled while its task is merely slow
# would run twice, so the floor sits well above the slowest normal start.
MIN_PENDING_MINUTES, MAX_PENDING_MINUTES = 10, 24 * 60


@dataclass(frozen=True)
class RunRecoverySettings:
    # Minutes a flow run of the pool may stay Pending (submitted, its task not yet Running)
    # before it is returned to Scheduled for any worker to submit again.
    stuck_pending_minutes: int

    @property
    def stuck_pending_seconds(self) -> int:
        return self.stuck_pending_minutes * 60


def parse_run_recovery(reader: Reader) -> RunRecoverySettings:
    """The default is Pulumi.yaml's."""
    minutes = reader.integer("stuckPendingMinutes")
    if not MIN_PENDING_MINUTES <= minutes <= MAX_PENDING_MINUTES:
        raise ConfigError(
            "stuckPendingMinutes", minutes,
            f"a whole number of minutes from {MIN_PENDING_MINUTES} to {MAX_PENDING_MINUTES}: "
            "above the slowest normal task start (image pull, Fargate capacity), or a run whose "
            "task is only slow to start is submitted twice",
        )
    return RunRecoverySettings(stuck_pending_minutes=minutes)
