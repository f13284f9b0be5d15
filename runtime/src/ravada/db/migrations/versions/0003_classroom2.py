"""classroom2: a running-machines limit per group (user_groups.max_running)

Revision ID: 0003_classroom2
Revises: 0003_oidc
Create Date: 2026-12-01 01:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_classroom2"
down_revision = "0003_oidc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: the group sets no limit; 0: its members have none; n: at most n running each
    with op.batch_alter_table("user_groups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_running", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_groups", schema=None) as batch_op:
        batch_op.drop_column("max_running")
