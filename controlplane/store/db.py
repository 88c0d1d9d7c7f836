"""Engine from a URL, schema creation, and an async facade over sync SQLModel sessions.

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
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.schema import CreateColumn
from sqlmodel import Session, create_engine

from controlplane.store import models

# Registers the hook that keeps the ledger's totals and rollups in step with ORM inserts.
from controlplane.usage import derived as _ledger_hook  # noqa: F401

log = logging.getLogger(__name__)
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


def add_missing_columns(engine: Engine) -> list[str]:
    """Add columns and indexes the models declare but existing tables lack; returns their names.

    Only additive, backward-compatible changes: a missing NOT NULL column must have a server
    default (existing rows take it). Safe when several control planes start at once: on
    PostgreSQL ``ADD COLUMN IF NOT EXISTS``; a lost index race is checked again and ignored.
    """
    added: list[str] = []
    dialect = engine.dialect
    insp = inspect(engine)
    tables = set(insp.get_table_names())
    for table in models.metadata.sorted_tables:
        if table.name not in tables:
            continue
        have = {c["name"] for c in insp.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable and column.server_default is None:
                raise RuntimeError(
                    f"table {table.name} lacks column {column.name}, which has no server "
                    "default to fill existing rows: migrate the database by hand"
                )
            spec = str(CreateColumn(column).compile(dialect=dialect))
            guard = "IF NOT EXISTS " if dialect.name == "postgresql" else ""
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    f"ALTER TABLE {dialect.identifier_preparer.format_table(table)} "
                    f"ADD COLUMN {guard}{spec}"
                )
            added.append(f"{table.name}.{column.name}")
        indexes = {i["name"] for i in insp.get_indexes(table.name)}
        for index in table.indexes:
            if index.name in indexes:
                continue
            try:
                with engine.begin() as conn:
                    index.create(conn, checkfirst=True)
            except DBAPIError:  # another control plane created it meanwhile
                if index.name not in {i["name"] for i in inspect(engine).get_indexes(table.name)}:
                    raise
            added.append(f"index {index.name}")
    return added


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

    def create_all(self) -> None:
        """Create missing tables, then add missing columns and indexes (idempotent).

        The project has no migration tool yet. ``create_all`` never alters an existing table,
        so :func:`add_missing_columns` does the one kind of change made so far: new columns
        that have a server default, and new indexes. Anything else needs a real migration.
        """
        models.metadata.create_all(self.engine)
        added = add_missing_columns(self.engine)
        if added:
            log.info("schema upgraded: added %s", ", ".join(added))

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
