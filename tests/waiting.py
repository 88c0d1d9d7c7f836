"""Waiting for a condition in tests: poll it until a deadline, never sleep a guessed time.

A bare ``asyncio.sleep(0.1)`` before an assertion is a bet on the machine's speed: too short on a
loaded box (a flaky test), needlessly long everywhere else. Where no hook says "done"
(``Reporter.drain``, ``SnapshotCache.drain``, a fake's ``wait_for``), poll with :func:`eventually`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 5.0
) -> None:
    """Return as soon as ``check()`` (sync or async) is true; fail the test after ``timeout``
    seconds, naming ``what`` was awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        await asyncio.sleep(0.01)
