"""What the data planes report: the usage ledger (one row per request), logged bodies, budget
alerts, and developers' own activity (OTLP metrics)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import false as sql_false
from sqlmodel import Field, SQLModel

from controlplane.store.models.columns import bigint_col, bool_col, int_col, json_col, text_col


class UsageEventRow(SQLModel, table=True):
    """The usage ledger: one row per gateway request, keyed (idempotently) by request id."""

    __tablename__ = "usage_event"
    # Spend per scope in a period (snapshot seeds, budget status, alerts) reads only these
    # indexes: a range on time_ms within one key or workspace, summing cost_micros.
    __table_args__ = (
        Index("ix_usage_event_key_time_cost", "key_id", "time_ms", "cost_micros"),
        Index("ix_usage_event_workspace_time_cost", "workspace", "time_ms", "cost_micros"),
        Index("ix_usage_event_developer_time_cost", "developer_id", "time_ms", "cost_micros"),
        # The reconciler's queue (controlplane.usage.reconcile): only rows not yet counted in the
        # totals and rollups, so it stays as small as that backlog (empty in steady state).
        Index(
            "ix_usage_event_uncounted",
            "time_ms",
            postgresql_where=text("NOT ledger_counted"),
            sqlite_where=text("NOT ledger_counted"),
        ),
    )

    request_id: str = Field(primary_key=True, max_length=128)
    time_ms: int = Field(default=0, sa_type=BigInteger, index=True)
    # Lookups by workspace or key id use the leading column of the *_time_cost indexes above
    # (revision 0005 dropped the single-column ones: two fewer B-trees per stored event).
    workspace: str = ""
    key_id: str = ""
    key_name: str = ""
    session_id: str = Field(default="", index=True)
    metadata_json: str = Field(default="{}", sa_column=json_col("{}"))
    model_requested: str = ""
    model_served: str = ""
    provider: str = ""
    attempts: int = 0
    status: int = 0
    error_type: str = ""
    error_message: str = Field(default="", sa_type=Text)
    ttfb_ms: int = Field(default=0, sa_type=BigInteger)
    latency_ms: int = Field(default=0, sa_type=BigInteger)
    input_tokens: int = Field(default=0, sa_type=BigInteger)
    output_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_creation_input_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_read_input_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_write_5m_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_write_1h_tokens: int = Field(default=0, sa_type=BigInteger)
    cost_micros: int = Field(default=0, sa_type=BigInteger)
    priced_as: str = ""
    stream: bool = False
    path: str = ""
    user_agent: str = ""
    client_version: str = ""
    dataplane_id: str = ""
    upstream_request_id: str = ""
    client_disconnected: bool = False
    received_at_ms: int = Field(default=0, sa_type=BigInteger)
    # A signed-in developer's request (key_id is then ""): spend per developer reads
    # ix_usage_event_developer_time_cost.
    developer_id: str = Field(default="", sa_column=text_col(""))
    developer_email: str = Field(default="", sa_column=text_col(""))
    # Routing and cache (P4): every upstream attempt as JSON, the cache outcome, what a hit saved.
    attempt_log_json: str = Field(default="[]", sa_column=json_col("[]"))
    cache_status: str = Field(default="", sa_column=text_col(""))
    cost_saved_micros: int = Field(
        default=0,
        sa_column=bigint_col(),
    )
    # Server tools (their fees are in cost_micros) and whether output_tokens is an estimate.
    web_search_requests: int = Field(
        default=0,
        sa_column=bigint_col(),
    )
    web_fetch_requests: int = Field(
        default=0,
        sa_column=bigint_col(),
    )
    output_estimated: bool = Field(default=False, sa_column=bool_col())
    # Whether the row is in spend_total and the rollups. This release's inserts say true (ingest
    # counts the row in the same transaction); the server default false is what a row inserted
    # by the previous release (which does not know the column) and every row from before
    # revision 0004 get, and the reconciler counts those (controlplane.usage.reconcile).
    ledger_counted: bool = Field(
        default=True,
        sa_column=Column(Boolean, nullable=False, default=True, server_default=sql_false()),
    )


class RequestLogBodyRow(SQLModel, table=True):
    """A request's logged headers and bodies (workspace policy ``log_bodies`` metadata/full), kept
    apart from the ledger so ``usage_event`` stays lean. Bodies are zlib-compressed; purged after
    the workspace's ``log_retention_days`` (by ``created_ms``)."""

    __tablename__ = "request_log_body"
    # The retention purge deletes, per workspace, the rows older than its cutoff (revision 0002).
    __table_args__ = (Index("ix_request_log_body_workspace_created", "workspace", "created_ms"),)

    request_id: str = Field(primary_key=True, max_length=128)
    workspace: str = Field(default="", index=True)
    created_ms: int = Field(default=0, sa_type=BigInteger, index=True)
    headers_json: str = Field(default="{}", sa_column=json_col("{}"))
    request_body_z: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))
    response_body_z: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))
    request_body_size: int = Field(default=0, sa_type=BigInteger)
    response_body_size: int = Field(default=0, sa_type=BigInteger)
    truncated: bool = False


