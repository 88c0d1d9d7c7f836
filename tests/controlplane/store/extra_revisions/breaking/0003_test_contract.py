"""Test only: a contract revision a newer release might ship (drops a column older code reads).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
backward_compatible = False


def upgrade() -> None:
    with op.batch_alter_table("route") as batch:
        batch.drop_column("cache_ttl_s")
