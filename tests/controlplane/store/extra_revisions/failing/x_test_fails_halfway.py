"""Test only: a revision that fails after some of its DDL ran.

Revision ID: x_fails
Revises: this release's head
"""

import sqlalchemy as sa
from alembic import op

from tests.controlplane.store.schema_data import PACKAGE_HEAD

revision = "x_fails"
down_revision = PACKAGE_HEAD
branch_labels = None
depends_on = None
backward_compatible = True


def upgrade() -> None:
    op.create_table("test_half_done", sa.Column("id", sa.String(32), primary_key=True))
    op.add_column("workspace", sa.Column("test_half", sa.String(), nullable=True))
    op.execute("SELECT no_such_column FROM workspace")
