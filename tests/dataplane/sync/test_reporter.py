"""The usage reporter: retries through outages, delivers in order, and no single event (bad,
huge, refused) stops it; a reporter loop that dies is restarted.

This module is long because each failure mode (outage, refusal, a bad or huge event, a dead loop)
is checked against the same reporter, spool and fake control plane."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
import httpx
import orjson
import pytest

import dataplane.sync.reporter
from dataplane.metering.record import RequestRecord
from dataplane.process.server import DataPlane
from dataplane.sync.reporter import Reporter
from dataplane.sync.spool import Spool, sync_files
from gwapi.v1 import telemetry_pb2
from gwcommon.usage_limits import BATCH_BYTES, EVENT_BODY_BYTES, MAX_MESSAGE_BYTES
from tests.dataplane.conftest import SECRET


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class ControlPlane:
    """Records delivered request ids; can be down, or refuse one poison id as malformed."""

    def __init__(self) -> None:
        self.up = True
        self.poison = ""
        self.delivered: list[str] = []

    async def send(self, request: telemetry_pb2.ReportUsageRequest) -> int:
        if not self.up:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused")
        if any(e.request_id == self.poison for e in request.events):
            raise rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "bad event")
        for e in request.events:
            if e.request_id not in self.delivered:
                self.delivered.append(e.request_id)
        return request.last_seq


def record(i: int) -> RequestRecord:
    return RequestRecord(request_id=f"r{i}", dataplane_id="dp", path="/v1/messages", status=200)


@pytest.fixture
def cp() -> ControlPlane:
    return ControlPlane()


class Steps:
    """The send loop's sleeps, not slept: each returns at once (its length recorded) until
    ``budget`` were taken; the next waits for :meth:`release`, after which none waits."""

    def __init__(self, budget: int) -> None:
        self.slept: list[float] = []
        self.budget = budget
        self.used = asyncio.Event()
        self._released = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        if len(self.slept) >= self.budget and not self._released.is_set():
            self.used.set()
            await self._released.wait()
        self.slept.append(seconds)
        await asyncio.sleep(0)

    def release(self) -> None:
        self._released.set()


async def test_outage_then_delivery_in_order(tmp_path: Path, cp: ControlPlane) -> None:
    cp.up = False
    steps = Steps(3)  # the first cadence, then cadence and backoff: two passes while down
    reporter = Reporter(Spool(tmp_path), cp.send, "dp", interval=0.01, sleep=steps.sleep)
    for i in range(20):
        reporter.record(record(i))
    task = asyncio.create_task(reporter.run())
    try:
        await asyncio.wait_for(steps.used.wait(), 10)
        assert cp.delivered == [] and reporter.backlog == 20
        cp.up = True
        steps.release()
        async with asyncio.timeout(10):
            while reporter.backlog:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert cp.delivered == [f"r{i}" for i in range(20)]


async def test_poison_event_is_set_aside_not_blocking(tmp_path: Path, cp: ControlPlane) -> None:
    cp.poison = "r3"
    spool = Spool(tmp_path)
    reporter = Reporter(spool, cp.send, "dp", interval=0.01)
    for i in range(6):
        reporter.record(record(i))
    assert await reporter.flush()
    assert cp.delivered == ["r0", "r1", "r2", "r4", "r5"]
    assert reporter.backlog == 0
    assert b"r3" in (tmp_path / "rejected.log").read_bytes()


# --- P2 finding 1: no single event stops usage reporting ------------------------------------


class StrictControlPlane(ControlPlane):
    """Also: the real control plane's 32 MiB message limit, INTERNAL for chosen ids (or for
    every call, or — like an older control plane on PostgreSQL — for any event with NUL)."""

    def __init__(self) -> None:
        super().__init__()
        self.max_bytes = MAX_MESSAGE_BYTES
        self.internal: set[str] = set()
        self.glitches: dict[str, int] = {}  # id -> how many more calls holding it fail INTERNAL
        self.broken = False
        self.nul_is_internal = False
        self.sizes: list[int] = []
        self.calls = 0
        self.events: dict[str, telemetry_pb2.UsageEvent] = {}

    async def send(self, request: telemetry_pb2.ReportUsageRequest) -> int:
        self.calls += 1
        size = request.ByteSize()
        self.sizes.append(size)
        if size > self.max_bytes:
            raise rpc_error(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Received message larger than max ({size} vs. {self.max_bytes})",
            )
        glitched = [e.request_id for e in request.events if self.glitches.get(e.request_id)]
        for rid in glitched:
            self.glitches[rid] -= 1
        if glitched or self.broken or any(e.request_id in self.internal for e in request.events):
            raise rpc_error(grpc.StatusCode.INTERNAL, "internal error in the control plane")
        if self.nul_is_internal and any(has_nul(e) for e in request.events):
            raise rpc_error(grpc.StatusCode.INTERNAL, "internal error in the control plane")
        for e in request.events:
            self.events.setdefault(e.request_id, e)
        return await super().send(request)


def has_nul(event: telemetry_pb2.UsageEvent) -> bool:
    return any(isinstance(v, str) and "\x00" in v for _, v in event.ListFields())


def raw_event(rid: str, **fields: object) -> bytes:
    """An event as an older data plane may have spooled it (not built by to_event)."""
    return telemetry_pb2.UsageEvent(request_id=rid, status=200, **fields).SerializeToString()  # type: ignore[arg-type]


async def deliver_all(reporter: Reporter, timeout: float = 20.0) -> None:
    task = asyncio.create_task(reporter.run())
    try:
        async with asyncio.timeout(timeout):
            while reporter.backlog:
                await asyncio.sleep(0.02)
            await reporter.drain()  # the last acknowledgement's spool write is done too
    finally:
        task.cancel()


async def test_batches_stay_under_the_message_limit(tmp_path: Path) -> None:
    """--log-bodies full with big bodies after an outage used to make one batch over the
    control plane's 32 MiB limit, refused (RESOURCE_EXHAUSTED) for ever."""
    cp = StrictControlPlane()
    spool = Spool(tmp_path)
    spool.append([raw_event(f"r{i}", request_body=b"x" * (1024 * 1024)) for i in range(40)])
    reporter = Reporter(spool, cp.send, "dp", interval=0.01)
    assert await reporter.flush(timeout=20)
    assert cp.delivered == [f"r{i}" for i in range(40)]
    assert max(cp.sizes) <= BATCH_BYTES + 1024 * 1024 + 100  # one event past the budget at most
    assert reporter.quarantined == 0


