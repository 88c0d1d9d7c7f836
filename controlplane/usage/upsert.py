"""Atomic additive upserts for the ledger's derived tables, on SQLite and PostgreSQL.

Contract of :func:`upsert_add`: for every given row, insert it, or, when a row with the same
primary key exists, add the ``added`` columns to it (``spent = spent + excluded.spent``), keep the
smaller of the ``least`` columns and the greater of the ``greatest`` columns, and overwrite the
``replaced`` ones. The database does the arithmetic on the stored row, so two transactions (two
control-plane replicas) adding to one cell both count. Rows are sent sorted by primary key, so
concurrent writers lock cells in one order and cannot deadlock each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

CHUNK_ROWS = 500  # rows per statement: far below both bind-parameter limits for our tables


def _dialect(conn: Connection | Session) -> str:
    return conn.get_bind().dialect.name if isinstance(conn, Session) else conn.dialect.name


def upsert_add(
    conn: Connection | Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    added: Iterable[str] = (),
    least: Iterable[str] = (),
    greatest: Iterable[str] = (),
    replaced: Iterable[str] = (),
) -> None:
    if not rows:
        return
    dialect = _dialect(conn)
    if dialect == "postgresql":
        insert_fn: Any = postgresql.insert
        lo: Any = func.least
        hi: Any = func.greatest
    elif dialect == "sqlite":
        insert_fn = sqlite.insert
        lo, hi = func.min, func.max  # SQLite's two-argument min()/max() are scalar
    else:  # pragma: no cover - make_engine only builds these two
        raise RuntimeError(f"unsupported dialect {dialect}")
    keys = [c.name for c in table.primary_key.columns]
    ordered = sorted(rows, key=lambda r: tuple(r[k] for k in keys))
    stmt = insert_fn(table)
    updates: dict[str, Any] = {}
    for name in added:
        updates[name] = table.c[name] + stmt.excluded[name]
    for name in least:
        updates[name] = lo(table.c[name], stmt.excluded[name])
    for name in greatest:
        updates[name] = hi(table.c[name], stmt.excluded[name])
    for name in replaced:
        updates[name] = stmt.excluded[name]
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates)
    for start in range(0, len(ordered), CHUNK_ROWS):
        conn.execute(stmt, list(ordered[start : start + CHUNK_ROWS]))
