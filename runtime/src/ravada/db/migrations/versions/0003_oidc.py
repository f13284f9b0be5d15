"""oidc: the OpenID provider's subject a single sign-on user row is bound to

Revision ID: 0003_oidc
Revises: 0003_isolib
Create Date: 2026-12-01 01:40:00

The first single sign-on login binds the row to the provider account's ``sub``; a later
login under the same name from another provider account (a user name changed or reused
at the provider) is refused instead of taking the row over.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_oidc"
down_revision = "0003_isolib"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oidc_subject", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint("uq_users_oidc_subject", ["oidc_subject"])


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_users_oidc_subject", type_="unique")
        batch_op.drop_column("oidc_subject")
