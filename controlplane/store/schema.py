"""Bringing a database to this code's schema revision, safely with several replicas.

A database is in one of five states (:class:`Status`):

* ``empty`` — none of the baseline's tables: initialised at head.
* ``unversioned`` — the tables of a control plane from before migrations (``create_all``), no
  Alembic version: checked against the baseline (:mod:`~controlplane.store.migrations.adopt`)
  and stamped as the baseline, or refused with the differences.
* ``behind`` — revisions this code has are missing: applied by ``gwctl controlplane migrate`` or
  ``serve --migrate``; plain ``serve`` refuses (:class:`SchemaError` says what to run).
* ``current`` — at head.
* ``ahead`` — migrated by newer code: served when every newer revision is backward compatible
  (expand-only, per the ``schema_revision`` table), refused otherwise.

Every decision and change happens in one transaction holding a lock (PostgreSQL: a
transaction-scoped advisory lock per database and schema; SQLite: ``BEGIN IMMEDIATE``, its write
lock), so replicas starting together migrate once, the others wait and then find the database
at head, and a revision that fails leaves nothing behind (DDL included, on both databases). Everything runs in the schema
the connection's ``search_path`` selects, Alembic's version table included.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from controlplane.store.migrations import BASELINE, VERSION_TABLE, alembic_config, bookkeeping
from controlplane.store.migrations.adopt import baseline_differences, baseline_tables

log = logging.getLogger(__name__)

# SQLite has no advisory locks; several control planes in one process (tests) serialise here.
_SQLITE_LOCK = threading.Lock()
_PG_LOCK_SQL = text(
    "SELECT pg_advisory_xact_lock(hashtextextended("
    "'tollgate.migrate:' || coalesce(current_schema(), ''), 0))"
)


class SchemaError(Exception):
    """The database cannot be used or migrated as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Status:
    state: str  # empty | unversioned | behind | current | ahead
    current: str | None  # the database's revision (None: no version recorded)
    head: str  # this code's newest revision
    pending: tuple[str, ...] = ()  # revisions this code would apply, oldest first
    newer: tuple[bookkeeping.Applied, ...] = field(default=())  # when ahead: newest first

    @property
    def servable(self) -> bool:
        """Whether ``serve`` (without ``--migrate``) starts on it."""
        if self.state == "ahead":
            return all(a.backward_compatible for a in self.newer)
        return self.state in ("current", "empty")


