"""The fleet bus on PostgreSQL: ``LISTEN/NOTIFY``.

Contract:

* Announcing: :meth:`PgBus.stage` runs ``SELECT pg_notify(channel, payload)`` inside the writing
  transaction, so the notice is delivered to every listener if and only if the transaction
  commits, after the commit. A payload is JSON ``{"t": topic, "o": origin, "i": [ids]}``; ids
  are split over several notices so none exceeds :data:`MAX_PAYLOAD` bytes (PostgreSQL refuses
  payloads of 8,000 bytes or more).
* Listening: one dedicated autocommit connection per replica (not from the pool), ``LISTEN
  channel``; it is checked with ``SELECT 1`` every ``check_s`` of silence (with TCP keepalives,
  so a dead server is noticed), and re-established with exponential backoff (``backoff_s`` up
  to ``max_backoff_s``) when it fails. Every (re)connection delivers a *resync* to every topic:
  notices sent while no connection listened are lost by PostgreSQL's design, so subscribers
  catch up with the database instead (the snapshot is rebuilt, the token cache emptied, the
  audit feed reads past its last id, the usage feed reads what was ingested since the previous
  connection was last known to listen: ``Notice.since_ms``).
* The channel is per database *and schema* (``tollgate_<hash>``), so fleets sharing a server
  (one schema each) never hear each other. :func:`namespace` also keys the leader lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from controlplane.fleet.bus import FleetBus, Notice
from controlplane.fleet.topics import TOPICS
from controlplane.store.db import Database
from gwcommon.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MAX_PAYLOAD = 7000
CHECK_S = 5.0
BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def conninfo(db: Database) -> str:
    """The psycopg connection string of ``db``'s URL (the SQLAlchemy driver suffix dropped),
    with a connect timeout and TCP keepalives (a vanished server is noticed in ~25 s)."""
    url = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
    return make_conninfo(url, connect_timeout=5, **KEEPALIVES)


def namespace(db: Database) -> str:
    """A short stable name for this database and schema (channel and lock key)."""
    database, schema = db.read_sync(
        lambda s: tuple(s.execute(text("SELECT current_database(), current_schema()")).one())
    )
    return hashlib.sha256(f"{database}/{schema}".encode()).hexdigest()[:16]


def payloads(topic: str, origin: str, ids: list[str]) -> list[str]:
    """The notices' payloads for one topic: one without ids, or the ids in chunks."""
    head = {"t": topic, "o": origin}
    if not ids:
        return [json.dumps(head, separators=(",", ":"))]
    out: list[str] = []
    chunk: list[str] = []
    size = 40  # the envelope
    for rid in ids:
        cost = len(json.dumps(rid)) + 1
        if chunk and size + cost > MAX_PAYLOAD:
            out.append(json.dumps({**head, "i": chunk}, separators=(",", ":")))
            chunk, size = [], 40
        chunk.append(rid)
        size += cost
    out.append(json.dumps({**head, "i": chunk}, separators=(",", ":")))
    return out


def parse(payload: str) -> Notice | None:
    """The notice in a payload; None (logged) for anything this version does not know."""
    try:
        data: Any = json.loads(payload)
        topic, origin, ids = data["t"], data["o"], data.get("i", [])
    except (ValueError, KeyError, TypeError):
        log.warning("fleet bus: ignored a malformed notice (%d bytes)", len(payload))
        return None
    if topic not in TOPICS:
        return None  # a newer replica's topic: not ours to act on
    return Notice(str(topic), str(origin), tuple(str(i) for i in ids))


class PgBus(FleetBus):
    kind = "postgresql"

    def __init__(
        self,
        db: Database,
        *,
        check_s: float = CHECK_S,
        backoff_s: float = BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        super().__init__()
        self._conninfo = conninfo(db)
        self.namespace = namespace(db)
        self.channel = f"tollgate_{self.namespace}"
        self.check_s = check_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while the LISTEN connection is up
        self.connections = 0  # successful (re)connections
        self.backend_pid = 0  # the listening session's server process (tests, diagnosis)

    def stage(self, session: Session, topics: dict[str, list[str]]) -> None:
        stmt = text("SELECT pg_notify(:channel, :payload)")
        for topic, ids in topics.items():
            for payload in payloads(topic, self.origin, ids):
                session.execute(stmt, {"channel": self.channel, "payload": payload})

    async def start(self) -> None:
        await super().start()
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="fleet-listen")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        self.listening.clear()
        await super().close()

    async def _listen(self) -> None:
        delay = self.backoff_s
        alive_ms = 0  # the first connection has missed nothing: the server built from the db
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    self.backend_pid = conn.info.backend_pid
                    self.connections += 1
                    if self.connections > 1:
                        log.info("fleet bus: listening again on %s", self.channel)
                    self.listening.set()
                    delay = self.backoff_s
                    self.resync(since_ms=alive_ms)
                    alive_ms = _now_ms()
                    while True:
                        # Closed on every way out: psycopg's notifies() holds the connection's
                        # lock across its yields, so a generator left suspended at one would keep
                        # it until garbage collection, and the connection's exit needs it.
                        notices = conn.notifies(timeout=self.check_s)
                        async with contextlib.aclosing(notices):
                            async for n in notices:
                                notice = parse(n.payload)
                                if notice is not None:
                                    self.deliver(notice)
                        await conn.execute("SELECT 1")  # silence: is the connection alive?
                        alive_ms = _now_ms()  # every notice sent before this was heard
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning(
                    "fleet bus: listening connection lost (%s); retrying in %.1f s",
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
