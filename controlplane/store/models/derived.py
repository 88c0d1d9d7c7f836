"""The ledger's derived tables (controlplane.usage.totals / rollups): maintained in the
transaction that inserts usage_event rows, rebuilt from them by `gwctl controlplane
rebuild-ledger`. Raw events stay the source of truth."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Index, Text
from sqlmodel import Field, SQLModel


class SpendTotalRow(SQLModel, table=True):
    """Spend of one scope (key id, workspace name, developer id) in one budget period (day, week,
    month in the workspace's time zone as of ingest; lifetime with ``period_start_ms`` 0).
    ``updated_at_ms`` is when ingest last added to the cell. Only the primary key is indexed:
    an index on a column every upsert changes would rule out PostgreSQL's in-place (HOT)
    updates, and ``fillfactor`` leaves room on each page for them (revision 0005)."""

    __tablename__ = "spend_total"
    __table_args__ = ({"postgresql_with": {"fillfactor": 70}},)

    # Key order: one window's cells of one scope kind (every developer's today) are one range.
    scope_kind: str = Field(primary_key=True, max_length=16)
    period: str = Field(primary_key=True, max_length=16)
    period_start_ms: int = Field(primary_key=True, sa_type=BigInteger)
    scope_id: str = Field(primary_key=True, max_length=256)
    spent_micros: int = Field(default=0, sa_type=BigInteger)
    requests: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)


def _sum() -> Any:
    """A NOT NULL BIGINT defaulting to 0 (a fresh Column per table: the measures are shared)."""
    return Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})


def _dim(default: str = "") -> Any:
    return Field(default=default, sa_column_kwargs={"server_default": default})


class _RollupMeasures(SQLModel):
    """What a rollup cell sums (see controlplane.usage.rollups.MEASURES)."""

    requests: int = _sum()
    errors: int = _sum()
    input_tokens: int = _sum()
    output_tokens: int = _sum()
    cache_creation_input_tokens: int = _sum()
    cache_read_input_tokens: int = _sum()
    cost_micros: int = _sum()
    web_search_requests: int = _sum()
    web_fetch_requests: int = _sum()
    cost_saved_micros: int = _sum()
    cache_hits: int = _sum()
    first_ms: int = _sum()  # min time_ms
    last_ms: int = _sum()  # max time_ms
    key_name: str = _dim()  # max
    developer_email: str = _dim()  # max
    updated_at_ms: int = _sum()


class _RollupCell(_RollupMeasures):
    """A rollup cell's key: its UTC bucket and the dimensions it groups by (``dims_key`` is their
    hash)."""

    bucket_ms: int = Field(primary_key=True, sa_type=BigInteger)
    dims_key: str = Field(primary_key=True, max_length=32)
    workspace: str = _dim()
    key_id: str = _dim()
    developer_id: str = _dim()
    model: str = _dim()  # served, else requested
    provider: str = _dim()
    client_version: str = _dim()


class UsageHourRow(_RollupCell, table=True):
    """Usage per UTC hour and (workspace, key, developer, model, provider, client version,
    session, metadata): every ``gwctl usage`` grouping can be answered from it."""

    __tablename__ = "usage_rollup_hour"
    __table_args__ = (
        Index("ix_usage_rollup_hour_workspace", "workspace", "bucket_ms"),
        Index("ix_usage_rollup_hour_key", "key_id", "bucket_ms"),
        Index("ix_usage_rollup_hour_developer", "developer_id", "bucket_ms"),
    )

    session_id: str = _dim()
    metadata_json: str = Field(
        default="{}", sa_type=Text, sa_column_kwargs={"server_default": "{}"}
    )


class UsageDayRow(_RollupCell, table=True):
    """Usage per UTC day and (workspace, key, developer, model, provider, client version)."""

    __tablename__ = "usage_rollup_day"
    __table_args__ = (
        Index("ix_usage_rollup_day_workspace", "workspace", "bucket_ms"),
        Index("ix_usage_rollup_day_key", "key_id", "bucket_ms"),
        Index("ix_usage_rollup_day_developer", "developer_id", "bucket_ms"),
    )


class LedgerStateRow(SQLModel, table=True):
    """One row: how far raw usage events were purged (``purged_before_ms``, 0 = never) and when
    the derived tables were last rebuilt from them."""

    __tablename__ = "ledger_state"

    id: int = Field(default=1, primary_key=True)
    purged_before_ms: int = Field(default=0, sa_type=BigInteger)
    rebuilt_at_ms: int = Field(default=0, sa_type=BigInteger)
    rebuilt_events: int = Field(default=0, sa_type=BigInteger)