class Migrator:
    """This code's revisions (plus ``extra_version_dirs``, for tests) applied to ``engine``."""

    def __init__(self, engine: Engine, extra_version_dirs: tuple[Path, ...] = ()) -> None:
        self.engine = engine
        self.extra_version_dirs = extra_version_dirs
        self.script = ScriptDirectory.from_config(
            alembic_config(extra_version_dirs=extra_version_dirs)
        )
        heads = self.script.get_heads()
        if len(heads) != 1:
            raise SchemaError(
                f"the migrations have {len(heads)} heads ({', '.join(sorted(heads))}): two "
                "revisions share a down_revision; renumber one onto the other"
            )
        self.head = heads[0]

    @staticmethod
    def release_head() -> str:
        """This release's newest revision (no database needed)."""
        heads = ScriptDirectory.from_config(alembic_config()).get_heads()
        return ",".join(sorted(heads))

    def describe(self, revision: str | None) -> str:
        """``"0002 (index on …)"``: a revision id with its docstring's first line."""
        if revision is None:
            return "none"
        try:
            doc = (self.script.get_revision(revision).doc or "").strip().splitlines()
        except Exception:  # a revision this code does not have
            return f"{revision} (unknown to this release)"
        return f"{revision} ({doc[0].rstrip('.')})" if doc else revision

    # -- reading ---------------------------------------------------------------------------

    def status(self, conn: Connection | None = None) -> Status:
        if conn is None:
            with self.engine.connect() as c:
                return self.status(c)
        tables = set(inspect(conn).get_table_names())
        current = self._current(conn) if VERSION_TABLE in tables else None
        if current is None:
            ours = tables & baseline_tables()
            if not ours:
                return Status("empty", None, self.head, self._pending(None))
            return Status("unversioned", None, self.head, self._pending(BASELINE))
        if current == self.head:
            return Status("current", current, self.head)
        if self._known(current):  # one linear chain: a known revision is an ancestor of head
            return Status("behind", current, self.head, self._pending(current))
        return Status("ahead", current, self.head, newer=self._newer(conn, current))

    def _current(self, conn: Connection) -> str | None:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        heads = ctx.get_current_heads()
        if len(heads) > 1:
            raise SchemaError(f"the database records several revisions ({', '.join(heads)})")
        return heads[0] if heads else None

    def _known(self, revision: str) -> bool:
        return revision in self.chain()

    def chain(self) -> list[str]:
        """Every revision of this code, oldest first."""
        return [s.revision for s in reversed(list(self.script.walk_revisions()))]

    def _pending(self, current: str | None) -> tuple[str, ...]:
        chain = self.chain()
        return tuple(chain if current is None else chain[chain.index(current) + 1 :])

    def _newer(self, conn: Connection, current: str) -> tuple[bookkeeping.Applied, ...]:
        """The database's revisions after this code's head, newest first, from its records."""
        applied = (
            bookkeeping.read_all(conn)
            if bookkeeping.TABLE_NAME in set(inspect(conn).get_table_names())
            else {}
        )
        newer: list[bookkeeping.Applied] = []
        revision = current
        while revision != self.head:
            record = applied.get(revision)
            if record is None or self._known(revision) or len(newer) > len(applied):
                raise SchemaError(
                    f"the database is at revision {current}, which this release (head "
                    f"{self.head}) does not know, and its schema_revision records do not lead "
                    "back to this release's head: run a release that knows it"
                )
            newer.append(record)
            revision = record.down_revision
        return tuple(newer)

    # -- changing --------------------------------------------------------------------------

    def prepare(self, *, migrate: bool) -> Status:
        """What ``serve`` does before serving; returns the status it serves at.

        Empty → head; unversioned → checked and stamped as the baseline; behind → upgraded when
        ``migrate``, else :class:`SchemaError`; ahead → :class:`SchemaError` unless compatible.
        A refusal leaves the database as it was (the transaction rolls back).
        """
        with self._locked() as conn:
            status = self.status(conn)
            if status.state == "empty":
                self._upgrade(conn, "head")
                log.info("database initialised at schema revision %s", self.describe(self.head))
                return self.status(conn)
            adopted = status.state == "unversioned"
            if adopted:
                self._check_baseline(conn)
                if not migrate and status.pending:  # refused below: leave it untouched
                    raise SchemaError(self._behind_message(replace(status, current=BASELINE), True))
                self._adopt(conn)
                status = self.status(conn)
            if status.state == "behind":
                if not migrate:
                    raise SchemaError(self._behind_message(status, adopted))
                self._upgrade(conn, "head")
                log.info(
                    "database migrated from schema revision %s to %s",
                    status.current,
                    self.describe(self.head),
                )
                return self.status(conn)
            if status.state == "ahead":
                self._check_ahead(status)
            return status

    def upgrade(self, to: str = "head") -> tuple[Status, Status]:
        """``gwctl controlplane migrate``: adopt or initialise as needed, then upgrade to ``to``
        (a revision of this code, or ``head``); returns the statuses before and after."""
        target = self._target(to)
        with self._locked() as conn:
            before = self.status(conn)
            if before.state == "ahead":
                self._check_ahead(before)
                return before, before
            if before.state == "unversioned":
                self._check_baseline(conn)
                self._adopt(conn)
            current = self.status(conn).current
            chain = self.chain()
            if current is not None and chain.index(target) < chain.index(current):
                raise SchemaError(
                    f"the database is at {current}, past {target}: migrations only go forward "
                    "(restore a backup to go back)"
                )
            if current != target:
                self._upgrade(conn, target)
            return before, self.status(conn)

    def upgrade_sql(self, to: str = "head") -> str:
        """The SQL ``upgrade(to)`` would run, without running it (``--sql``): reads the
        database's revision, changes nothing."""
        target = self._target(to)
        with self.engine.connect() as conn:
            status = self.status(conn)
            if status.state == "ahead":
                self._check_ahead(status)
                return (
                    f"-- the database is at {status.current}, ahead of {self.head}: nothing to do\n"
                )
            if status.state == "unversioned":
                self._check_baseline(conn)
        out = io.StringIO()
        out.write(bookkeeping.create_table_sql(self.engine.dialect) + "\n\n")
        start = status.current
        if status.state == "unversioned":
            out.write(f"-- adopt the database made before migrations as {BASELINE}\n")
            self._command(out).stamp_sql(BASELINE)
            start = BASELINE
        if start != target:
            self._command(out).upgrade_sql(f"{start}:{target}" if start else target)
        return out.getvalue()

    # -- internals -------------------------------------------------------------------------

    def _target(self, to: str) -> str:
        if to == "head":
            return self.head
        if to not in self.chain():
            raise SchemaError(
                f"unknown revision {to!r}: this release has {', '.join(self.chain())}"
            )
        return to

    def _behind_message(self, status: Status, adopted: bool) -> str:
        where = (
            f"the database predates schema migrations and matches the baseline {status.current}"
            if adopted
            else f"the database schema is at revision {status.current}"
        )
        return (
            f"{where}, behind this release's "
            f"{self.describe(self.head)}; {len(status.pending)} migration(s) to apply: "
            f"{', '.join(status.pending)}. Run `gwctl controlplane migrate --db <this URL>` "
            "first, or start with --migrate"
        )

    def _check_ahead(self, status: Status) -> None:
        breaking = [a.revision for a in status.newer if not a.backward_compatible]
        if breaking:
            raise SchemaError(
                f"the database was migrated by a newer release (revision {status.current}, this "
                f"release's head is {self.head}) and revision(s) {', '.join(breaking)} are not "
                "backward compatible: run the newer release"
            )
        log.warning(
            "the database is at schema revision %s, newer than this release's %s; the newer "
            "revision(s) %s are backward compatible: serving",
            status.current,
            self.head,
            ", ".join(a.revision for a in reversed(status.newer)),
        )

    def _check_baseline(self, conn: Connection) -> None:
        problems = baseline_differences(conn)
        if problems:
            shown = "; ".join(problems[:12]) + ("; …" if len(problems) > 12 else "")
            raise SchemaError(
                "the database has Tollgate tables but no migration history (it predates schema "
                f"migrations), and they differ from the baseline revision {BASELINE}: {shown}. "
                "Start the last release before migrations once against it (it adds the columns "
                "it lacks) or fix it by hand, then start again"
            )

    def _adopt(self, conn: Connection) -> None:
        """Stamp a database made before migrations, already checked, as the baseline."""
        bookkeeping.ensure_table(conn)
        command.stamp(self._config(conn), BASELINE)
        log.info("database made before schema migrations matches %s: stamped", BASELINE)

    def _upgrade(self, conn: Connection, target: str) -> None:
        bookkeeping.ensure_table(conn)
        command.upgrade(self._config(conn), target)

    def _config(self, conn: Connection) -> Config:
        return alembic_config(
            connection=conn,
            extra_version_dirs=self.extra_version_dirs,
            on_version_apply=bookkeeping.record_applied,
        )

    def _command(self, out: io.StringIO) -> _Offline:
        return _Offline(self, out)

    @contextmanager
    def _locked(self) -> Iterator[Connection]:
        """One transaction holding the migration lock; commits when the block returns, rolls
        everything back (DDL included) when it raises."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as conn:
                conn.execute(_PG_LOCK_SQL)
                yield conn
            return
        with _SQLITE_LOCK, self.engine.connect() as conn:
            # pysqlite opens transactions only before DML, so DDL would commit as it goes: take
            # the transaction into our hands. BEGIN IMMEDIATE is also SQLite's write lock, which
            # serialises control planes in other processes on the same file.
            raw: Any = conn.connection.dbapi_connection
            previous = raw.isolation_level
            raw.isolation_level = None
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
            finally:
                raw.isolation_level = previous


class _Offline:
    """``--sql`` rendering through Alembic's offline mode into ``out``."""

    def __init__(self, migrator: Migrator, out: io.StringIO) -> None:
        self.migrator = migrator
        self.out = out

    def _config(self) -> Config:
        cfg = alembic_config(
            url=self.migrator.engine.url.render_as_string(hide_password=True),
            extra_version_dirs=self.migrator.extra_version_dirs,
            on_version_apply=bookkeeping.record_applied,
        )
        cfg.output_buffer = self.out
        return cfg

    def stamp_sql(self, revision: str) -> None:
        command.stamp(self._config(), revision, sql=True)

    def upgrade_sql(self, revisions: str) -> None:
        command.upgrade(self._config(), revisions, sql=True)
