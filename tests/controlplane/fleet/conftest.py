"""Two control-plane replicas on one database (in-process, real gRPC), and a deadline helper."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from controlplane.server import Running, running
from tests.controlplane.conftest import ADMIN_TOKEN, DATAPLANE_TOKEN, Clients, make_settings


@dataclass
class Replica:
    cp: Running
    admin: Clients
    dataplane: Clients

    @property
    def address(self) -> str:
        return self.cp.address


@contextlib.asynccontextmanager
async def replica(db_url: str, **overrides: Any) -> AsyncIterator[Replica]:
    async with (
        running(make_settings(db_url, leader_retry_s=0.1, **overrides)) as cp,
        grpc.aio.insecure_channel(cp.address) as ch,
    ):
        await cp.state.fleet.bus.listening.wait()  # PostgreSQL: LISTEN is in place
        yield Replica(cp, Clients(ch, ADMIN_TOKEN), Clients(ch, DATAPLANE_TOKEN))


@pytest.fixture
async def pair(db_url: str) -> AsyncIterator[tuple[Replica, Replica]]:
    async with replica(db_url) as a, replica(db_url) as b:
        yield a, b


async def within(
    deadline_s: float, check: Callable[[], Awaitable[bool]], what: str, poll_s: float = 0.005
) -> float:
    """Poll ``check`` until true; fail if ``deadline_s`` passes first. Returns the seconds taken."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > deadline_s:
            raise AssertionError(f"{what}: not within {deadline_s} s")
        await asyncio.sleep(poll_s)
    return time.monotonic() - start
