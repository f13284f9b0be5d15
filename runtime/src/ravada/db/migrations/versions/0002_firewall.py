"""firewall rules remember the user who opened them

Revision ID: 0002_firewall
Revises: 0002_desktop
Create Date: 2026-11-30 22:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_firewall"
down_revision = "0002_desktop"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("firewall_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_firewall_rules_user_id"), ["user_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_firewall_rules_user_id_users"), "users",
                                    ["user_id"], ["id"], ondelete="CASCADE")


def downgrade() -> None:
    with op.batch_alter_table("firewall_rules", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_firewall_rules_user_id_users"),
                                 type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_firewall_rules_user_id"))
        batch_op.drop_column("user_id")
