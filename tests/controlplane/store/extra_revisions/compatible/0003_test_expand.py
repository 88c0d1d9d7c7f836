"""Test only: an expand revision a newer release might ship (a table, a defaulted column).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
backward_compatible = True


def upgrade() -> None:
    op.create_table("test_expand_note", sa.Column("id", sa.String(32), primary_key=True))
    op.add_column(
        "workspace", sa.Column("test_note", sa.String(), nullable=False, server_default="")
    )
