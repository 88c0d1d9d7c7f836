"""Databases at a given revision, filled through SQLAlchemy Core (the models describe head, not
the revision a test starts from), for the migration tests.

* :func:`at_revision` — an Alembic-managed database at ``revision``.
* :func:`pre_migrations` — what a control plane from before migrations left: the baseline's
  tables made by ``metadata.create_all``, no version table.
* :func:`fill_every_table` — three rows in every table, every column set to a value distinct
  per table, column and row (big integers, non-ASCII text, bytes, JSON), foreign keys
  consistent, provider secrets really encrypted; returns what it wrote for :func:`read_back`.
* :func:`insert` — one row with chosen values, the rest neutral ("" / 0 / false).
* :func:`written_by_older_code` — one row inserted naming only the columns older code knew,
  read back through head's model.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from sqlalchemy import Column, MetaData, Table, select, text
from sqlalchemy.engine import Connection, Engine

from controlplane.secrets import MasterKey
from controlplane.store.db import Database
from controlplane.store.migrations import BASELINE, VERSION_TABLE, alembic_config
from controlplane.store.schema import Migrator

T = TypeVar("T")

EXTRA = Path(__file__).parent / "extra_revisions"
# This release's last revision: the test-only revisions below build on it, whatever it is.
PACKAGE_HEAD: str = Migrator.release_head()
COMPATIBLE = EXTRA / "compatible"
BREAKING = EXTRA / "breaking"
FAILING = EXTRA / "failing"


def at_revision(engine: Engine, revision: str, extra: tuple[Path, ...] = ()) -> None:
    Migrator(engine, extra).upgrade(revision)


def pre_migrations(engine: Engine) -> None:
    """Plain ``metadata.create_all`` of the baseline's tables (as reflected from the baseline
    revision on this very backend), the way control planes made their schema before."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), BASELINE)
        metadata = reflect(conn)
        metadata.drop_all(conn)
        metadata.remove(metadata.tables[VERSION_TABLE])
        metadata.create_all(conn)


def reflect(conn: Connection) -> MetaData:
    metadata = MetaData()
    metadata.reflect(conn)
    return metadata


def _is_autoincrement(table: Table, column: Column[Any]) -> bool:
    pk = list(table.primary_key.columns)
    return pk == [column] and column.type.python_type is int


def _generic(table: Table, column: Column[Any], i: int) -> Any:
    if column.foreign_keys:
        target = next(iter(column.foreign_keys)).column
        return _generic(target.table, target, i)
    salt = zlib.crc32(f"{table.name}.{column.name}".encode()) % 1000
    python_type = column.type.python_type
    if column.name.endswith("_json"):
        arg = getattr(column.server_default, "arg", None)
        default = str(getattr(arg, "text", arg) or "")
        if "[" in default:
            return json.dumps([f"{table.name}-{i}", salt])
        return json.dumps({"row": i, "salt": salt, "text": "é✓"})
    if python_type is bool:
        return i % 2 == 1
    if python_type is int:
        big = "BIGINT" in str(column.type).upper()
        return (2**40 if big else 0) + 1000 * i + salt
    if python_type is bytes:
        return bytes([i, salt % 256, 0, 255]) + column.name.encode()
    length = getattr(column.type, "length", None) or 200
    return f"{column.name}-{i}-é✓-{salt}"[:length]


def fill_every_table(
    conn: Connection, master: MasterKey, first: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """Rows ``first`` … ``first + 2`` in every table the database has now."""
    metadata = reflect(conn)
    written: dict[str, list[dict[str, Any]]] = {}
    for table in metadata.sorted_tables:
        if table.name in (VERSION_TABLE, "schema_revision"):
            continue
        rows = []
        for i in range(first, first + 3):
            row = {
                c.name: _generic(table, c, i)
                for c in table.columns
                if not _is_autoincrement(table, c)
            }
            if table.name == "provider":
                row["secret_ciphertext"] = master.encrypt(row["name"], f"sk-secret-{i}")
            rows.append(row)
        conn.execute(table.insert(), rows)
        written[table.name] = rows
    return written


def read_back(conn: Connection, written: dict[str, list[dict[str, Any]]]) -> None:
    """Assert every row written is still there with every value it was written with."""
    metadata = reflect(conn)
    for name, rows in written.items():
        table = metadata.tables[name]
        columns = sorted({c for row in rows for c in row})
        got = [dict(r._mapping) for r in conn.execute(select(*(table.c[c] for c in columns)))]
        for row in rows:  # an older row lacks the columns added since: compare what it had
            matches = [g for g in got if all(g[c] == v for c, v in row.items())]
            assert len(matches) == 1, f"table {name}: row {row} changed or is gone"
        assert len(got) == len(rows), f"table {name}: {len(got)} rows, {len(rows)} written"


def insert(conn: Connection, table_name: str, **values: Any) -> None:
    table = reflect(conn).tables[table_name]
    row = dict(values)
    for c in table.columns:
        if c.name in row or c.server_default is not None or _is_autoincrement(table, c):
            continue
        neutral = {bool: False, int: 0, bytes: b""}.get(c.type.python_type, "")
        row[c.name] = "{}" if c.name.endswith("_json") and neutral == "" else neutral
    conn.execute(table.insert(), [row])


def written_by_older_code(db_url: str, insert_sql: str, model: type[T], key: str) -> T:
    """Head's tables on ``db_url`` (``create_all``), one row inserted by ``insert_sql``, which names
    only the columns code from an older release knew (the rest take their server defaults, as
    during a rolling upgrade), read back as ``model`` by its primary key ``key``."""
    db = Database(db_url)
    try:
        db.create_all()
        with db.engine.begin() as conn:
            conn.execute(text(insert_sql))
        row = db.run_sync(lambda s: s.get(model, key))
    finally:
        db.dispose()
    assert row is not None
    return row
