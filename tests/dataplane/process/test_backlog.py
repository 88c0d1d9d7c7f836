"""Connections that arrive while the worker is busy wait in the kernel's accept queue, and that
queue is the data plane's (workerrole.BACKLOG), not Hypercorn's default of 100: an agent fleet
opening a few hundred streams at once must not see dropped or reset connections."""

from __future__ import annotations

import socket

import httpx

from dataplane.process.server import DataPlane
from dataplane.process.workerrole import BACKLOG

ARRIVING = 300  # more than Hypercorn's default backlog (100), fewer than ours


def _connect_while_loop_is_busy(port: int) -> int:
    """Open ``ARRIVING`` connections from this (the event loop's) thread, so the data plane
    accepts none meanwhile: only the kernel's queue holds them. Returns how many completed their
    handshake; stops at the first that does not (its SYN was dropped: the queue was full)."""
    opened: list[socket.socket] = []
    try:
        for _ in range(ARRIVING):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            opened.append(sock)
            sock.settimeout(0.5)
            try:
                sock.connect(("127.0.0.1", port))
            except OSError:  # timed out: the accept queue is full
                return len(opened) - 1
        return len(opened)
    finally:
        for sock in opened:
            sock.close()


async def test_a_burst_of_connections_fits_the_accept_queue(dataplane: DataPlane) -> None:
    assert BACKLOG > ARRIVING
    # Answered by Hypercorn: its server is up, and has called listen() with its backlog.
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{dataplane.port}/healthz")).status_code == 200
    assert _connect_while_loop_is_busy(dataplane.port) == ARRIVING
