"""classroom: base policies, clone connection state and deadlines, one clone per user per base

Revision ID: 0002_classroom
Revises: 0002_speed
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002_classroom"
down_revision = "0002_speed"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb", "mysql")


def _no_duplicate_clones() -> None:
    """The unique constraint cannot be added over two clones of one base for one user:
    say which, so the admin removes one (nothing is dropped silently)."""
    rows = op.get_bind().execute(sa.text(
        "SELECT base_id, owner_id, COUNT(*) FROM machines WHERE base_id IS NOT NULL "
        "AND owner_id IS NOT NULL GROUP BY base_id, owner_id HAVING COUNT(*) > 1")).all()
    if rows:
        pairs = ", ".join(f"base {b} / user {u} ({n} clones)" for b, u, n in rows[:20])
        raise RuntimeError("cannot add 'one desktop per user per base': remove the extra "
                           f"clones first: {pairs}")


def upgrade() -> None:
    _no_duplicate_clones()
    with op.batch_alter_table("machines", schema=None) as b:
        b.add_column(sa.Column("volatile", sa.Boolean(), nullable=False,
                               server_default=sa.false()))
        b.add_column(sa.Column("pool_size", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("pool_started", sa.Integer(), nullable=False,
                               server_default="0"))
        b.add_column(sa.Column("run_timeout", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("shutdown_disconnected", sa.Boolean(), nullable=False,
                               server_default=sa.false()))
        b.add_column(sa.Column("shutdown_grace", sa.Integer(), nullable=False,
                               server_default="300"))
        b.add_column(sa.Column("is_pool", sa.Boolean(), nullable=False,
                               server_default=sa.false()))
        b.add_column(sa.Column("clients", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("last_connected_at", TS, nullable=True))
        b.add_column(sa.Column("started_at", TS, nullable=True))
        b.add_column(sa.Column("run_until", TS, nullable=True))
        b.add_column(sa.Column("idle_until", TS, nullable=True))
        b.create_index(b.f("ix_machines_is_pool"), ["is_pool"], unique=False)
        b.create_index(b.f("ix_machines_run_until"), ["run_until"], unique=False)
        b.create_index(b.f("ix_machines_idle_until"), ["idle_until"], unique=False)
        b.create_unique_constraint("uq_machines_base_owner", ["base_id", "owner_id"])


def downgrade() -> None:
    with op.batch_alter_table("machines", schema=None) as b:
        b.drop_constraint("uq_machines_base_owner", type_="unique")
        b.drop_index(b.f("ix_machines_idle_until"))
        b.drop_index(b.f("ix_machines_run_until"))
        b.drop_index(b.f("ix_machines_is_pool"))
        for col in ("idle_until", "run_until", "started_at", "last_connected_at", "clients",
                    "is_pool", "shutdown_grace", "shutdown_disconnected", "run_timeout",
                    "pool_started", "pool_size", "volatile"):
            b.drop_column(col)
