"""Shared pieces of the fault suites (``test_faults_*.py``): a data plane with short timeouts and a
budgeted key, the budget counters it holds, a killable TCP proxy, and an upstream fake that
notices when the gateway hangs up on it.

"No lost usage, no stuck reservation" is checked on the data plane's own counters: after a fault,
nothing is reserved or in flight, and what was spent equals the cost of the usage events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import orjson

from dataplane.config.snapshot import Snapshot
from dataplane.policy.counters.memory import MemoryCounters
from dataplane.process.server import DataPlane, Settings
from gwapi.v1 import common_pb2, discovery_pb2, telemetry_pb2
from tests.dataplane.conftest import SECRET, build_snapshot, usage_events
from tests.e2e.balancer import relay
from tests.fakes.anthropic import UPSTREAM_KEY, FakeAnthropic

KEY_ID = "key_alice"
BUDGET_MICROS = 5_000_000  # $5/day: large enough never to refuse, so reservations are visible
MODEL = "claude-sonnet-4-5-20250929"
SMALL_USAGE = {"input_tokens": 20, "output_tokens": 1}  # keeps partial costs readable
HEADERS = {
    "x-api-key": SECRET,
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
}


def body(stream: bool = True, max_tokens: int = 100) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "max_tokens": max_tokens,
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )


def faulty_snapshot(
    upstream_url: str,
    *,
    target: str = "anthropic",
    first_byte_ms: int = 400,
    idle_ms: int = 400,
    extra_providers: list[common_pb2.Provider] | None = None,
) -> discovery_pb2.Snapshot:
    """alice's key: a $5/day budget, served through a one-target route with short timeouts."""
    snap = build_snapshot(upstream_url)
    snap.providers.extend(extra_providers or [])
    snap.routes.append(
        common_pb2.Route(
            name="short",
            mode="fallback",
            targets=[common_pb2.RouteTarget(provider=target)],
            timeout_first_byte_ms=first_byte_ms,
            timeout_idle_ms=idle_ms,
        )
    )
    key = next(k for k in snap.keys if k.id == KEY_ID)
    key.provider = ""
    key.route = "short"
    key.limits.budgets.append(
        common_pb2.Budget(amount_micros=BUDGET_MICROS, period=common_pb2.PERIOD_DAY)
    )
    return snap


async def start_faulty(
    state_dir: Path, snapshot: discovery_pb2.Snapshot, env: dict[str, str] | None = None, **kw: Any
) -> DataPlane:
    """A data plane on 127.0.0.1:0 (no control plane: usage stays in its spool)."""
    dp = DataPlane(
        Settings(
            listen="127.0.0.1:0",
            control_plane="127.0.0.1:1",
            token="dp-token",
            state_dir=state_dir,
            env={"UPSTREAM_KEY": UPSTREAM_KEY, **(env or {})},
            **kw,
        )
    )
    await dp.start()
    dp.holder.swap(Snapshot.from_proto(snapshot))
    return dp


def budget_state(dp: DataPlane, scope: str = f"k:{KEY_ID}") -> tuple[int, int, int]:
    """(spent, reserved, in flight) of a scope in the in-process counters."""
    counters = dp.counters
    assert isinstance(counters, MemoryCounters)
    st = counters._scopes.get(scope)  # the backend has no read API: the suite looks inside
    if st is None:
        return 0, 0, 0
    spent = sum(b.spent for b in st.budgets.values())
    reserved = sum(b.reserved for b in st.budgets.values())
    return spent, reserved, len(st.flight)


async def settled(dp: DataPlane, n: int) -> list[telemetry_pb2.UsageEvent]:
    """Wait for ``n`` usage events, then assert the budget is settled to exactly their cost."""
    events = await usage_events(dp, n, timeout=5)
    assert len(events) == n, [e.status for e in events]
    deadline = time.monotonic() + 3
    while True:  # settle runs in the request's finally: give it a moment after the event
        spent, reserved, flight = budget_state(dp)
        cost = sum(e.usage.cost_micros for e in events)
        if (spent, reserved, flight) == (cost, 0, 0) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert (spent, reserved, flight) == (cost, 0, 0), "stuck reservation or lost usage"
    return events


def sse_names(raw: bytes) -> list[str]:
    return [line[7:].decode() for line in raw.split(b"\n") if line.startswith(b"event: ")]


def error_events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"event: error\n"):
            out.append(orjson.loads(block.split(b"data: ", 1)[1]))
    return out


class WatchedAnthropic(FakeAnthropic):
    """The strict fake, also recording when the gateway closes the upstream connection."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.hung_up: list[float] = []  # monotonic times of disconnects seen upstream

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.hung_up.append(time.monotonic())

        async def body_then_watch() -> Any:
            nonlocal watcher
            msg = await receive()
            if not msg.get("more_body"):
                watcher = asyncio.create_task(watch())
            return msg

        try:
            await super().app(scope, body_then_watch, send)
            if watcher is not None:  # a finished answer: the client may keep the connection
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(watcher), 0.01)
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()


class TcpProxy:
    """A TCP relay on 127.0.0.1 in front of a real server (PostgreSQL, Redis). :meth:`kill`
    drops every connection and stops listening — to the client, the server is gone — and
    :meth:`restore` listens again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def kill(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                await relay(src, dst)
            except (OSError, RuntimeError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
