"""Cheaper ingest: indexes nothing reads are dropped, spend totals updated in place.

Revision ID: 0005
Revises: 0004

* ``ix_spend_total_updated_at_ms``: no query reads ``spend_total`` by ``updated_at_ms``, and an
  index on a column every upsert changes makes PostgreSQL write a new index entry in every index
  for every update (no HOT update). Without it, the upsert of a batch's ~2,000 cells can update
  rows in place.
* ``ix_usage_event_workspace`` and ``ix_usage_event_key_id``: every lookup by workspace or key id
  is served by the leading column of ``ix_usage_event_workspace_time_cost`` and
  ``ix_usage_event_key_time_cost``; two fewer B-trees for every stored event.
* ``spend_total`` on PostgreSQL gets ``fillfactor = 70``: pages written from now on keep room for
  the in-place updates of the current day's, week's and month's cells.

Backward compatible: older replicas never relied on these indexes for correctness, only
for lookups the remaining indexes serve.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
# Expand-only (new tables, nullable or server-defaulted columns, indexes): True. Anything older
# code could trip on (drop, rename, type change, new constraint): False. Dropping an index no
# older query needs for correctness is safe too.
backward_compatible = True


def upgrade() -> None:
    op.drop_index("ix_spend_total_updated_at_ms", table_name="spend_total")
    op.drop_index("ix_usage_event_workspace", table_name="usage_event")
    op.drop_index("ix_usage_event_key_id", table_name="usage_event")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE spend_total SET (fillfactor = 70)")
