"""The snapshot cache: publish on change only, keep the last good snapshot, wake watchers."""

import asyncio

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


async def test_rebuild_soon_is_throttled_not_per_call(db: Database, monkeypatch) -> None:
    """The first request rebuilds at once; a burst coalesces into one more rebuild after the
    interval; a request during a rebuild is not lost."""
    cache = SnapshotCache(db, min_interval_s=0.3)
    starts: list[float] = []
    real = cache.rebuild
    loop = asyncio.get_running_loop()

    async def counting(**kw: bool) -> bool:
        starts.append(loop.time())
        return await real(**kw)

    monkeypatch.setattr(cache, "rebuild", counting)
    t0 = loop.time()
    cache.rebuild_soon()
    await asyncio.sleep(0.05)
    assert len(starts) == 1 and starts[0] - t0 < 0.05  # leading edge: at once

    await db.run(lambda s: s.add(WorkspaceRow(name="w1")))
    # A burst of ingests. Issued back to back (no sleeps between them): a burst that itself
    # lasts longer than the interval (a loaded machine) rightly yields a third rebuild.
    for _ in range(50):
        cache.rebuild_soon()
    deadline = loop.time() + 5
    while len(starts) < 2 and loop.time() < deadline:  # wait for the trailing rebuild
        await asyncio.sleep(0.01)
    assert len(starts) == 2 and starts[1] - starts[0] >= 0.3
    while cache._soon is not None and not cache._soon.done():  # let it finish
        await asyncio.sleep(0.01)
    assert [w.name for w in cache.current.workspaces] == ["w1"]  # type: ignore[union-attr]

    await asyncio.sleep(0.4)
    assert len(starts) == 2  # quiet: nothing more
    await cache.close()
    cache.rebuild_soon()  # after close: ignored
    await asyncio.sleep(0.05)
    assert len(starts) == 2
