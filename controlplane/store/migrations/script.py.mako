"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Review before committing (see controlplane/store/migrations/__init__.py): renames, server
defaults for new NOT NULL columns, and whether replicas of the previous release keep working.
"""

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None
# Expand-only (new tables, nullable or server-defaulted columns, indexes): True. Anything older
# code could trip on (drop, rename, type change, new constraint): False.
backward_compatible = True  # TODO(review): confirm, then delete this comment


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}
