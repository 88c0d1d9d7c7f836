"""Open streams end when their token is revoked or expires, over real gRPC (SQLite and
PostgreSQL): TailLogs -f, TailAudit -f and StreamStats are authorised once at the start, then
re-authenticated every second, so a revoked or expired created token cannot keep watching."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc import StatusCode

from controlplane.server import Running, running
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import ADMIN_TOKEN, DATAPLANE_TOKEN, Clients, make_settings

ENDS_WITHIN_S = 3.0  # the re-check runs every second; allow for a slow CI machine


@dataclass
class Stream:
    """A server stream read in the background: what arrived, and how it ended."""

    name: str
    call: Any
    items: list[Any] = field(default_factory=list)
    code: StatusCode | None = None
    details: str = ""
    ended_at: float = 0.0
    task: asyncio.Task[None] | None = None

    def start(self) -> Stream:
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            async for item in self.call:
                self.items.append(item)
        except grpc.aio.AioRpcError as exc:
            self.code, self.details = exc.code(), exc.details() or ""
        else:
            self.code = StatusCode.OK
        self.ended_at = time.monotonic()

    @property
    def open(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self) -> None:
        self.call.cancel()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


def open_streams(clients: Clients) -> list[Stream]:
    # A deadline well past the test: the stream must end because of the token, not the clock.
    return [
        Stream(
            "TailLogs", clients.telemetry.TailLogs(tpb.TailLogsRequest(follow=True), timeout=60)
        ).start(),
        Stream(
            "TailAudit", clients.admin.TailAudit(apb.TailAuditRequest(follow=True), timeout=60)
        ).start(),
        Stream(
            "StreamStats",
            clients.telemetry.StreamStats(tpb.StreamStatsRequest(group_by="workspace"), timeout=60),
        ).start(),
    ]


async def wait_until(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


async def token(admin: Any, name: str, ttl: int = 0, role: str = "viewer") -> Any:
    return await admin.CreateToken(apb.CreateTokenRequest(name=name, role=role, ttl_seconds=ttl))


async def ingest(dataplane: Clients, rid: str) -> None:
    event = tpb.UsageEvent(
        request_id=rid,
        time_ms=time.time_ns() // 1_000_000,
        workspace="ws-a",
        key_id="key_00000000000000aa",
        status=200,
        usage=pb.Usage(input_tokens=1, output_tokens=1, cost_micros=10),
    )
    await dataplane.telemetry.ReportUsage(
        tpb.ReportUsageRequest(node_id="dp-1", events=[event], last_seq=1)
    )


async def assert_alive(streams: list[Stream], admin: Any, dataplane: Clients, rid: str) -> None:
    """Each stream is open and still delivering (a live log line, an audit event, a frame)."""
    counts = [len(s.items) for s in streams]
    await ingest(dataplane, rid)
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name=rid)))
    assert await wait_until(
        lambda: all(len(s.items) > n for s, n in zip(streams, counts, strict=True)), 5.0
    ), [(s.name, len(s.items), s.code, s.details) for s in streams]
    assert all(s.open for s in streams), [(s.name, s.code, s.details) for s in streams]


async def assert_ended(streams: list[Stream], since: float, reason: str) -> None:
    assert await wait_until(lambda: not any(s.open for s in streams), ENDS_WITHIN_S + 2)
    for s in streams:
        assert s.code == StatusCode.UNAUTHENTICATED, (s.name, s.code, s.details)
        assert reason in s.details and s.details.startswith("stream ended: admin token"), s.details
        assert s.ended_at - since <= ENDS_WITHIN_S, (s.name, s.ended_at - since)


@pytest.fixture
async def ws(admin: Any) -> None:
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="ws-a")))


@pytest.mark.usefixtures("ws")
async def test_revoking_a_token_ends_its_open_streams(
    cp: Running, admin: Any, channel: grpc.aio.Channel, dataplane: Clients
) -> None:
    doomed, kept = await token(admin, "doomed"), await token(admin, "kept")
    streams = open_streams(Clients(channel, doomed.secret))
    others = open_streams(Clients(channel, kept.secret))
    try:
        await assert_alive(streams + others, admin, dataplane, "before")
        await asyncio.sleep(1.5)  # several re-checks: a valid token's streams stay open
        assert all(s.open for s in streams + others)

        await admin.RevokeToken(apb.RevokeTokenRequest(id=doomed.token.id))
        revoked_at = time.monotonic()
        await assert_ended(streams, revoked_at, "was revoked")
        # The ended streams let go of their live subscriptions (the kept token's remain).
        assert await wait_until(
            lambda: (cp.state.hub.subscriber_count, cp.state.audit.subscriber_count) == (1, 1), 2.0
        )
        await assert_alive(others, admin, dataplane, "after")  # only that token's streams
    finally:
        for s in streams + others:
            await s.stop()


@pytest.mark.usefixtures("ws")
async def test_a_token_expiring_mid_stream_ends_its_streams(
    admin: Any, channel: grpc.aio.Channel, dataplane: Clients
) -> None:
    short = await token(admin, "short", ttl=3)
    expires_at = time.monotonic() + (short.token.expires_at_ms - time.time_ns() // 1_000_000) / 1000
    streams = open_streams(Clients(channel, short.secret))
    try:
        await assert_alive(streams, admin, dataplane, "while-valid")
        await assert_ended(streams, expires_at, "expired at")
    finally:
        for s in streams:
            await s.stop()


@pytest.mark.usefixtures("ws")
async def test_bootstrap_and_dataplane_tokens_are_not_rechecked(
    admin: Any, channel: grpc.aio.Channel, dataplane: Clients
) -> None:
    """Env tokens cannot be revoked: their streams run on (here across several re-checks)."""
    streams = open_streams(Clients(channel, ADMIN_TOKEN))
    try:
        await asyncio.sleep(2.5)
        await assert_alive(streams, admin, dataplane, "bootstrap")
    finally:
        for s in streams:
            await s.stop()


@pytest.fixture
async def replica(cp: Running, db_url: str) -> AsyncIterator[Running]:
    """A second control plane on the same database, with its own token cache."""
    async with running(make_settings(db_url)) as other:
        # Short, so the test need not wait the default 10 s for the cached entry to go stale.
        assert other.state.authenticator is not None
        other.state.authenticator._ttl = 1.0
        yield other


@pytest.mark.usefixtures("ws")
async def test_a_revocation_on_another_replica_ends_streams_within_the_cache_ttl(
    replica: Running, admin: Any
) -> None:
    doomed = await token(admin, "elsewhere")
    async with grpc.aio.insecure_channel(replica.address) as ch:
        streams = open_streams(Clients(ch, doomed.secret))
        try:
            other_admin = Clients(ch, ADMIN_TOKEN).admin
            await assert_alive(streams, other_admin, Clients(ch, DATAPLANE_TOKEN), "replica")
            await admin.RevokeToken(apb.RevokeTokenRequest(id=doomed.token.id))  # replica 1
            revoked_at = time.monotonic()
            assert await wait_until(lambda: not any(s.open for s in streams), 6.0)
            for s in streams:
                assert s.code == StatusCode.UNAUTHENTICATED and "was revoked" in s.details
                assert s.ended_at - revoked_at <= 1.0 + ENDS_WITHIN_S  # cache TTL + re-check
        finally:
            for s in streams:
                await s.stop()
