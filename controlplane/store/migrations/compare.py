"""Comparing a database with the models: the options autogenerate and the tests share.

:func:`differences` lists, readably, what the models have and the database at head lacks (or
the reverse): the test that runs it is what tells a developer, or whoever merges branches, that
a revision is missing.
"""

from __future__ import annotations

import re
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlmodel.sql.sqltypes import AutoString

from controlplane.store import models
from controlplane.store.migrations import VERSION_TABLE, bookkeeping


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Autogenerate writes SQLModel's string type as plain ``sa.String`` (revisions must not
    depend on SQLModel internals)."""
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def _plain_default(text: str | None) -> str | None:
    """A column default as text without the wrapping each database adds: ``('')``,
    ``'[]'::text``, ``'0'``."""
    if text is None:
        return None
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    text = re.sub(r"::[a-z ]+$", "", text)  # PostgreSQL: ''::character varying
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1]
    return text


def compare_server_default(
    _context: Any,
    _inspected_column: Any,
    _metadata_column: Any,
    inspected_default: str | None,
    _metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Same default once quoting is set aside: not a change (Alembic's own comparison reports
    every empty-string default on SQLite as changed). Otherwise Alembic decides."""
    if _plain_default(inspected_default) == _plain_default(rendered_metadata_default):
        return False
    return None


OPTIONS: dict[str, Any] = {
    "target_metadata": models.metadata,
    "version_table": VERSION_TABLE,
    "compare_type": True,
    "compare_server_default": compare_server_default,
    "render_item": render_item,
    "include_name": bookkeeping.include_name,
    # SQLite cannot ALTER most things: autogenerate then writes batch operations (copy-and-move).
    "render_as_batch": True,
}


def differences(conn: Connection) -> list[str]:
    """How the database on ``conn`` differs from the models, one readable line each."""
    ctx = MigrationContext.configure(
        conn, opts={k: v for k, v in OPTIONS.items() if k != "target_metadata"}
    )
    return [_describe(d) for d in _flatten(compare_metadata(ctx, models.metadata))]


def _flatten(diffs: list[Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for diff in diffs:
        if isinstance(diff, list):  # modify_* changes come grouped per column
            out.extend(_flatten(diff))
        else:
            out.append(diff)
    return out


def _describe(diff: tuple[Any, ...]) -> str:
    kind = diff[0]
    if kind == "add_table":
        return f"table {diff[1].name} is in the models, but no revision creates it"
    if kind == "remove_table":
        return f"table {diff[1].name} exists at head, but the models no longer have it"
    if kind == "add_column":
        return f"column {diff[2]}.{diff[3].name} is in the models, but no revision adds it"
    if kind == "remove_column":
        return f"column {diff[2]}.{diff[3].name} exists at head, but the models no longer have it"
    if kind in ("add_index", "remove_index"):
        index = diff[1]
        where = (
            "is in the models, but no revision creates it"
            if kind == "add_index"
            else ("exists at head, but the models no longer have it")
        )
        return f"index {index.name} on {index.table.name} {where}"
    if kind in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        constraint = diff[1]
        return (
            f"{kind.replace('_', ' ')}: {constraint.name or constraint} on {constraint.table.name}"
        )
    if kind.startswith("modify_"):
        _, _schema, table, column, _kw, old, new = diff
        what = kind.removeprefix("modify_")
        return f"column {table}.{column}: {what} is {old!r} at head, {new!r} in the models"
    return repr(diff)
