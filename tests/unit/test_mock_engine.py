"""The mock engine runs the program in any process state a test leaves behind."""

from __future__ import annotations

import asyncio

from tests.support.harness import evaluate_stack


async def _nothing() -> None:
    return None


def test_an_evaluation_after_asyncio_run_finds_an_event_loop():
    """`asyncio.run` ends with no current loop, and asyncio then refuses to make one; under xdist
    a file that ran it used to break every evaluation after it in that worker."""
    asyncio.run(_nothing())
    assert evaluate_stack("dev").resources


def test_an_evaluation_after_its_loop_was_closed_gets_a_new_one():
    asyncio.get_event_loop().close()
    assert evaluate_stack("dev").resources
