"""Test only: an expand revision a newer release might ship (a table, a defaulted column).

Revision ID: x_expand
Revises: this release's head
"""

import sqlalchemy as sa
from alembic import op

from tests.controlplane.store.schema_data import PACKAGE_HEAD

revision = "x_expand"
down_revision = PACKAGE_HEAD
branch_labels = None
depends_on = None
backward_compatible = True


def upgrade() -> None:
    op.create_table("test_expand_note", sa.Column("id", sa.String(32), primary_key=True))
    op.add_column(
        "workspace", sa.Column("test_note", sa.String(), nullable=False, server_default="")
    )
