"""A sample flow that fails on purpose: its run ends Failed, with the error in its logs."""

from __future__ import annotations

from prefect import flow


class SampleFailure(RuntimeError):
    pass


@flow(name="failing")
def failing() -> None:
    raise SampleFailure("this sample flow fails on purpose")


if __name__ == "__main__":
    failing()
