"""users.locale: the language a user picked (None: follow the browser's Accept-Language)

Revision ID: 0004_i18n
Revises: 0004_nodes
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_i18n"
down_revision = "0004_nodes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("locale")
