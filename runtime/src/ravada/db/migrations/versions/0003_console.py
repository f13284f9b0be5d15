"""machines.hardware: display types, sound, USB redirection and what waits for the next start;
machines.last_started_at

Revision ID: 0003_console
Revises: 0003_classroom2
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003_console"
down_revision = "0003_classroom2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hardware", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("last_started_at", sa.DateTime().with_variant(
            mysql.DATETIME(fsp=6), "mysql", "mariadb"), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.drop_column("last_started_at")
        batch_op.drop_column("hardware")
