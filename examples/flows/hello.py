"""The sandbox's sample flow (`make sandbox`): one task, a log line, Completed.

`seconds` keeps the run going that long, to watch it Running in the UI or to stop its task from
outside (the sandbox's crash path). Deploy your own flow the same way: see docs/sandbox.md.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task


@task
def greet(name: str) -> str:
    return f"Hello, {name}!"


@flow(name="hello")
def hello(name: str = "sandbox", seconds: float = 0) -> str:
    greeting = greet(name)
    get_run_logger().info(greeting)
    if seconds:
        get_run_logger().info("running for %s s", seconds)
        time.sleep(seconds)
    return greeting


if __name__ == "__main__":
    hello()
