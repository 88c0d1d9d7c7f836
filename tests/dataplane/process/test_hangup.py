"""A client that leaves a keep-alive connection is let go at once (dataplane.process.hangup):
the data plane closes its side when the client's FIN arrives, not a keep-alive timeout later."""

from __future__ import annotations

import asyncio
import time

from dataplane.process import hangup
from dataplane.process.server import DataPlane


async def _served_then_left(port: int, path: str = "/healthz") -> float:
    """One keep-alive request answered in full; the client half-closes; seconds until the data
    plane closes too (reads EOF), or 5.0 if it did not within 5 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    await asyncio.wait_for(reader.readexactly(length), 5)
    writer.write_eof()  # the client leaves (FIN), as Claude Code does when it exits
    started = time.monotonic()
    try:
        rest = await asyncio.wait_for(reader.read(), 5)
    except TimeoutError:
        return 5.0
    finally:
        writer.close()
    assert rest == b""
    return time.monotonic() - started


async def test_the_data_plane_closes_when_an_idle_client_leaves(dataplane: DataPlane) -> None:
    assert dataplane.settings.keep_alive_s >= 30  # the timer the fix must not wait for
    took = await asyncio.gather(*(_served_then_left(dataplane.port) for _ in range(10)))
    assert max(took) < 1.0, took


def test_install_is_idempotent_and_marks_the_read_loop() -> None:
    from hypercorn.asyncio.tcp_server import TCPServer

    assert hangup.install() and hangup.install()
    assert getattr(TCPServer._read_data, "_tollgate_hangup", False)
