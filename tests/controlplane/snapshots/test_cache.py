"""The snapshot cache: publish on change only, keep the last good snapshot, wake watchers."""

import asyncio

from sqlmodel import Session

from controlplane.snapshots.cache import SnapshotCache
from controlplane.store.db import Database
from controlplane.store.models import VirtualKeyRow, WorkspaceRow


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
