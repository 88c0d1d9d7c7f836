"""Engine from a URL, the schema (migrations: :mod:`controlplane.store.schema`), and an async facade over sync SQLModel sessions.

Supported URLs:

* ``sqlite:///relative/or/absolute/path.db`` — parent directories are created; every connection
  gets WAL journaling, ``busy_timeout`` and foreign keys. SQLite allows one writer at a time, so
  write transactions are serialised in-process (a lock) instead of failing with "database is
  locked" when a read transaction tries to upgrade.
* ``postgresql://user@host:port/db`` (or ``postgres://``) — mapped to the psycopg 3 driver.

:class:`Database` runs each unit of work in a worker thread (``asyncio.to_thread``) so the
grpc.aio event loop never blocks on I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import Session, create_engine

from controlplane.store import changes as _changes  # noqa: F401  (registers the hooks)
from controlplane.store.schema import Migrator, Status

# Registers the hook that keeps the ledger's totals and rollups in step with ORM inserts.
from controlplane.usage import derived as _ledger_hook  # noqa: F401

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 10_000


def normalize_url(url: str) -> str:
    """Map user-facing URLs to SQLAlchemy ones (``postgresql://`` → ``postgresql+psycopg://``)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def redact_url(url: str) -> str:
    """The URL with any password hidden, for logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def make_engine(url: str) -> Engine:
    """Create the engine for ``url``; raises ``ValueError`` for unsupported schemes."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"invalid database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db_path = parsed.database or ""
        if db_path and db_path != ":memory:" and not db_path.startswith("file:"):
            Path(db_path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise ValueError(
        f"unsupported database {backend!r}: use sqlite:///path.db or postgresql://user@host/db"
    )


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


class Database:
    """The control plane's database handle.

    ``await db.run(fn)`` calls ``fn(session)`` in a worker thread inside one transaction,
    commits if it returns, rolls back if it raises, and returns its result. Objects are not
    expired on commit, so ``fn`` may return rows for the caller to read.
    """

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        # SQLite: one writer at a time; serialise here rather than spin on SQLITE_BUSY.
        self._write_lock: threading.Lock | None = (
            threading.Lock() if self.dialect == "sqlite" else None
        )

    def prepare_schema(self, *, migrate: bool) -> Status:
        """Bring the schema to this code's revision, or refuse (:class:`SchemaError`): see
        :meth:`controlplane.store.schema.Migrator.prepare`. An empty database is initialised
        and one made before migrations is adopted either way; one behind head is upgraded only
        when ``migrate``."""
        return Migrator(self.engine).prepare(migrate=migrate)

    def create_all(self) -> None:
        """The schema at head, migrating as needed (tests, tools): ``prepare_schema(migrate=True)``."""
        self.prepare_schema(migrate=True)

    def run_sync(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one transaction on the calling thread."""
        if self._write_lock is None:
            return self._transaction(fn)
        with self._write_lock:
            return self._transaction(fn)

    def read_sync(self, fn: Callable[[Session], T]) -> T:
        """Like :meth:`run_sync` for read-only work: never takes the SQLite writer lock."""
        return self._transaction(fn)

    async def run(self, fn: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(self.run_sync, fn)

    async def read(self, fn: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(self.read_sync, fn)

    async def dry_run(self, fn: Callable[[Session], T]) -> T:
        """Like :meth:`run`, but the transaction is always rolled back: what ``fn`` writes is
        checked by the database (constraints, flushes) and then forgotten."""

        def rolled_back() -> T:
            with self._write_lock or contextlib.nullcontext():
                with Session(self.engine, expire_on_commit=False) as session:
                    if self.dialect == "sqlite":
                        # pysqlite begins a transaction only before its first write, so a
                        # SAVEPOINT issued first would be the outermost one, and releasing it
                        # would commit: open the transaction the savepoints nest in.
                        session.connection().exec_driver_sql("BEGIN")
                    try:
                        return fn(session)
                    finally:
                        session.rollback()

        return await asyncio.to_thread(rolled_back)

    def _transaction(self, fn: Callable[[Session], T]) -> T:
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                result = fn(session)
                session.commit()
            except BaseException:
                session.rollback()
                raise
            return result

    def dispose(self) -> None:
        self.engine.dispose()
