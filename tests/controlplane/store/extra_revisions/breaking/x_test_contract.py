"""Test only: a contract revision a newer release might ship (drops a column older code reads).

Revision ID: x_contract
Revises: this release's head
"""

from alembic import op

from tests.controlplane.store.schema_data import PACKAGE_HEAD

revision = "x_contract"
down_revision = PACKAGE_HEAD
branch_labels = None
depends_on = None
backward_compatible = False


def upgrade() -> None:
    with op.batch_alter_table("route") as batch:
        batch.drop_column("cache_ttl_s")
