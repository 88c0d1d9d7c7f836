"""cancel_and_wait: a shutdown ends a background task even when it swallows a cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gwcommon.tasks import cancel_and_wait


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    swallowed = 0

    async def stubborn() -> None:
        # What a loop around Python 3.11's asyncio.wait_for does when the cancel races the
        # inner await's completion: the cancellation is lost and the loop goes on.
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, "gwcommon.tasks"):
        await asyncio.wait_for(cancel_and_wait(task, patience_s=0.05), 5)
    assert task.cancelled() and swallowed == 1
    assert "'stubborn' ran on after a cancellation" in caplog.text


async def test_a_task_that_ends_on_cancel_is_waited_for_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleaned = asyncio.Event()

    async def polite() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    task = asyncio.create_task(polite())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert cleaned.is_set() and task.cancelled()
    assert caplog.text == ""


async def test_what_the_task_raised_is_raised() -> None:
    async def broken() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)


async def test_a_finished_task_is_left_as_it_is() -> None:
    task = asyncio.create_task(asyncio.sleep(0, result=7))
    await task
    await cancel_and_wait(task)
    assert task.result() == 7
