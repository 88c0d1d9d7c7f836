"""The snapshot cache: publish on change only, keep the last good snapshot, wake watchers."""

import asyncio

import pytest
from sqlmodel import Session

from controlplane.snapshots.cache import SnapshotCache
from controlplane.store.db import Database
from controlplane.store.models.config import VirtualKeyRow, WorkspaceRow


async def test_publish_only_on_change_and_wake_watchers(db: Database) -> None:
    cache = SnapshotCache(db)
    assert cache.current is None and cache.version == ""
    assert cache.rebuild_sync() is True
    v0 = cache.version
    assert await cache.rebuild() is False  # same content: nothing published
    assert cache.version == v0

    waiter = asyncio.create_task(cache.wait_for_change(v0))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await db.run(lambda s: s.add(WorkspaceRow(name="w")))
    assert await cache.rebuild() is True
    assert await asyncio.wait_for(waiter, 1) is True
    assert cache.version != v0
    assert await cache.wait_for_change(v0, timeout=0.01) is True  # already different
    assert await cache.wait_for_change(cache.version, timeout=0.01) is False


async def test_invalid_content_keeps_last_good(db: Database, caplog) -> None:
    cache = SnapshotCache(db)
    await db.run(lambda s: s.add(WorkspaceRow(name="w")))
    await cache.rebuild()
    good = cache.current
    assert good is not None

    def bad_key(s: Session) -> None:
        s.add(
            VirtualKeyRow(
                id="key_0000000000000001", secret_sha256="c" * 64, workspace="w", provider="ghost"
            )
        )

    await db.run(bad_key)
    assert await cache.rebuild() is False
    assert cache.current is good
    assert "provider 'ghost' does not exist" in cache.last_error
    assert "snapshot not published" in caplog.text


async def test_close_wakes_watchers(db: Database) -> None:
    cache = SnapshotCache(db)
    cache.rebuild_sync()
    waiter = asyncio.create_task(cache.wait_for_change(cache.version))
    await asyncio.sleep(0.01)
    await cache.close()
    assert await asyncio.wait_for(waiter, 1) is False and cache.closed


class ManualClock:
    """Monotonic seconds that move only when the test says so; ``sleep`` returns once the clock
    has been advanced past its deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []  # every delay asked for
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._asleep = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, wake))
        self._asleep.set()
        await wake

    async def asleep(self) -> None:
        """Wait until something sleeps on this clock."""
        await asyncio.wait_for(self._asleep.wait(), 5)
        self._asleep.clear()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [w for at, w in self._sleepers if at <= self.now]
        self._sleepers = [(at, w) for at, w in self._sleepers if at > self.now]
        for wake in due:
            wake.set_result(None)


async def test_rebuild_soon_is_throttled_not_per_call(db: Database, monkeypatch) -> None:
    """The first request rebuilds at once; a burst coalesces into one more rebuild when the
    interval since the last one has passed; then nothing more. The clock is manual: no window of
    real time to miss on a loaded machine."""
    clock = ManualClock()
    cache = SnapshotCache(db, min_interval_s=0.3, clock=clock, sleep=clock.sleep)
    starts: list[float] = []
    real = cache.rebuild

    async def counting(**kw: bool) -> bool:
        starts.append(clock.now)
        return await real(**kw)

    monkeypatch.setattr(cache, "rebuild", counting)
    cache.rebuild_soon()
    await cache.drain()
    assert starts == [0.0] and clock.sleeps == []  # leading edge: at once

    clock.advance(0.1)
    await db.run(lambda s: s.add(WorkspaceRow(name="w1")))
    for _ in range(50):  # a burst of ingests
        cache.rebuild_soon()
    await clock.asleep()
    assert clock.sleeps == [pytest.approx(0.2)] and starts == [0.0]  # the rest of the interval
    clock.advance(0.2)
    await cache.drain()
    assert starts == [0.0, pytest.approx(0.3)]  # one trailing rebuild for the whole burst
    assert [w.name for w in cache.current.workspaces] == ["w1"]  # type: ignore[union-attr]

    clock.advance(10)
    await cache.drain()
    assert len(starts) == 2 and len(clock.sleeps) == 1  # quiet: nothing more
    await cache.close()
    cache.rebuild_soon()  # after close: ignored
    await cache.drain()
    assert len(starts) == 2


async def test_sweeps_skip_spend_nobody_reads_until_a_data_plane_asks(db: Database) -> None:
    """A replica with no data plane connected (and not the leader) reads no spend at its periodic
    sweeps; :meth:`fresh_spend` (a data plane connecting) brings every seed up to date first."""
    import time

    from controlplane.fanout import UsageHub
    from controlplane.usage.ingest import ingest
    from gwapi.v1 import telemetry_pb2 as tpb

    budget = '{"budgets":[{"amount_micros":1000000,"period":"month"}]}'
    await db.run(lambda s: s.add(WorkspaceRow(name="w1", limits_json=budget)))
    clock = ManualClock()
    cache = SnapshotCache(db, clock=clock, sleep=clock.sleep)
    wanted = [False]
    cache.spend_wanted = lambda: wanted[0]
    cache.rebuild_sync()

    def seed() -> int:
        return {e.id: e.spent_micros for e in cache.current.spend}["w1"]  # type: ignore[union-attr]

    ev = tpb.UsageEvent(request_id="r1", time_ms=int(time.time() * 1000), workspace="w1")
    ev.usage.cost_micros = 250_000
    await ingest(db, UsageHub(), tpb.ReportUsageRequest(node_id="dp", last_seq=1, events=[ev]))
    assert seed() == 0
    loop = asyncio.create_task(cache.refresh_forever(1.0, sweep_s=5.0))
    for _ in range(6):  # past a sweep
        await clock.asleep()
        clock.advance(1.0)
    await clock.asleep()
    assert seed() == 0  # nobody reads it: not read
    await cache.fresh_spend()
    assert seed() == 250_000
    wanted[0] = True
    ev2 = tpb.UsageEvent(request_id="r2", time_ms=int(time.time() * 1000), workspace="w1")
    ev2.usage.cost_micros = 100_000
    await ingest(db, UsageHub(), tpb.ReportUsageRequest(node_id="dp", last_seq=2, events=[ev2]))
    for _ in range(6):  # wanted now: the next sweep reads it
        clock.advance(1.0)
        await clock.asleep()
    assert seed() == 350_000
    loop.cancel()
    await cache.close()
