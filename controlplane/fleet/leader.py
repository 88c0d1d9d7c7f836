"""Once per fleet: background jobs run on one replica at a time, the leader.

Contract:

* :class:`Leadership` runs ``jobs`` (coroutine factories: purges, housekeeping) while this
  replica is the leader and cancels them the moment it is not; :attr:`is_leader` is read by work
  that is triggered rather than periodic (budget alert evaluation and its webhooks).
* :class:`SoleLeader` (SQLite: one replica by design) is the leader from :meth:`start` to
  :meth:`close`.
* :class:`PgLeader` holds a PostgreSQL session-level advisory lock (keyed by database and
  schema, :func:`controlplane.fleet.pg.namespace`) on a dedicated connection of its own. A
  follower tries ``pg_try_advisory_lock`` every ``retry_s``; the leader checks its connection as
  often (``SELECT 1``) and steps down at once when it fails, before reconnecting with backoff.
  The lock is released by PostgreSQL when the leader's session ends: on :meth:`close`, or
  when the process dies (its socket closes), so another replica takes over within ``retry_s``.
  A leader cut off without its socket closing loses the lock when the server's TCP keepalive
  gives up on the session; it steps down itself at its next check, which fails too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg

from controlplane.fleet.pg import conninfo, namespace
from controlplane.store.db import Database
from gwcommon.tasks import cancel_and_wait

log = logging.getLogger(__name__)

RETRY_S = 1.0
MAX_BACKOFF_S = 10.0
Job = tuple[str, Callable[[], Coroutine[Any, Any, None]]]


class Leadership:
    kind = "abstract"

    def __init__(self, jobs: list[Job] | None = None) -> None:
        self.jobs: list[Job] = list(jobs or [])
        self._running: list[asyncio.Task[None]] = []
        self.is_leader = False
        self.changed = asyncio.Event()  # set at every change of leadership (tests, metrics)
        self.terms = 0  # times this replica became the leader

    def add_job(self, name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.jobs.append((name, factory))
        if self.is_leader:
            self._running.append(asyncio.get_running_loop().create_task(factory(), name=name))

    def _become_leader(self) -> None:
        if self.is_leader:
            return
        self.is_leader = True
        self.terms += 1
        loop = asyncio.get_running_loop()
        self._running = [loop.create_task(factory(), name=name) for name, factory in self.jobs]
        log.info(
            "fleet: this replica is the leader (%s); running %d background jobs",
            self.kind,
            len(self.jobs),
        )
        self.changed.set()

    async def _step_down(self, why: str) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        tasks, self._running = self._running, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(Exception):
                await cancel_and_wait(task)
        log.info("fleet: this replica is no longer the leader (%s)", why)
        self.changed.set()

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self._step_down("shutting down")


class SoleLeader(Leadership):
    kind = "single replica"

    async def start(self) -> None:
        self._become_leader()


class PgLeader(Leadership):
    kind = "PostgreSQL advisory lock"

    def __init__(
        self, db: Database, jobs: list[Job] | None = None, *, retry_s: float = RETRY_S
    ) -> None:
        super().__init__(jobs)
        self._conninfo = conninfo(db)
        digest = hashlib.sha256(f"{namespace(db)}/leader".encode()).digest()
        self.lock_key = int.from_bytes(digest[:8], "big", signed=True)
        self.retry_s = retry_s
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.attempts = 0  # tries at the lock as a follower

    def _become_leader(self) -> None:
        if not self._closing:
            super()._become_leader()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._campaign(), name="fleet-leader")

    async def close(self) -> None:
        """Stop the jobs first, then end the session (which releases the lock)."""
        self._closing = True
        await self._step_down("shutting down")
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _campaign(self) -> None:
        delay = self.retry_s
        try:
            while True:
                try:
                    conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                    async with conn:
                        delay = self.retry_s
                        await self._hold(conn)
                except (psycopg.Error, OSError) as exc:
                    await self._step_down(f"its lock connection failed: {type(exc).__name__}")
                    log.warning("fleet: leader lock connection lost; retrying in %.1f s", delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_S)
        finally:
            # Cancelled (close): step down before the connection (and the lock) goes.
            await self._step_down("shutting down")

    async def _hold(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            if self.is_leader:
                async with asyncio.timeout(self.retry_s * 3):  # not wait_for: gwcommon.tasks
                    await conn.execute("SELECT 1")
            else:
                self.attempts += 1
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self.lock_key,))
                row = await cur.fetchone()
                if row is not None and row[0]:
                    self._become_leader()
            await asyncio.sleep(self.retry_s)
