"""Ending a background task for good, on Python 3.11.

A task can swallow a cancellation: Python 3.11's ``asyncio.wait_for`` returns the inner result
instead of raising when the inner await finishes in the same loop iteration as the cancel
(fixed in 3.12), and a loop around it then runs on. A shutdown that cancels once and awaits the
task would wait for ever. :func:`cancel_and_wait` cancels again until the task has ended, and
says so in the log, so a swallowed cancellation costs a moment and a warning, never a hang.
Loops should still use ``asyncio.timeout`` rather than ``asyncio.wait_for`` (it does not swallow).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["cancel_and_wait"]

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any], *, patience_s: float = 1.0) -> None:
    """Cancel ``task`` and return once it has ended, cancelling it again every ``patience_s``
    while it runs on. Raises what the task raised, other than its cancellation; cancelling the
    caller leaves ``task`` cancelled but not necessarily ended."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=patience_s)
        if not task.done():
            log.warning("task %r ran on after a cancellation; cancelling it again", task.get_name())
    if not task.cancelled():
        task.result()
