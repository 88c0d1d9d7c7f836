"""Atomic additive upserts for the ledger's derived tables, on SQLite and PostgreSQL.

Contract of :func:`upsert_add`: for every given row, insert it, or, when a row with the same
primary key exists, add the ``added`` columns to it (``spent = spent + excluded.spent``), keep the
smaller of the ``least`` columns and the greater of the ``greatest`` columns, and overwrite the
``replaced`` ones. The database does the arithmetic on the stored row, so two transactions (two
control-plane replicas) adding to one cell both count. Rows are sent sorted by primary key, so
concurrent writers lock cells in one order and cannot deadlock each other.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Table, TextClause, func, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

CHUNK_ROWS = 500  # rows per statement: far below both bind-parameter limits for our tables
PG_CHUNK_ROWS = 5000  # rows per unnest statement (one parameter per column, whatever the rows)


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
    keys = [c.name for c in table.primary_key.columns]
    # itemgetter of one name returns the bare value, of several a tuple: either sorts alike.
    ordered = sorted(rows, key=itemgetter(*keys))
    added, least, greatest, replaced = tuple(added), tuple(least), tuple(greatest), tuple(replaced)
    if dialect == "postgresql":
        suffix = _pg_suffix(table.name, tuple(keys), added, least, greatest, replaced)
        for start in range(0, len(ordered), PG_CHUNK_ROWS):
            pg_unnest_insert(conn, table, ordered[start : start + PG_CHUNK_ROWS], suffix)
        return
    if dialect != "sqlite":  # pragma: no cover - make_engine only builds these two
        raise RuntimeError(f"unsupported dialect {dialect}")
    stmt = sqlite.insert(table)
    updates: dict[str, Any] = {}
    for name in added:
        updates[name] = table.c[name] + stmt.excluded[name]
    for name in least:  # SQLite's two-argument min()/max() are scalar
        updates[name] = func.min(table.c[name], stmt.excluded[name])
    for name in greatest:
        updates[name] = func.max(table.c[name], stmt.excluded[name])
    for name in replaced:
        updates[name] = stmt.excluded[name]
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates)
    for start in range(0, len(ordered), CHUNK_ROWS):
        conn.execute(stmt, list(ordered[start : start + CHUNK_ROWS]))


@functools.lru_cache(maxsize=64)
def _pg_suffix(
    table: str,
    keys: tuple[str, ...],
    added: tuple[str, ...],
    least: tuple[str, ...],
    greatest: tuple[str, ...],
    replaced: tuple[str, ...],
) -> str:
    """The ``ON CONFLICT … DO UPDATE`` text, made once per table and column roles (as SQL text:
    building SQLAlchemy's ``excluded`` expressions cost more per batch than the upsert's own
    Python)."""
    sets = [f"{name} = {table}.{name} + EXCLUDED.{name}" for name in added]
    sets += [f"{name} = LEAST({table}.{name}, EXCLUDED.{name})" for name in least]
    sets += [f"{name} = GREATEST({table}.{name}, EXCLUDED.{name})" for name in greatest]
    sets += [f"{name} = EXCLUDED.{name}" for name in replaced]
    return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(sets)}"


def pg_unnest_insert(
    conn: Connection | Session, table: Table, rows: Sequence[dict[str, Any]], suffix: str
) -> Any:
    """PostgreSQL: insert ``rows`` with one ``INSERT … SELECT … FROM json_populate_recordset``
    statement whose single parameter is the rows as JSON text: one statement and one plan per
    batch, and the encoding is orjson's (binding a value per row and column, or an array per
    column, costs microseconds of Python per value; the standard library's encoder was 8 % of
    a replica's ingest time). Values are str, int, bool or None (ledger columns). ``suffix`` is the
    ``ON CONFLICT …`` / ``RETURNING …`` text. Returns the result (for RETURNING)."""
    names = ", ".join(c.name for c in table.columns if c.name in rows[0])
    sql = (
        f"INSERT INTO {table.name} ({names}) SELECT {names} "
        f"FROM json_populate_recordset(NULL::{table.name}, %s::json) {suffix}"
    )
    payload = orjson.dumps(rows).decode()
    connection = conn.connection() if isinstance(conn, Session) else conn
    # The driver's own paramstyle, through SQLAlchemy (its errors stay DBAPIError).
    return connection.exec_driver_sql(sql, (payload,))


def pg_any_of(column: str, values: Sequence[str], name: str = "values") -> TextClause:
    """PostgreSQL: ``column = ANY(…)`` of ``values``, sent as one JSON text parameter (orjson)
    and unpacked by the server. The statement text is the same whatever the count, so the driver
    prepares it once; an ``IN`` list of bound values was rendered, bound value by value and
    parsed anew for every call."""
    clause = text(f"{column} = ANY(ARRAY(SELECT json_array_elements_text(CAST(:{name} AS json))))")
    return clause.bindparams(**{name: orjson.dumps(list(values)).decode()})
