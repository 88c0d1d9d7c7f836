"""The resource table every data plane is served from, kept up to date incrementally.

``await cache.rebuild()`` means "catch up with the database now": it reads the
``config_change`` rows written since its last catch-up (:mod:`controlplane.store.changes`),
re-reads only the resources they name (:mod:`controlplane.snapshots.resources`), validates the
result (:meth:`ResourceTable.validate`) and publishes the resources whose content changed. The
first catch-up, and one whose position in the change log was trimmed away, reads everything. Call
it after every committed admin mutation; concurrent calls coalesce (a caller waits for at most
one more catch-up, which covers everyone who asked meanwhile), so a bulk apply publishes once
per burst, not once per object. :meth:`refresh_forever` calls it every second (an indexed
``seq`` range read when nothing changed), which is what brings other replicas' changes.

Versions: :attr:`version` is the **config version** (a digest of every configuration resource,
:mod:`controlplane.snapshots.table`); spend seeds have their own :attr:`spend_version` and
never change the config version. Watchers wait with :meth:`wait_for_change` (config) or
:meth:`wait_for_publication` (config or spend); no polling.

Spend: usage ingest calls :meth:`rebuild_soon` with the scopes it touched; it marks their spend
dirty (not the configuration) and throttles: the first call after a quiet spell catches up at
once (in a background task), a burst coalesces into one more catch-up no sooner than
``min_interval_s`` after the previous one started; :meth:`drain` waits until that background
catch-up is done. Every ``spend_sweep_s`` the periodic refresh marks all spend dirty (a safety
net: period rollovers, ingest whose bus notice was lost), unless nobody reads this replica's
seeds (:attr:`spend_wanted`); every ``sweep_s`` it re-reads the signing keys (they expire by
time). Only seeds whose content changed are published.

An invalid state is never published: the last good one stays current, the problem is logged and
kept in :attr:`last_error`, and the same changes are read again at the next catch-up. Secrets
that cannot be decrypted are left out and logged at ERROR when the set of such problems changes
(:attr:`secret_problems`); signed-in developers without a target are logged at WARNING
(:attr:`notices`). :attr:`current` assembles the state of the world (the ``Watch`` protocol),
once per version pair.

This module is long (~430 lines) because it is one class, :class:`SnapshotCache`, whose catch-up,
coalescing, spend throttling and publication share one lock and one set of positions in the change
log; what can stand alone (reading resources, the table, spend seeds) already lives in its own
module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from google.protobuf.message import Message
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from controlplane.catalog.common import now_ms
from controlplane.secrets import MasterKey
from controlplane.snapshots.resources import Reader, Update, everything, from_changes
from controlplane.snapshots.spend_seeds import ScopeRef, SpendScopes
from controlplane.snapshots.table import Entry, Ref, ResourceTable
from controlplane.store.changes import ALL
from controlplane.store.db import Database
from controlplane.store.models.config import ConfigChangeRow
from controlplane.usage.spend import BudgetSpend
from gwapi.v1 import discovery_pb2 as dpb

log = logging.getLogger(__name__)
CHECK_INTERVAL_S = 1.0  # the periodic catch-up (until LISTEN/NOTIFY wakes it)
KEEP_CHANGES_MS = 3_600_000  # change rows older than this are trimmed
GAP_TTL_S = 60.0  # a seq skipped by a concurrent transaction is looked for this long
MAX_GAPS = 10_000
RECONCILE_S = 300.0  # a full read this often, whatever the change log says


class SnapshotCache:
    """``clock`` (monotonic seconds) and ``sleep`` time the spend throttle and the periodic
    refresh; tests pass a manual clock whose ``sleep`` returns when they advance it."""

    def __init__(
        self,
        db: Database,
        min_interval_s: float = 2.0,
        master: MasterKey | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self._clock = clock
        self._sleep = sleep
        self._master = master
        self._reader = Reader(master)
        self.table = ResourceTable()
        self.spend = SpendScopes()
        self.secret_problems: tuple[str, ...] = ()
        self.notices: tuple[str, ...] = ()
        self._warnings: dict[Ref, str] = {}
        self._notices: dict[Ref, str] = {}
        self._seq: int | None = None  # last config_change seq read (None: nothing read yet)
        self._gaps: dict[int, float] = {}  # seq not seen yet -> monotonic time first missed
        self._published = False
        self._assembled: dpb.Snapshot | None = None
        self._changed = asyncio.Condition()
        self._rebuild_lock = asyncio.Lock()
        self._requested = 0
        self._completed = 0
        self._last_result = False
        self._closed = False
        self.last_error: str = ""
        self.min_interval_s = min_interval_s
        self._last_started = float("-inf")
        self._spend_dirty = False
        self._spend_all = False  # all scopes' spend is dirty
        self._spend_refs: set[ScopeRef] = set()  # these scopes' spend is dirty
        self._sweep_signing_keys = False
        self._soon: asyncio.Task[None] | None = None
        self.on_build: Callable[[float], None] | None = None  # seconds per catch-up (metrics)
        # Every budget whose spend a refresh computed, with the time it used (budget alerts).
        self.on_spend: Callable[[list[BudgetSpend], int], None] | None = None
        # Whether anyone reads this replica's spend seeds now (a connected data plane, the
        # leader's alerts): when not, the periodic sweep skips them, and :meth:`fresh_spend`
        # brings them up to date for the first data plane that connects.
        self.spend_wanted: Callable[[], bool] = lambda: True
        self._spend_stale = False

    # -- what is published -------------------------------------------------------------------

    @property
    def current(self) -> dpb.Snapshot | None:
        """The last good state of the world (``None`` until one valid state was read)."""
        if not self._published:
            return None
        snap = self._assembled
        if snap is None or (snap.version, snap.built_at_ms) != (self.version, self._stamp):
            snap = self.table.snapshot(self._stamp)
            self._assembled = snap
        return snap

    @property
    def published(self) -> bool:
        """One valid state has been read (cheap; :attr:`current` assembles the whole world)."""
        return self._published

    @property
    def master(self) -> MasterKey | None:
        return self._master

    @property
    def version(self) -> str:
        """The config version ("" until published); spend does not change it."""
        return self.table.config_version if self._published else ""

    @property
    def spend_version(self) -> str:
        return self.table.spend_version if self._published else ""

    @property
    def built_at_ms(self) -> int:
        """When the last publication (config or spend) was made."""
        return self._stamp

    @property
    def publication(self) -> int:
        """Counts publications (config or spend)."""
        return self.table.publication

    @property
    def closed(self) -> bool:
        return self._closed

    # -- catching up -------------------------------------------------------------------------

    def rebuild_sync(self) -> bool:
        """Blocking full read (startup, before the event loop serves anything; tests and tools
        that wrote behind the session hooks' back)."""
        started = time.perf_counter()
        self._full = True
        try:
            update, seq = self._db.read_sync(self._read_config)
            published = self._install(update, seq, quiet=False)
            if self.spend.dirty:
                now, spent = now_ms(), list[BudgetSpend]()
                seeds = self._db.read_sync(
                    lambda s: self.spend.seeds(s, now, self._held_seed, spent)
                )
                published |= self._install_spend(seeds)
                self._spent(spent, now)
            return published
        finally:
            self._note_build(started)

    async def rebuild(self, *, quiet: bool = False) -> bool:
        """Catch up with the database; True when something new was published. Callers arriving
        during a catch-up share the next one."""
        self._requested += 1
        ticket = self._requested
        async with self._rebuild_lock:
            if self._completed >= ticket:
                return self._last_result
            target = self._requested
            self._last_started = self._clock()
            started = time.perf_counter()
            try:
                result = await self._catch_up(quiet)
            finally:
                self._note_build(started)
            self._completed, self._last_result = target, result
            if result:
                async with self._changed:
                    self._changed.notify_all()
            return result

    async def _catch_up(self, quiet: bool) -> bool:
        update, seq = await self._db.read(self._read_config)
        published = self._install(update, seq, quiet=quiet)
        if self._spend_dirty:
            self._spend_dirty = False
            self.spend.mark(None if self._spend_all else self._spend_refs)
            self._spend_all, self._spend_refs = False, set()
        if self.spend.dirty:
            now, spent = now_ms(), list[BudgetSpend]()
            seeds = await self._db.read(lambda s: self.spend.seeds(s, now, self._held_seed, spent))
            published |= self._install_spend(seeds)
            self._spent(spent, now)
        return published

    def _spent(self, spent: list[BudgetSpend], now: int) -> None:
        if spent and self.on_spend is not None:
            try:
                self.on_spend(spent, now)
            except Exception:
                log.exception("spend observer failed (the seeds are published)")

    def _read_config(self, s: Session) -> tuple[Update | None, int]:
        """Read the changes since the last catch-up and the resources they name."""
        now = now_ms()
        top = s.exec(select(func.max(ConfigChangeRow.seq))).one() or 0
        if self._seq is None or self._full or self._trimmed_past(s):
            wanted = everything()
            self._gaps.clear()
        else:
            query = select(ConfigChangeRow.seq, ConfigChangeRow.kind, ConfigChangeRow.name)
            cond = col(ConfigChangeRow.seq) > self._seq
            if self._gaps:
                cond = cond | col(ConfigChangeRow.seq).in_(list(self._gaps))
            rows = s.exec(query.where(cond)).all()
            self._note_gaps({r[0] for r in rows if r[0] is not None}, top)
            wanted = from_changes((kind, name) for _, kind, name in rows)
            if self._sweep_signing_keys:
                wanted["signing_key"] = None
            if not wanted:
                return None, top
        provider_names = frozenset(self.table.items["provider"]) if self._published else None
        return self._reader.read(s, wanted, now, provider_names), top

    def _trimmed_past(self, s: Session) -> bool:
        assert self._seq is not None
        low = s.exec(select(func.min(ConfigChangeRow.seq))).one()
        return low is not None and low > self._seq + 1

    def _note_gaps(self, seen: set[int], top: int) -> None:
        """Sequence numbers below the newest that we have not seen may belong to a transaction
        that commits later (PostgreSQL hands out seqs before commit): look for them a while."""
        now = time.monotonic()
        assert self._seq is not None
        for seq in seen:
            self._gaps.pop(seq, None)
        if top - self._seq <= MAX_GAPS:
            for seq in range(self._seq + 1, top + 1):
                if seq not in seen:
                    self._gaps.setdefault(seq, now)
        for seq, first in list(self._gaps.items()):
            if now - first > GAP_TTL_S:
                del self._gaps[seq]

    def _install(self, update: Update | None, seq: int, *, quiet: bool) -> bool:
        """Validate and commit a read; the change-log position advances only when it is good."""
        self._sweep_signing_keys = self._full = False
        if update is None:
            self._seq = seq
            return False
        staged = self.table.stage(update)
        problems = self.table.validate(staged)
        if problems:
            self.last_error = "; ".join(problems)
            log.error(
                "snapshot not published, keeping version %s: %s",
                self.version or "<none>",
                "; ".join(problems[:10]),
            )
            return False
        self.last_error = ""
        self._note_problems(update)
        self._seq = seq
        first = not self._published
        self.table.commit(staged)
        self.spend.follow(self.table, staged)
        self._published = True
        if staged or first:
            self._stamp = now_ms()
            self._log(staged, quiet)
        return bool(staged) or first

    _stamp = 0
    _full = False  # the next catch-up reads everything (reconciliation)

    def _held_seed(self, name: str) -> Message | None:
        entry = self.table.items["spend"].get(name)
        return entry[1] if entry is not None else None

    def _install_spend(self, seeds: dict[str, Message | None]) -> bool:
        staged = self.table.stage_spend(seeds)
        self.table.commit(staged)
        if staged:
            self._stamp = now_ms()
            log.debug("spend %s published: %d seeds changed", self.spend_version, len(staged))
        return bool(staged)

    def _log(self, staged: dict[Ref, Entry | None], quiet: bool) -> None:
        counts: dict[str, int] = {}
        for kind, _ in staged:
            counts[kind] = counts.get(kind, 0) + 1
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "snapshot %s published: %s changed; %d workspaces, %d keys, %d providers, %d routes",
            self.version,
            ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing",
            len(self.table.items["workspace"]),
            len(self.table.items["key"]),
            len(self.table.items["provider"]),
            len(self.table.items["route"]),
        )

    def _note_problems(self, up: Update) -> None:
        for ref in [r for r in self._warnings if r[0] in up.warned_kinds]:
            del self._warnings[ref]
        for ref, text in up.warnings.items():
            if text not in self._warnings.values():
                log.error("secret left out of the snapshot: %s", text)
            self._warnings[ref] = text
        self.secret_problems = tuple(self._warnings[r] for r in sorted(self._warnings))
        if ("developer", ALL) in up.noticed:
            self._notices.clear()
        for ref in up.noticed:
            self._notices.pop(ref, None)
        for ref, text in up.notices.items():
            log.warning("snapshot: %s", text)
            self._notices[ref] = text
        self.notices = tuple(self._notices[r] for r in sorted(self._notices))

    def _note_build(self, started: float) -> None:
        if self.on_build is not None:
            self.on_build(time.perf_counter() - started)

    # -- spend -------------------------------------------------------------------------------

    def rebuild_soon(self, scopes: Iterable[ScopeRef] | None = None) -> None:
        """New spend was ingested for ``scopes`` (None: any scope); returns at once."""
        if self._closed:
            return
        self._spend_dirty = True
        if scopes is None:
            self._spend_all = True
        else:
            self._spend_refs = self._spend_refs | set(scopes)
        if self._soon is None or self._soon.done():
            self._soon = asyncio.get_running_loop().create_task(
                self._rebuild_when_due(), name="snapshot-rebuild-soon"
            )

    async def fresh_spend(self) -> None:
        """Before serving a data plane: if periodic sweeps skipped the spend seeds (nobody read
        them), refresh them all now."""
        if self._spend_stale and not self._closed:
            self._spend_stale = False
            self._spend_dirty = self._spend_all = True
            await self.rebuild(quiet=True)

    async def drain(self) -> None:
        """Wait until the catch-up :meth:`rebuild_soon` scheduled has run (after the throttle's
        delay) and published; returns at once when none is pending."""
        if self._soon is not None:
            await asyncio.wait([self._soon])  # neither raises its outcome nor cancels it

    async def _rebuild_when_due(self) -> None:
        while self._spend_dirty and not self._closed:
            delay = self._last_started + self.min_interval_s - self._clock()
            if delay > 0:
                await self._sleep(delay)
            try:
                await self.rebuild(quiet=True)
            except Exception:
                log.exception("spend refresh after ingest failed; will retry periodically")
                return

    # -- waiting -----------------------------------------------------------------------------

    async def wait_for_change(self, seen_version: str, timeout: float | None = None) -> bool:
        """Wait until the config version differs from ``seen_version`` or the cache closes.
        Returns True on a change, False on timeout or close."""

        def changed() -> bool:
            return self.version != seen_version

        return await self._wait(changed, timeout) and not self._closed and changed()

    async def wait_for_publication(self, seen: int, timeout: float | None = None) -> bool:
        """Wait until anything (config or spend) is published after publication ``seen``."""
        return await self._wait(lambda: self.publication != seen, timeout) and not self._closed

    async def _wait(self, changed: Callable[[], bool], timeout: float | None) -> bool:
        """False on timeout; True once ``changed()`` or the cache is closed."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):  # not wait_for: see gwcommon.tasks
                    await self._changed.wait_for(lambda: self._closed or changed())
            except TimeoutError:
                return False
        return True

    async def close(self) -> None:
        """Wake every watcher so streams can end before the server stops."""
        self._closed = True
        if self._soon is not None and not self._soon.done():
            self._soon.cancel()
        async with self._changed:
            self._changed.notify_all()

    async def refresh_forever(
        self,
        interval_s: float,
        sweep_s: float | None = None,
        reconcile_s: float = RECONCILE_S,
        spend_sweep_s: float | None = None,
    ) -> None:
        """Catch up every ``min(interval_s, 1 s)``; every ``sweep_s`` (default ``interval_s``)
        also re-read the signing keys and trim the change log, and every ``spend_sweep_s``
        (default ``sweep_s``) refresh all spend; every ``reconcile_s`` read everything (a safety
        net for writes that bypass the session hooks: raw SQL, or a control plane of the previous
        version during a rolling upgrade)."""
        check = min(interval_s, CHECK_INTERVAL_S)
        sweep = interval_s if sweep_s is None else sweep_s
        spend_sweep = sweep if spend_sweep_s is None else spend_sweep_s
        last_sweep = last_spend_sweep = last_reconcile = self._clock()
        while not self._closed:
            await self._sleep(check)
            try:
                if self._clock() - last_reconcile >= reconcile_s:
                    last_reconcile = self._clock()
                    self._full = True
                if self._clock() - last_spend_sweep >= spend_sweep:
                    last_spend_sweep = self._clock()
                    if self.spend_wanted():
                        self._spend_dirty = self._spend_all = True
                    else:  # 20,000 keys' spend read for nobody: once somebody asks
                        self._spend_stale = True
                if self._clock() - last_sweep >= sweep:
                    last_sweep = self._clock()
                    self._sweep_signing_keys = True
                    await self._db.run(trim)
                await self.rebuild(quiet=True)
            except Exception:  # keep refreshing; the DB may be back next time
                log.exception("periodic snapshot catch-up failed")


def trim(s: Session, keep_ms: int = KEEP_CHANGES_MS) -> int:
    """Delete change rows older than ``keep_ms``, always keeping the newest; returns how many."""
    top = s.exec(select(func.max(ConfigChangeRow.seq))).one()
    if top is None:
        return 0
    result = s.exec(
        delete(ConfigChangeRow).where(
            col(ConfigChangeRow.at_ms) < now_ms() - keep_ms, col(ConfigChangeRow.seq) < top
        )
    )
    return int(result.rowcount or 0)
