"""Is a database made before migrations (by ``metadata.create_all``) exactly the baseline?

The reference is the baseline revision itself, applied to a scratch in-memory SQLite database
and reflected (once per process). The comparison is by name and shape, so it holds across
dialects: tables, columns (nullability and type affinity: integer, string, boolean, binary),
primary keys, indexes (columns, uniqueness) and unique constraints. Tables that are not the
baseline's are ignored (not ours); ``schema_revision`` may be missing (it came with migrations).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from alembic import command
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection, Inspector

from controlplane.store.migrations import BASELINE, alembic_config, bookkeeping


@dataclass(frozen=True)
class TableShape:
    columns: dict[str, tuple[bool, str]]  # name -> (nullable, affinity)
    primary_key: tuple[str, ...]
    indexes: dict[str, tuple[tuple[str, ...], bool]]  # name -> (columns, unique)
    uniques: frozenset[tuple[str, ...]]


def _affinity(type_: Any) -> str:
    return type(type_)._type_affinity.__name__.lstrip("_").lower()  # type: ignore[no-any-return]


def _shape(insp: Inspector, table: str) -> TableShape:
    columns = {
        c["name"]: (bool(c["nullable"]), _affinity(c["type"])) for c in insp.get_columns(table)
    }
    pk = tuple(insp.get_pk_constraint(table).get("constrained_columns") or ())
    indexes = {
        str(i["name"]): (tuple(str(c) for c in i["column_names"]), bool(i["unique"]))
        for i in insp.get_indexes(table)
        if not i.get("duplicates_constraint")  # PostgreSQL: a unique constraint's own index
    }
    uniques = frozenset(tuple(u["column_names"]) for u in insp.get_unique_constraints(table))
    return TableShape(columns, pk, indexes, uniques)


@functools.cache
def _reference() -> dict[str, TableShape]:
    engine = create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(connection=conn), BASELINE)
            insp = inspect(conn)
            names = set(insp.get_table_names()) - {bookkeeping.TABLE_NAME, "alembic_version"}
            return {name: _shape(insp, name) for name in sorted(names)}
    finally:
        engine.dispose()


def baseline_tables() -> frozenset[str]:
    """The tables the baseline revision creates."""
    return frozenset(_reference())


def baseline_differences(conn: Connection) -> list[str]:
    """How the database's baseline tables differ from the baseline revision; [] = the same."""
    insp = inspect(conn)
    present = set(insp.get_table_names())
    problems: list[str] = []
    for name, want in _reference().items():
        if name not in present:
            problems.append(f"table {name} is missing")
            continue
        have = _shape(insp, name)
        problems.extend(f"table {name}: {p}" for p in _compare(want, have))
    return problems


def _compare(want: TableShape, have: TableShape) -> list[str]:
    out: list[str] = []
    for col in sorted(want.columns.keys() - have.columns.keys()):
        out.append(f"column {col} is missing")
    for col in sorted(have.columns.keys() - want.columns.keys()):
        out.append(f"column {col} is not in the baseline")
    for col in sorted(want.columns.keys() & have.columns.keys()):
        (w_null, w_aff), (h_null, h_aff) = want.columns[col], have.columns[col]
        if w_null != h_null:
            out.append(f"column {col} is {'' if h_null else 'NOT '}NULL, baseline says otherwise")
        if w_aff != h_aff:
            out.append(f"column {col} is {h_aff}, the baseline's is {w_aff}")
    if want.primary_key != have.primary_key:
        out.append(
            f"primary key ({', '.join(have.primary_key)}) is not ({', '.join(want.primary_key)})"
        )
    for index in sorted(want.indexes.keys() - have.indexes.keys()):
        out.append(f"index {index} is missing")
    for index in sorted(have.indexes.keys() - want.indexes.keys()):
        out.append(f"index {index} is not in the baseline")
    for index in sorted(want.indexes.keys() & have.indexes.keys()):
        if want.indexes[index] != have.indexes[index]:
            out.append(f"index {index} differs (columns or uniqueness)")
    for unique in sorted(want.uniques - have.uniques):
        out.append(f"unique constraint on ({', '.join(unique)}) is missing")
    return out
