"""Close a keep-alive connection as soon as its client hangs up, not a keep-alive timeout later.

Hypercorn (0.18) serves each connection inside a task group whose exit waits for every task it
spawned, the keep-alive timer included. When a client closes an idle keep-alive connection,
the read loop sees the end of the stream and returns, but the task group then waits for that
timer (``keep_alive_s``, 75 s here) before the socket is closed: meanwhile it sits in
CLOSE-WAIT, holding a file descriptor and the connection's buffers. Claude Code opens and
leaves connections all day; at a few hundred connections a minute that is thousands of dead
sockets, and a process's descriptor limit within reach.

:func:`install` wraps the server's read loop so that when it ends, for whatever reason, the
keep-alive timer is stopped, and the connection closes at once. Hypercorn's own code is
unchanged otherwise; the wrapper checks that the attributes it relies on exist and leaves
Hypercorn alone (logging why) if a future release renamed them.
``tests/dataplane/process/test_hangup.py`` fails if the hang-up is not seen within a second.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.asyncio import tcp_server

log = logging.getLogger(__name__)
_MARK = "_tollgate_hangup"


def install() -> bool:
    """Wrap ``TCPServer._read_data`` once; True when the wrapper is in place."""
    server_cls: Any = getattr(tcp_server, "TCPServer", None)
    read: Callable[[Any], Awaitable[None]] | None = getattr(server_cls, "_read_data", None)
    if server_cls is None or read is None:
        log.warning("hypercorn's TCPServer._read_data is gone: idle hang-ups wait for keep-alive")
        return False
    if getattr(read, _MARK, False):
        return True

    @functools.wraps(read)
    async def read_then_stop_timer(self: Any) -> None:
        try:
            await read(self)
        finally:
            idle = getattr(self, "idle_task", None)
            if idle is not None:
                await idle.stop()  # the task group can exit: the socket closes now

    setattr(read_then_stop_timer, _MARK, True)
    server_cls._read_data = read_then_stop_timer
    return True
