"""Background loops that must never be silently gone: restarted when they die, and counted.

:func:`supervise` runs a loop (the usage reporter, the snapshot watch) for ever. If it raises,
or returns, the failure is logged at ERROR with its traceback, counted in ``restarts[name]``
(exported as ``tollgate_task_restarts``), and the loop is started again after a backoff
that doubles from ``first_delay`` up to ``max_delay`` and starts over once a run has lasted
``healthy_after`` seconds. Cancellation (shutdown) stops it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("tollgate.supervise")


async def supervise(
    name: str,
    loop: Callable[[], Coroutine[Any, Any, None]],
    restarts: dict[str, int],
    *,
    first_delay: float = 0.1,
    max_delay: float = 30.0,
    healthy_after: float = 60.0,
) -> None:
    restarts.setdefault(name, 0)
    delay = first_delay
    while True:
        started = time.monotonic()
        try:
            await loop()
            log.error("%s stopped unexpectedly; restarting it in %.1f s", name, delay)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; restarting it in %.1f s", name, delay)
        restarts[name] += 1
        if time.monotonic() - started >= healthy_after:
            delay = first_delay
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
