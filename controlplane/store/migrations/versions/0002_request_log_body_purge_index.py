"""Index request_log_body on (workspace, created_ms) for the retention purge.

Revision ID: 0002
Revises: 0001

The hourly purge deletes, per workspace, the bodies older than that workspace's retention
(controlplane.usage.request_logs.purge): one range scan per workspace instead of
intersecting the two single-column indexes.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
# A new index: older code neither needs nor notices it.
backward_compatible = True


def upgrade() -> None:
    op.create_index(
        "ix_request_log_body_workspace_created",
        "request_log_body",
        ["workspace", "created_ms"],
        unique=False,
    )
