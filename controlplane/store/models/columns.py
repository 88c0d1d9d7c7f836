"""Column builders shared by the tables: NOT NULL columns with a server default, so a column can
be added to an existing table (older rows get the default) and the same schema runs on SQLite and
PostgreSQL. Each call returns a fresh Column: SQLAlchemy binds a Column to one table."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Integer, String, Text
from sqlalchemy import false as sql_false


def json_col(default: str) -> Column:  # type: ignore[type-arg]
    """A NOT NULL text column holding JSON (structured values are text on both databases)."""
    return Column(Text, nullable=False, default=default, server_default=default)


def text_col(default: str = "") -> Column:  # type: ignore[type-arg]
    """A NOT NULL text column with a server default, so it can be added to an existing table."""
    return Column(String, nullable=False, default=default, server_default=default)


def int_col(default: int = 0) -> Column:  # type: ignore[type-arg]
    """A NOT NULL integer column with a server default (addable to an existing table)."""
    return Column(Integer, nullable=False, default=default, server_default=str(default))


def bigint_col() -> Column:  # type: ignore[type-arg]
    """A NOT NULL BIGINT (times in ms, micro-dollars, counts), 0 by default (addable)."""
    return Column(BigInteger, nullable=False, default=0, server_default="0")


def bool_col() -> Column:  # type: ignore[type-arg]
    """A NOT NULL boolean, false by default (addable to an existing table)."""
    return Column(Boolean, nullable=False, default=False, server_default=sql_false())
