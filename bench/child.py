"""What a benchmark's child process does around its server (the other side of
:mod:`bench.procs`): say it is ready by writing a file atomically, serve until SIGTERM or SIGINT,
and, for the raw asyncio servers, take one HTTP/1.1 request at a time off a connection's
buffer."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path


def announce(ready_file: Path, text: str) -> None:
    """Write ``text`` to ``ready_file`` at once (a reader never sees half of it)."""
    tmp = ready_file.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, ready_file)


async def until_signalled() -> None:
    """Returns on the first SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def take_request(buf: bytearray) -> tuple[bytes, bytes] | None:
    """The first complete request in ``buf`` (its head, without the blank line, and its
    ``content-length`` body), removed from ``buf``; None while it has not all arrived."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lower = bytes(buf[:end]).lower()
    length = 0
    i = lower.find(b"\r\ncontent-length:")
    if i >= 0:
        j = lower.find(b"\r\n", i + 2)
        length = int(lower[i + 17 : j if j >= 0 else None])
    total = end + 4 + length
    if len(buf) < total:
        return None
    head, body = bytes(buf[:end]), bytes(buf[end + 4 : total])
    del buf[:total]
    return head, body