async def test_an_event_refused_alone_is_set_aside_while_the_rest_flows(tmp_path: Path) -> None:
    cp = StrictControlPlane()
    cp.internal = {"r3"}  # e.g. PostgreSQL refusing a value: INTERNAL, whatever the batch
    spool = Spool(tmp_path)
    reporter = Reporter(spool, cp.send, "dp", interval=0.01)
    for i in range(8):
        reporter.record(record(i))
    assert await reporter.flush()
    assert cp.delivered == ["r0", "r1", "r2", "r4", "r5", "r6", "r7"]
    assert reporter.backlog == 0 and reporter.quarantined == 1
    assert b"r3" in (tmp_path / "rejected.log").read_bytes()
    assert Spool(tmp_path).quarantined == 1  # still counted after a restart


async def test_a_passing_glitch_on_one_event_sets_nothing_aside(tmp_path: Path) -> None:
    """INTERNAL can also be the connection's fault: a suspect is refused alone once more,
    after another event was accepted, before it is set aside."""
    cp = StrictControlPlane()
    cp.glitches = {"r2": 3}  # the batch, its half, then r2 alone: then it goes through
    reporter = Reporter(Spool(tmp_path), cp.send, "dp", interval=0.01)
    for i in range(5):
        reporter.record(record(i))
    assert await reporter.flush()
    assert sorted(cp.delivered) == [f"r{i}" for i in range(5)]
    assert reporter.quarantined == 0


async def test_a_bad_event_alone_waits_until_another_is_accepted(tmp_path: Path) -> None:
    """Alone, an INTERNAL cannot tell a bad event from a broken control plane: keep it."""
    cp = StrictControlPlane()
    cp.internal = {"r0"}
    reporter = Reporter(Spool(tmp_path), cp.send, "dp", interval=0.01)
    reporter.record(record(0))
    assert not await reporter.flush()
    assert reporter.quarantined == 0 and reporter.backlog == 1
    reporter.record(record(1))
    assert await reporter.flush()  # r1 was accepted while r0 was refused alone: set r0 aside
    assert cp.delivered == ["r1"] and reporter.quarantined == 1


