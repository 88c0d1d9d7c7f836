"""The ledger's derived tables: spend totals, hourly and daily usage rollups, ledger state.

Revision ID: 0004
Revises: 0003

Maintained by ingest in the transaction that inserts usage events (controlplane.usage.totals,
rollups). ``usage_event.ledger_counted`` says whether a row is in them: every row already stored
gets false (there are no totals yet), as does every row the previous release inserts during a
rolling upgrade (it does not know the column: the server default), while this release's inserts
say true. The reconciler, a once-per-fleet job (controlplane.usage.reconcile), counts the false
rows in bounded batches through the partial index ``ix_usage_event_uncounted``: the first fill of
an upgraded database runs in the background instead of blocking the start.

Cost on PostgreSQL (11+): ``ADD COLUMN … NOT NULL DEFAULT false`` is metadata only (a constant
default is stored in the catalog, no table rewrite); the partial index is built by one scan of
``usage_event`` (all its rows qualify at first), during which writes to the table wait. On
SQLite ``ADD COLUMN`` with a constant default is a plain ALTER (no table copy).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
# Expand-only (new tables, nullable or server-defaulted columns, indexes): True. Anything older
# code could trip on (drop, rename, type change, new constraint): False.
backward_compatible = True


def upgrade() -> None:
    op.add_column(
        "usage_event",
        sa.Column("ledger_counted", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_index(
        "ix_usage_event_uncounted",
        "usage_event",
        ["time_ms"],
        postgresql_where=sa.text("NOT ledger_counted"),
        sqlite_where=sa.text("NOT ledger_counted"),
    )
    op.create_table(
        "ledger_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purged_before_ms", sa.BigInteger(), nullable=False),
        sa.Column("rebuilt_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("rebuilt_events", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "spend_total",
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("period_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("scope_id", sa.String(length=256), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope_kind", "period", "period_start_ms", "scope_id"),
    )
    with op.batch_alter_table("spend_total", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_spend_total_updated_at_ms"), ["updated_at_ms"], unique=False
        )

    op.create_table(
        "usage_rollup_day",
        sa.Column("requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("errors", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "cache_creation_input_tokens", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column("cache_read_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("web_search_requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("web_fetch_requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_saved_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_hits", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("first_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("key_name", sa.String(), server_default="", nullable=False),
        sa.Column("developer_email", sa.String(), server_default="", nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("bucket_ms", sa.BigInteger(), nullable=False),
        sa.Column("dims_key", sa.String(length=32), nullable=False),
        sa.Column("workspace", sa.String(), server_default="", nullable=False),
        sa.Column("key_id", sa.String(), server_default="", nullable=False),
        sa.Column("developer_id", sa.String(), server_default="", nullable=False),
        sa.Column("model", sa.String(), server_default="", nullable=False),
        sa.Column("provider", sa.String(), server_default="", nullable=False),
        sa.Column("client_version", sa.String(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("bucket_ms", "dims_key"),
    )
    with op.batch_alter_table("usage_rollup_day", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_rollup_day_developer", ["developer_id", "bucket_ms"], unique=False
        )
        batch_op.create_index("ix_usage_rollup_day_key", ["key_id", "bucket_ms"], unique=False)
        batch_op.create_index(
            "ix_usage_rollup_day_workspace", ["workspace", "bucket_ms"], unique=False
        )

    op.create_table(
        "usage_rollup_hour",
        sa.Column("requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("errors", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "cache_creation_input_tokens", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column("cache_read_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("web_search_requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("web_fetch_requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_saved_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_hits", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("first_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("key_name", sa.String(), server_default="", nullable=False),
        sa.Column("developer_email", sa.String(), server_default="", nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("bucket_ms", sa.BigInteger(), nullable=False),
        sa.Column("dims_key", sa.String(length=32), nullable=False),
        sa.Column("workspace", sa.String(), server_default="", nullable=False),
        sa.Column("key_id", sa.String(), server_default="", nullable=False),
        sa.Column("developer_id", sa.String(), server_default="", nullable=False),
        sa.Column("model", sa.String(), server_default="", nullable=False),
        sa.Column("provider", sa.String(), server_default="", nullable=False),
        sa.Column("client_version", sa.String(), server_default="", nullable=False),
        sa.Column("session_id", sa.String(), server_default="", nullable=False),
        sa.Column("metadata_json", sa.Text(), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("bucket_ms", "dims_key"),
    )
    with op.batch_alter_table("usage_rollup_hour", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_rollup_hour_developer", ["developer_id", "bucket_ms"], unique=False
        )
        batch_op.create_index("ix_usage_rollup_hour_key", ["key_id", "bucket_ms"], unique=False)
        batch_op.create_index(
            "ix_usage_rollup_hour_workspace", ["workspace", "bucket_ms"], unique=False
        )
