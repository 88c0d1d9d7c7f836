"""The ``schema_revision`` table: every revision applied to a database and whether it is
backward compatible, so a replica running *older* code (which lacks the newer revision files)
can still tell whether it may serve that database.

Like Alembic's ``alembic_version`` it belongs to the migration machinery, not to the models: the
runner creates it (if missing) before applying or stamping anything, each applied revision adds
its row in the same transaction, and schema comparisons leave it out (:func:`include_name`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, MetaData, String, Table, select
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateTable

from controlplane.store.migrations import VERSION_TABLE

TABLE_NAME = "schema_revision"
_metadata = MetaData()
revisions_table = Table(
    TABLE_NAME,
    _metadata,
    Column("revision", String(32), primary_key=True),
    Column("down_revision", String(32), nullable=False, server_default=""),
    Column("backward_compatible", Boolean, nullable=False),
    Column("applied_at_ms", BigInteger, nullable=False, server_default="0"),
)


@dataclass(frozen=True)
class Applied:
    """One row of ``schema_revision``."""

    revision: str
    down_revision: str
    backward_compatible: bool


def include_name(name: str | None, type_: str, _parent: Any) -> bool:
    """For Alembic comparisons: the machinery's own tables are not part of the models."""
    return not (type_ == "table" and name in (TABLE_NAME, VERSION_TABLE))


def ensure_table(conn: Connection) -> None:
    revisions_table.create(conn, checkfirst=True)


def create_table_sql(dialect: Any) -> str:
    """``CREATE TABLE`` for ``--sql`` output (guarded on PostgreSQL and SQLite alike)."""
    ddl = str(CreateTable(revisions_table).compile(dialect=dialect)).strip()
    return ddl.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1) + ";"


def read_all(conn: Connection) -> dict[str, Applied]:
    rows = conn.execute(
        select(
            revisions_table.c.revision,
            revisions_table.c.down_revision,
            revisions_table.c.backward_compatible,
        )
    ).all()
    return {r[0]: Applied(r[0], r[1], bool(r[2])) for r in rows}


def record_applied(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
    """Alembic ``on_version_apply`` callback: one row per revision applied (or stamped).

    Runs through the migration context, so it shares the migration's transaction online and
    is written out as SQL in ``--sql`` mode."""
    if not step.is_upgrade:
        return
    for script in step.up_revisions:
        down = script.down_revision or ""
        if not isinstance(down, str):
            raise ValueError(f"revision {script.revision} merges branches: keep one chain")
        ctx.execute(revisions_table.delete().where(revisions_table.c.revision == script.revision))
        ctx.execute(
            revisions_table.insert().values(
                revision=script.revision,
                down_revision=down,
                backward_compatible=declared_compatible(script.module),
                applied_at_ms=int(time.time() * 1000),
            )
        )


def declared_compatible(module: Any) -> bool:
    """The revision module's ``backward_compatible`` flag (the baseline has none: False)."""
    value = getattr(module, "backward_compatible", False)
    if not isinstance(value, bool):
        raise ValueError(f"{module.__name__}: backward_compatible must be True or False")
    return value