async def test_a_broken_control_plane_sets_nothing_aside(tmp_path: Path) -> None:
    cp = StrictControlPlane()
    cp.broken = True  # INTERNAL for every call: the control plane is the problem, not events
    steps = Steps(7)  # the first cadence, then cadence and backoff before each of 3 more passes
    # Written at once (no group-commit window): the stepped cadence does not wait for it.
    reporter = Reporter(
        Spool(tmp_path), cp.send, "dp", interval=0.01, sleep=steps.sleep, persist_delay=0
    )
    for i in range(50):
        reporter.record(record(i))
    task = asyncio.create_task(reporter.run())
    await asyncio.wait_for(steps.used.wait(), 10)  # 4 passes made, all refused
    assert reporter.quarantined == 0 and reporter.backlog == 50
    assert cp.calls < 60  # a few calls per backoff, not one per event
    assert steps.slept[2] < steps.slept[4] < steps.slept[6]  # the backoff grows
    cp.broken = False
    steps.release()
    try:
        async with asyncio.timeout(15):
            while reporter.backlog:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert cp.delivered == [f"r{i}" for i in range(50)]
    assert not (tmp_path / "rejected.log").exists()


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
async def test_transient_failures_never_set_anything_aside(
    tmp_path: Path, code: grpc.StatusCode
) -> None:
    cp = StrictControlPlane()
    failures = [0]

    async def flaky(request: telemetry_pb2.ReportUsageRequest) -> int:
        if failures[0] < 3:
            failures[0] += 1
            raise rpc_error(code, "try later")
        return await cp.send(request)

    reporter = Reporter(Spool(tmp_path), flaky, "dp", interval=0.01)
    for i in range(5):
        reporter.record(record(i))
    await deliver_all(reporter)
    assert cp.delivered == [f"r{i}" for i in range(5)] and reporter.quarantined == 0


async def test_an_older_event_with_nul_is_repaired_not_lost(tmp_path: Path) -> None:
    """An event spooled by an older data plane, refused by an older control plane on
    PostgreSQL (NUL in text -> INTERNAL), is cleaned and delivered; the rest is not blocked."""
    cp = StrictControlPlane()
    cp.nul_is_internal = True
    spool = Spool(tmp_path)
    spool.append(
        [
            raw_event("old", model_requested="claude\x00" + "x" * 100_000, session_id="s\x00"),
            raw_event("next"),
        ]
    )
    reporter = Reporter(spool, cp.send, "dp", interval=0.01)
    assert await reporter.flush()
    assert cp.delivered == ["next", "old"] or cp.delivered == ["old", "next"]
    old = cp.events["old"]
    assert old.model_requested.startswith("claude\ufffd") and len(old.model_requested) == 256
    assert old.session_id == "s\ufffd"
    assert reporter.quarantined == 0 and reporter.repaired == 1


async def test_an_event_too_large_alone_is_fitted(tmp_path: Path) -> None:
    cp = StrictControlPlane()
    spool = Spool(tmp_path)
    big = 20 * 1024 * 1024
    spool.append(
        [raw_event("huge", request_body=b"q" * big, response_body=b"a" * big), raw_event("x")]
    )
    reporter = Reporter(spool, cp.send, "dp", interval=0.01)
    assert await reporter.flush(timeout=20)
    assert cp.delivered == ["huge", "x"]
    huge = cp.events["huge"]
    assert huge.bodies_truncated
    assert len(huge.request_body) + len(huge.response_body) <= EVENT_BODY_BYTES
    assert max(cp.sizes) <= MAX_MESSAGE_BYTES


