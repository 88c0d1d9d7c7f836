"""The current snapshot, and change notification for Watch streams.

``await cache.rebuild()`` re-reads the database and publishes a new snapshot only when its
content version changed; call it after every committed admin mutation (and periodically, to pick
up changes made through another control-plane replica sharing the database). Rebuilds are
serialised so the last one to finish always reflects the last commit.

Watchers call ``await cache.wait_for_change(version)``, which returns as soon as the published
version differs (an in-process ``asyncio.Condition``: no polling, so a revoked key reaches
connected data planes in milliseconds).

Usage ingest calls :meth:`SnapshotCache.rebuild_soon` instead (the snapshot carries spend): a
throttle, not a rebuild per batch. The first call after a quiet spell rebuilds at once (in a
background task, never on the ingest call itself); calls arriving while a rebuild is due or
running coalesce into one more rebuild, started no sooner than ``min_interval_s`` after the
previous one started. So under steady traffic spend reaches data planes every
``min_interval_s`` and a lone request's spend within a moment.

An invalid snapshot is never published: the last good one stays current and the problem is
logged (and kept in :attr:`last_error`).

Provider secrets (and sign-in's signing keys) are decrypted with ``master`` on every build; one
that cannot be decrypted is left out of the snapshot and logged at ERROR when the set of such
problems changes (kept in :attr:`secret_problems`). Signed-in developers without a target are
logged at WARNING the same way (kept in :attr:`notices`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlmodel import Session

from controlplane.catalog.common import now_ms
from controlplane.secrets import MasterKey
from controlplane.snapshots.builder import InvalidSnapshot, build
from controlplane.store.db import Database
from gwapi.v1 import discovery_pb2 as dpb

log = logging.getLogger(__name__)


class SnapshotCache:
    def __init__(
        self, db: Database, min_interval_s: float = 2.0, master: MasterKey | None = None
    ) -> None:
        self._db = db
        self._master = master
        self.secret_problems: tuple[str, ...] = ()
        self.notices: tuple[str, ...] = ()
        self._current: dpb.Snapshot | None = None
        self._changed = asyncio.Condition()
        self._rebuild_lock = asyncio.Lock()
        self._closed = False
        self.last_error: str = ""
        self.min_interval_s = min_interval_s
        self._last_started = float("-inf")  # loop time the last rebuild started
        self._dirty = False
        self._soon: asyncio.Task[None] | None = None
        self.on_build: Callable[[float], None] | None = None  # seconds per build (metrics)

    @property
    def current(self) -> dpb.Snapshot | None:
        """The last good snapshot (``None`` until one valid snapshot was built)."""
        return self._current

    @property
    def master(self) -> MasterKey | None:
        """The master key provider secrets are stored under (``None``: none configured)."""
        return self._master

    @property
    def version(self) -> str:
        return self._current.version if self._current is not None else ""

    @property
    def closed(self) -> bool:
        return self._closed

    def rebuild_sync(self) -> bool:
        """Blocking first build, for startup before the event loop serves anything."""
        return self._install(self._build())

    async def rebuild(self, *, quiet: bool = False) -> bool:
        """Rebuild from the database; True when a new version was published. ``quiet`` logs a
        new version at DEBUG (spend refreshes happen every few seconds under traffic)."""
        async with self._rebuild_lock:
            self._last_started = asyncio.get_running_loop().time()
            snap = await self._db.read(self._try_build)
            published = self._install(snap, quiet=quiet)
            if published:
                async with self._changed:
                    self._changed.notify_all()
            return published

    def rebuild_soon(self) -> None:
        """Ask for a rebuild (new spend was ingested); returns at once. See the module doc."""
        if self._closed:
            return
        self._dirty = True
        if self._soon is None or self._soon.done():
            self._soon = asyncio.get_running_loop().create_task(
                self._rebuild_when_due(), name="snapshot-rebuild-soon"
            )

    async def _rebuild_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty and not self._closed:
            delay = self._last_started + self.min_interval_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._dirty = False  # a request arriving from here on asks for one more rebuild
            try:
                await self.rebuild(quiet=True)
            except Exception:
                log.exception("snapshot rebuild after ingest failed; will retry periodically")

    def _build(self) -> dpb.Snapshot | None:
        return self._db.read_sync(self._try_build)

    def _try_build(self, s: Session) -> dpb.Snapshot | None:
        started = time.perf_counter()
        try:
            warnings: list[str] = []
            notices: list[str] = []
            snap = build(s, now_ms(), self._master, warnings, notices)
            self._note_secret_problems(tuple(warnings))
            self._note_notices(tuple(notices))
            return snap
        except InvalidSnapshot as exc:
            self.last_error = str(exc)
            log.error(
                "snapshot not published, keeping version %s: %s",
                self.version or "<none>",
                "; ".join(exc.problems[:10]),
            )
            return None
        finally:
            if self.on_build is not None:
                self.on_build(time.perf_counter() - started)

    def _note_secret_problems(self, problems: tuple[str, ...]) -> None:
        if problems != self.secret_problems:
            for problem in problems:
                if problem not in self.secret_problems:
                    log.error("secret left out of the snapshot: %s", problem)
        self.secret_problems = problems

    def _note_notices(self, notices: tuple[str, ...]) -> None:
        for notice in notices:
            if notice not in self.notices:
                log.warning("snapshot: %s", notice)
        self.notices = notices

    def _install(self, snap: dpb.Snapshot | None, *, quiet: bool = False) -> bool:
        if snap is None:
            return False
        self.last_error = ""
        if self._current is not None and snap.version == self._current.version:
            return False
        old = self.version
        self._current = snap
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "snapshot %s published (was %s): %d workspaces, %d keys, %d providers, %d routes, "
            "%d spend seeds",
            snap.version,
            old or "<none>",
            len(snap.workspaces),
            len(snap.keys),
            len(snap.providers),
            len(snap.routes),
            len(snap.spend),
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
        if self._soon is not None and not self._soon.done():
            self._soon.cancel()
        async with self._changed:
            self._changed.notify_all()

    async def refresh_forever(self, interval_s: float) -> None:
        """Periodic rebuild; a no-op when nothing changed (same content hash). Mostly it brings
        spend (period rollovers, other replicas' ingest), so new versions are logged at DEBUG."""
        while not self._closed:
            await asyncio.sleep(interval_s)
            try:
                await self.rebuild(quiet=True)
            except Exception:  # keep refreshing; the DB may be back next time
                log.exception("periodic snapshot rebuild failed")
