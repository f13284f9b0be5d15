"""machines.guest_info: what the QEMU guest agent reports (hostname, addresses)

Revision ID: 0002_desktop
Revises: 0002_sessions
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_desktop"
down_revision = "0002_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("guest_info", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.drop_column("guest_info")
