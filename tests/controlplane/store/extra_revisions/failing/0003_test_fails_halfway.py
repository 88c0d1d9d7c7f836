"""Test only: a revision that fails after some of its DDL ran.

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
    op.create_table("test_half_done", sa.Column("id", sa.String(32), primary_key=True))
    op.add_column("workspace", sa.Column("test_half", sa.String(), nullable=True))
    op.execute("SELECT no_such_column FROM workspace")
