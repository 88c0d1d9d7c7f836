"""The configuration change log (controlplane.store.changes): incremental snapshots.

Revision ID: 0003
Revises: 0002

Every transaction that touches configuration rows appends (kind, name) rows here, written by
session hooks; each control-plane replica catches up from its last ``seq``. Replicas of the
previous release neither read nor write it: their writes reach data planes at the next full
read (docs/architecture.md, Known limits).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
# Expand-only (new tables, nullable or server-defaulted columns, indexes): True. Anything older
# code could trip on (drop, rename, type change, new constraint): False.
backward_compatible = True


def upgrade() -> None:
    op.create_table(
        "config_change",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