class BudgetAlertRow(SQLModel, table=True):
    """A budget crossing 50/80/100 % in one period: recorded once (the unique constraint), then
    POSTed to the workspace's webhook, whose outcome lands in ``webhook_status``."""

    __tablename__ = "budget_alert"
    __table_args__ = (
        UniqueConstraint(
            "scope",
            "scope_id",
            "period",
            "period_start_ms",
            "threshold_percent",
            name="uq_budget_alert_once",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    time_ms: int = Field(default=0, sa_type=BigInteger, index=True)
    scope: str = Field(max_length=16)  # "key" | "workspace"
    scope_id: str = Field(max_length=63)  # key id or workspace name
    name: str = ""  # key name or workspace name, when recorded
    workspace: str = Field(default="", index=True)
    threshold_percent: int = 0
    period: str = Field(max_length=16)  # "day" | "week" | "month" | "lifetime"
    period_id: str = ""  # gwcommon.periods.period_id, e.g. "day:2026-11-29@Europe/Berlin"
    amount_micros: int = Field(default=0, sa_type=BigInteger)
    period_start_ms: int = Field(default=0, sa_type=BigInteger)
    period_end_ms: int = Field(default=0, sa_type=BigInteger)  # 0 for lifetime
    spent_micros: int = Field(default=0, sa_type=BigInteger)
    # "" (no webhook) | "pending" | "retrying: <reason>" | "delivered" | "failed: <reason>" |
    # "refused: …"; the attempts made, when the last one ended and when the next is due.
    webhook_status: str = Field(default="", sa_type=Text)
    webhook_format: str = Field(default="", sa_column=text_col(""))  # generic | slack
    webhook_attempts: int = Field(default=0, sa_column=int_col())
    webhook_last_attempt_ms: int = Field(default=0, sa_column=bigint_col())
    webhook_next_attempt_ms: int = Field(default=0, sa_column=bigint_col())


class DeveloperActivityRow(SQLModel, table=True):
    """What a developer's Claude Code reported about itself (OTLP metrics), summed per UTC day."""

    __tablename__ = "developer_activity"

    developer_id: str = Field(primary_key=True, max_length=32)
    day_ms: int = Field(primary_key=True, sa_type=BigInteger)  # UTC midnight
    workspace: str = Field(default="", index=True)
    cost_micros: int = Field(default=0, sa_type=BigInteger)
    input_tokens: int = Field(default=0, sa_type=BigInteger)
    output_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_read_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_creation_tokens: int = Field(default=0, sa_type=BigInteger)
    lines_added: int = Field(default=0, sa_type=BigInteger)
    lines_removed: int = Field(default=0, sa_type=BigInteger)
    commits: int = Field(default=0, sa_type=BigInteger)
    pull_requests: int = Field(default=0, sa_type=BigInteger)
    edits_accepted: int = Field(default=0, sa_type=BigInteger)
    edits_rejected: int = Field(default=0, sa_type=BigInteger)
    sessions: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)


class ActivityBatchRow(SQLModel, table=True):
    """Batches of DeveloperActivity already ingested: ReportActivity is idempotent on them."""

    __tablename__ = "activity_batch"

    node_id: str = Field(primary_key=True, max_length=128)
    batch_id: str = Field(primary_key=True, max_length=64)
    received_at_ms: int = Field(default=0, sa_type=BigInteger, index=True)
