"""The current snapshot, and change notification for Watch streams.

``await cache.rebuild()`` re-reads the database and publishes a new snapshot only when its
content version changed; call it after every committed admin mutation (and periodically, to pick
up changes made through another control-plane replica sharing the database). Rebuilds are
serialised so the last one to finish always reflects the last commit.

Watchers call ``await cache.wait_for_change(version)``, which returns as soon as the published
version differs (an in-process ``asyncio.Condition``: no polling, so a revoked key reaches
connected data planes in milliseconds).

An invalid snapshot is never published: the last good one stays current and the problem is
logged (and kept in :attr:`last_error`).
"""

from __future__ import annotations

import asyncio
import logging

from sqlmodel import Session

from controlplane.catalog.common import now_ms
from controlplane.snapshots.builder import InvalidSnapshot, build
from controlplane.store.db import Database
from gwapi.v1 import discovery_pb2 as dpb

log = logging.getLogger(__name__)


class SnapshotCache:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._current: dpb.Snapshot | None = None
        self._changed = asyncio.Condition()
        self._rebuild_lock = asyncio.Lock()
        self._closed = False
        self.last_error: str = ""

    @property
    def current(self) -> dpb.Snapshot | None:
        """The last good snapshot (``None`` until one valid snapshot was built)."""
        return self._current

    @property
    def version(self) -> str:
        return self._current.version if self._current is not None else ""

    @property
    def closed(self) -> bool:
        return self._closed

    def rebuild_sync(self) -> bool:
        """Blocking first build, for startup before the event loop serves anything."""
        return self._install(self._build())

    async def rebuild(self) -> bool:
        """Rebuild from the database; True when a new version was published."""
        async with self._rebuild_lock:
            snap = await self._db.read(self._try_build)
            published = self._install(snap)
            if published:
                async with self._changed:
                    self._changed.notify_all()
            return published

    def _build(self) -> dpb.Snapshot | None:
        return self._db.read_sync(self._try_build)

    def _try_build(self, s: Session) -> dpb.Snapshot | None:
        try:
            return build(s, now_ms())
        except InvalidSnapshot as exc:
            self.last_error = str(exc)
            log.error(
                "snapshot not published, keeping version %s: %s",
                self.version or "<none>",
                "; ".join(exc.problems[:10]),
            )
            return None

    def _install(self, snap: dpb.Snapshot | None) -> bool:
        if snap is None:
            return False
        self.last_error = ""
        if self._current is not None and snap.version == self._current.version:
            return False
        old = self.version
        self._current = snap
        log.info(
            "snapshot %s published (was %s): %d workspaces, %d keys, %d providers, %d routes",
            snap.version,
            old or "<none>",
            len(snap.workspaces),
            len(snap.keys),
            len(snap.providers),
            len(snap.routes),
        )
        return True

    async def wait_for_change(self, seen_version: str, timeout: float | None = None) -> bool:
        """Wait until the published version differs from ``seen_version`` or the cache closes.

        Returns True on a change, False on timeout or close.
        """

        def ready() -> bool:
            return self._closed or self.version != seen_version

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(ready), timeout)
            except TimeoutError:
                return False
        return not self._closed and self.version != seen_version

    async def close(self) -> None:
        """Wake every watcher so streams can end before the server stops."""
        self._closed = True
        async with self._changed:
            self._changed.notify_all()

    async def refresh_forever(self, interval_s: float) -> None:
        """Periodic rebuild; a no-op when nothing changed (same content hash)."""
        while not self._closed:
            await asyncio.sleep(interval_s)
            try:
                await self.rebuild()
            except Exception:  # keep refreshing; the DB may be back next time
                log.exception("periodic snapshot rebuild failed")