async def test_a_dead_reporter_is_restarted_and_delivers(
    dataplane: DataPlane, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The reporter loop dying (here: an injected exception) used to end usage reporting
    silently for the life of the process."""
    cp = StrictControlPlane()
    reporter = dataplane.reporter
    assert reporter is not None
    reporter.send_batch = cp.send
    spool = dataplane.spool
    real_pending = spool.pending
    injected = [False]

    def pending(limit: int, max_bytes: int | None = None) -> list[tuple[int, bytes]]:
        if not injected[0]:
            injected[0] = True
            raise RuntimeError("injected reporter failure")
        return real_pending(limit, max_bytes)

    spool.pending = pending  # type: ignore[method-assign]
    body = orjson.dumps(
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    headers = {
        "x-api-key": SECRET,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    for _ in range(3):
        r = await client.post("/v1/messages", content=body, headers=headers)
        assert r.status_code == 200, r.text
    async with asyncio.timeout(10):
        while len(cp.delivered) < 3:
            await asyncio.sleep(0.02)
    assert injected[0] and dataplane.restarts["usage-reporter"] == 1
    failure = next(r for r in caplog.records if "usage-reporter failed" in r.getMessage())
    assert failure.levelname == "ERROR" and "injected reporter failure" in caplog.text
    metrics = (await client.get("/metrics")).text
    assert 'tollgate_task_restarts{task="usage-reporter"} 1' in metrics
    assert "tollgate_usage_quarantined 0" in metrics


# --- issue #16: a crash loses milliseconds of events, not an interval --------------------------


class WatchedSpool(Spool):
    """A spool that tells the test's event loop about each append once it is written, and
    about each fsync of written segments (the reporter's sync_files) once done."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(directory)
        self.loop = asyncio.get_running_loop()
        self.appended: asyncio.Queue[int] = asyncio.Queue()
        self.synced: asyncio.Queue[list[Path]] = asyncio.Queue()

        def synced_files(files: list[Path], directory: Path | None) -> None:
            sync_files(files, directory)
            self.loop.call_soon_threadsafe(self.synced.put_nowait, files)

        monkeypatch.setattr(dataplane.sync.reporter, "sync_files", synced_files)

    def append(self, payloads: list[bytes], *, sync: bool = True) -> int:
        last = super().append(payloads, sync=sync)  # in the reporter's worker thread
        self.loop.call_soon_threadsafe(self.appended.put_nowait, last)
        return last


class Ticks:
    """The send loop's clock: each tick is one ``interval`` gone by, when the test says so."""

    def __init__(self) -> None:
        self.permits: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(self, seconds: float) -> None:
        await self.permits.get()


def ticked_reporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[StrictControlPlane, WatchedSpool, Ticks, Reporter]:
    """A reporter to a strict control plane over a watched spool in ``tmp_path``, whose send
    cadence moves on only when the test puts a permit in ``ticks``."""
    cp = StrictControlPlane()
    spool = WatchedSpool(tmp_path, monkeypatch)
    ticks = Ticks()
    return cp, spool, ticks, Reporter(spool, cp.send, "dp", interval=0.2, sleep=ticks.sleep)


def on_disk(directory: Path) -> list[str]:
    """The request ids a restarted data plane would find in the spool."""
    return [
        telemetry_pb2.UsageEvent.FromString(p).request_id for _, p in Spool(directory).pending(1000)
    ]


async def test_a_record_is_durable_at_once_and_sends_stay_batched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp, spool, ticks, reporter = ticked_reporter(tmp_path, monkeypatch)
    task = asyncio.create_task(reporter.run())
    try:
        # Each record is written to the spool without waiting for the send cadence (no tick
        # has passed: the old reporter wrote nothing before one), then fsync'd.
        for i in range(5):
            reporter.record(record(i))
            assert await asyncio.wait_for(spool.appended.get(), 5) == i + 1
            assert on_disk(tmp_path) == [f"r{j}" for j in range(i + 1)]
            assert await asyncio.wait_for(spool.synced.get(), 5) == list(tmp_path.glob("seg-*"))
        # Records made while nothing yields are coalesced into one write.
        for i in range(5, 105):
            reporter.record(record(i))
        assert await asyncio.wait_for(spool.appended.get(), 5) == 105
        assert spool.appended.empty()  # one write for the hundred
        assert cp.calls == 0  # nothing sent between ticks: persisting is not sending
        # One tick: everything spooled goes in one ReportUsage.
        ticks.permits.put_nowait(None)
        async with asyncio.timeout(5):
            while reporter.backlog:
                await asyncio.sleep(0.01)
        # The backlog is 0 once the ack is taken in; its spool write (the segment dropped)
        # may still be under way.
        await reporter.drain()
        assert cp.calls == reporter.batches == 1
        assert cp.delivered == [f"r{i}" for i in range(105)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert on_disk(tmp_path) == []  # acknowledged: forgotten


async def test_a_busy_data_plane_writes_and_fsyncs_at_a_bounded_pace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record every millisecond or so for 0.3 s: each write to the spool carries several
    events (at most one write per ``persist_delay``, one fsync per ``sync_interval``: worker
    thread hops cost CPU), and every event is on disk once drained, in order."""
    _, spool, _, reporter = ticked_reporter(tmp_path, monkeypatch)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(reporter.run())
    recorded = 0
    try:
        start = loop.time()
        while loop.time() - start < 0.3:
            reporter.record(record(recorded))
            recorded += 1
            await asyncio.sleep(0.001)
        elapsed = loop.time() - start
        await reporter.drain()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    writes, syncs = spool.appended.qsize(), spool.synced.qsize()
    assert writes <= elapsed / reporter.persist_delay + 2, (writes, recorded, elapsed)
    assert syncs <= elapsed / reporter.sync_interval + 2, (syncs, writes, elapsed)
    assert on_disk(tmp_path) == [f"r{i}" for i in range(recorded)]


async def test_events_spooled_during_a_pass_wait_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender chasing events persisted while it sends would make many small batches."""
    cp, spool, ticks, reporter = ticked_reporter(tmp_path, monkeypatch)
    sending = asyncio.Event()
    release = asyncio.Event()
    real_send = cp.send

    async def slow_send(request: telemetry_pb2.ReportUsageRequest) -> int:
        sending.set()
        await release.wait()
        return await real_send(request)

    reporter.send_batch = slow_send
    task = asyncio.create_task(reporter.run())
    try:
        reporter.record(record(0))
        await asyncio.wait_for(spool.appended.get(), 5)
        ticks.permits.put_nowait(None)
        await asyncio.wait_for(sending.wait(), 5)
        reporter.record(record(1))  # spooled while the first batch is in flight
        await asyncio.wait_for(spool.appended.get(), 5)
        release.set()
        async with asyncio.timeout(5):
            while cp.delivered != ["r0"] or reporter.backlog != 1:
                await asyncio.sleep(0.01)
        assert cp.calls == 1  # r1 was not chased
        ticks.permits.put_nowait(None)
        async with asyncio.timeout(5):
            while reporter.backlog:
                await asyncio.sleep(0.01)
        assert cp.delivered == ["r0", "r1"] and cp.calls == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_stopping_while_a_write_waits_for_the_spool_loses_nothing(tmp_path: Path) -> None:
    """The persist loop waiting for the spool (busy with the sender's read) when the data plane
    stops: its events must still be written by the final flush, not dropped with the task."""
    cp = ControlPlane()
    entered, gate = threading.Event(), threading.Event()

    class BusySpool(Spool):
        def pending(self, limit: int, max_bytes: int | None = None) -> list[tuple[int, bytes]]:
            entered.set()
            gate.wait(5)
            return super().pending(limit, max_bytes)

    ticks = Ticks()
    reporter = Reporter(BusySpool(tmp_path), cp.send, "dp", sleep=ticks.sleep)
    task = asyncio.create_task(reporter.run())
    ticks.permits.put_nowait(None)
    assert await asyncio.to_thread(entered.wait, 5)  # the sender holds the spool
    reporter.record(record(0))
    for _ in range(10):  # let the persist loop wake and queue up for the spool
        await asyncio.sleep(0)
    assert reporter.persists == 0 and reporter.backlog == 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    gate.set()
    assert await reporter.flush()
    assert cp.delivered == ["r0"]


async def test_drain_returns_once_every_recorded_event_is_on_disk(tmp_path: Path) -> None:
    """Whether the persist loop has taken an event already (its write under way) or it is still
    queued, drain() returns once both are in the spool; nothing is sent meanwhile."""
    entered, gate = threading.Event(), threading.Event()

    class SlowSpool(Spool):
        def append(self, payloads: list[bytes], *, sync: bool = True) -> int:
            entered.set()
            gate.wait(5)
            return super().append(payloads, sync=sync)

    cp = ControlPlane()
    reporter = Reporter(SlowSpool(tmp_path), cp.send, "dp", sleep=Ticks().sleep)
    task = asyncio.create_task(reporter.run())
    try:
        reporter.record(record(0))
        assert await asyncio.to_thread(entered.wait, 5)  # the persist loop is writing r0
        reporter.record(record(1))  # queued behind it
        drained = asyncio.create_task(reporter.drain())
        await asyncio.sleep(0)
        assert not drained.done() and on_disk(tmp_path) == []
        gate.set()
        await asyncio.wait_for(drained, 5)
        assert on_disk(tmp_path) == ["r0", "r1"]
        entered.clear()
        gate.clear()
        reporter.record(record(2))
        assert await asyncio.to_thread(entered.wait, 5)  # being written; nothing queued
        drained = asyncio.create_task(reporter.drain())
        await asyncio.sleep(0)
        assert not drained.done()
        gate.set()
        await asyncio.wait_for(drained, 5)
        assert on_disk(tmp_path) == ["r0", "r1", "r2"] and cp.delivered == []
    finally:
        gate.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
